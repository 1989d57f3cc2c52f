"""The .dna file: round trips, version refusal, corruption, atomic writes, size bound."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import progenitor as pg
from progenitor.dna import FORMAT_VERSION, MAGIC, MAX_DNA_BYTES, _to_bytes
from progenitor.errors import AccessError, DNAFormatError, IncomparableError
from progenitor.genes import GeneValue


@pytest.fixture(scope="module")
def dna(saved):
    return pg.extract(saved["state"], probes=saved["probes"], arch="families:small_cnn")


def test_round_trip(tmp_path, dna) -> None:
    path = pg.save_dna(dna, tmp_path / "a.dna")
    back = pg.load_dna(path)
    assert back.model == dna.model and back.versions == dna.versions and back.probes == dna.probes
    genes = {"weight_sketch", "weight_stats", "weight_values", "output_geometry", "output_logits", "feature_cka",
             "error_agreement"}  # the probes are labelled
    assert set(back.genes) == set(dna.genes) == genes
    for name, gene in dna.genes.items():
        assert back.genes[name].meta == gene.meta
        for key, arr in gene.arrays.items():
            np.testing.assert_array_equal(back.genes[name].arrays[key], arr)
            assert back.genes[name].arrays[key].dtype == arr.dtype
    assert _to_bytes(back) == _to_bytes(dna)  # byte-identical rewrite


def test_size_bound(tmp_path, dna) -> None:
    """A DNA stays compact: under MAX_DNA_BYTES, and for this model far smaller than its weights."""
    size = pg.save_dna(dna, tmp_path / "a.dna").stat().st_size
    weights_bytes = 4 * dna.model["n_params"]
    assert size < MAX_DNA_BYTES
    assert size < weights_bytes, (size, weights_bytes)


def test_metadata(dna) -> None:
    assert dna.model["format"] == "torch" and len(dna.model["sha256"]) == 64
    assert dna.model["n_params"] > 10_000 and dna.access == "white"
    assert dna.probes["n"] == 96 and len(dna.probes["hash"]) == 64


def test_narrower_access_view_is_what_that_access_extracts(saved, dna) -> None:
    black = pg.extract(saved["state"], probes=saved["probes"], arch="families:small_cnn", access="black")
    view = dna.at_access("black")
    assert view.access == "black" and set(view.genes) == set(black.genes) == {
        "output_geometry", "output_logits", "error_agreement"}
    assert view.versions == black.versions and view.recipe() == black.recipe() != dna.recipe()
    for name, gene in black.genes.items():
        for key, arr in gene.arrays.items():
            np.testing.assert_array_equal(view.genes[name].arrays[key], arr)
    assert dna.at_access("white") is dna and view.at_access("white") is view  # never wider than extracted
    assert dna.at_access("black") is view  # one view per access, kept while the DNA lives
    assert set(dna.at_access("gray").genes) == set(view.genes) | {"feature_cka"}
    assert set(dna.genes) > set(view.genes)  # a view: the DNA itself is unchanged
    with pytest.raises(AccessError, match="access"):
        dna.at_access("grey")


def test_unknown_version_refused(tmp_path, dna) -> None:
    data = bytearray(_to_bytes(dna))
    struct.pack_into("<H", data, len(MAGIC), FORMAT_VERSION + 98)
    path = tmp_path / "future.dna"
    path.write_bytes(bytes(data))
    with pytest.raises(DNAFormatError, match="version 99 is unknown"):
        pg.load_dna(path)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_refused(tmp_path, dna, damage) -> None:
    data = bytearray(_to_bytes(dna))
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "garbage":
        data = bytearray(b"hello world" * 10)
    else:
        data = bytearray()
    path = tmp_path / "bad.dna"
    path.write_bytes(bytes(data))
    with pytest.raises(DNAFormatError):
        pg.load_dna(path)


def _rewritten(dna: pg.DNA, edit) -> bytes:
    """The DNA's file with its header edited by ``edit`` and a valid checksum again."""
    import hashlib
    import json

    data = _to_bytes(dna)
    start = len(MAGIC) + 6
    (hlen,) = struct.unpack_from("<I", data, len(MAGIC) + 2)
    header = json.loads(data[start : start + hlen])
    edit(header)
    raw = json.dumps(header).encode()
    body = MAGIC + struct.pack("<HI", FORMAT_VERSION, len(raw)) + raw + data[start + hlen : -32]
    return body + hashlib.sha256(body).digest()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: h["meta"].update(access="purple"), "access 'purple'"),
        (lambda h: h["meta"].update(model="x"), "model is not an object"),
        (lambda h: h["meta"].update(gene_meta=[]), "gene_meta"),
        (lambda h: h["meta"].update(versions={}), "versions"),
        (lambda h: h["meta"].update(probes="x"), "probes is not an object"),
    ],
)
def test_hand_edited_header_with_a_valid_checksum_is_refused(tmp_path, dna, edit, message) -> None:
    """A header whose checksum holds but whose fields have the wrong kinds is refused on load
    (a registry would otherwise take it in and fail on every later search)."""
    path = tmp_path / "edited.dna"
    path.write_bytes(_rewritten(dna, edit))
    with pytest.raises(DNAFormatError, match=message):
        pg.load_dna(path)


def test_non_finite_values_and_missing_arrays_are_refused(tmp_path, dna) -> None:
    from dataclasses import replace

    gene = next(n for n, g in dna.genes.items() if any(a.dtype.kind == "f" for a in g.arrays.values()))
    arrays = {k: (np.full_like(a, np.nan) if a.dtype.kind == "f" else a) for k, a in dna.genes[gene].arrays.items()}
    poisoned = replace(dna, genes={**dna.genes, gene: GeneValue(arrays, dna.genes[gene].meta)})
    path = tmp_path / "nan.dna"
    path.write_bytes(_to_bytes(poisoned))
    with pytest.raises(DNAFormatError, match="NaN or infinite"):
        pg.load_dna(path)
    emptied = replace(dna, genes={**dna.genes, "weight_sketch": GeneValue({}, dna.genes["weight_sketch"].meta)})
    with pytest.raises(DNAFormatError, match="weight_sketch: a stored value lacks its data"):
        pg.score_genes(dna, emptied)


def test_write_is_atomic(tmp_path, dna, monkeypatch) -> None:
    path = pg.save_dna(dna, tmp_path / "a.dna")
    before = path.read_bytes()

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(OSError):
        pg.save_dna(dna, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.dna"]  # no temporary left behind


def test_written_files_get_the_usual_permissions(tmp_path, dna) -> None:
    """The temporary file behind an atomic write is created for its owner only; what lands has
    the mode a plain open() would give under the process's umask."""
    import os

    old = os.umask(0o022)
    try:
        path = pg.save_dna(dna, tmp_path / "shared.dna")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_incomparable_probes_and_versions(saved, dna) -> None:
    other = pg.extract(saved["parent"], probes=np.zeros((4, 1, 8, 8), np.float32))
    with pytest.raises(IncomparableError, match="different probe sets"):
        pg.compare(dna, other)
    bumped = pg.load_dna.__globals__["DNA"](**{**dna.__dict__, "versions": {**dna.versions, "weight_sketch": 99}})
    with pytest.raises(IncomparableError, match="version"):
        pg.compare(dna, bumped)
