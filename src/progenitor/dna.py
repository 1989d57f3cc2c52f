"""The DNA file (``.dna``): a model's genes, learned DNA vector and metadata, versioned.

Layout (all little-endian, no pickle)::

    magic    6 bytes   b"PGDNA\\0"
    version  uint16    format version (this release writes ``FORMAT_VERSION``)
    hlen     uint32    length of the JSON header
    header   hlen      UTF-8 JSON: {"meta": {...}, "arrays": [{"key", "dtype", "shape", "offset", "nbytes"}]}
    payload  ...       the arrays' raw bytes, at their offsets
    digest   32 bytes  sha256 of everything before it

Readers exist for every version ever written (``_READERS``); an unknown version, a bad magic, a
digest mismatch or a truncated file is refused with DNAFormatError. Writes go to a temporary file
that is renamed into place, so a failed write never leaves a half-written DNA.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from progenitor._io import write_atomic
from progenitor._memo import per_object
from progenitor.errors import AccessError, DNAFormatError, IncomparableError
from progenitor.genes import GeneValue

MAGIC = b"PGDNA\0"
FORMAT_VERSION = 1
_ALLOWED_DTYPES = {"<f4", "<f2", "<f8", "<i4", "<i8", "|u1", "|i1", "<u2"}
# A DNA must stay compact: far smaller than the models it describes.
MAX_DNA_BYTES = 8 * 1024 * 1024


@dataclass
class DNA:
    """A model's DNA: genes (raw measurements), an optional learned vector, and metadata.

    Attributes:
        model: metadata of the model it was extracted from (ref, format, sha256, n_params, ...).
        access: the access used to extract it (``white``, ``gray`` or ``black``).
        probes: the probe set's info (name, hash, n, kind), or None when no gene used probes.
        genes: gene name -> GeneValue.
        versions: gene name -> extractor version.
        vector: the learned DNA vector (L2-normalised), or None.
        vector_spec: the generator that made ``vector`` (name, version, hash), or None.
    """

    model: dict[str, Any]
    access: str
    probes: dict[str, Any] | None
    genes: dict[str, GeneValue]
    versions: dict[str, int]
    vector: np.ndarray | None = None
    vector_spec: dict[str, Any] | None = None
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    format_version: int = FORMAT_VERSION

    def nbytes(self) -> int:
        """Bytes of array payload (genes and vector)."""
        vec = 0 if self.vector is None else self.vector.nbytes
        return vec + sum(g.nbytes() for g in self.genes.values())

    def at_access(self, access: str) -> DNA:
        """This DNA as a model that allows only ``access`` would have given it: the genes that
        need more are left out (with them, for ``black``, the layer structure ``recipe`` reads),
        and so is a learned vector made from them. A view: the gene values are shared, not copied."""
        from progenitor.genes import get_gene
        from progenitor.models.base import ACCESS_LEVELS

        if access not in ACCESS_LEVELS:
            raise AccessError(f"access must be one of {', '.join(ACCESS_LEVELS)}, not {access!r}")
        level = min(ACCESS_LEVELS.index(access), ACCESS_LEVELS.index(self.access))
        if level == ACCESS_LEVELS.index(self.access):
            return self
        views = _views(self)  # one view per access, kept while the DNA lives: what is derived from
        if level not in views:  # a DNA (its learned embedding, say) is kept per object
            genes = {n: g for n, g in self.genes.items() if ACCESS_LEVELS.index(get_gene(n).access) <= level}
            versions = {n: v for n, v in self.versions.items() if n in genes}
            views[level] = replace(
                self, access=ACCESS_LEVELS[level], genes=genes, versions=versions, vector=None, vector_spec=None
            )
        return views[level]

    def recipe(self) -> str:
        """A short signature of the model's recipe, for recipe-specific nulls in a calibration.

        The layer structure (kind, units, fan-in of every weight matrix) when weights were read,
        else the output width: models with one signature are "the same recipe" up to seed and data.
        """
        return _recipe(self)

    def _recipe_signature(self) -> str:
        sketch = self.genes.get("weight_sketch")
        if sketch is not None:
            shape = ";".join(f"{k}{u}x{'x'.join(map(str, f))}" for _, k, u, f, _ in sketch.meta["layers"])
        else:
            out = self.genes.get("output_geometry")
            shape = f"outputs{out.meta.get('width')}" if out is not None else "unknown"
        return hashlib.sha256(shape.encode()).hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        """JSON-able description (what ``progenitor inspect`` prints)."""
        return {
            "format_version": self.format_version,
            "created": self.created,
            "model": self.model,
            "access": self.access,
            "probes": self.probes,
            "genes": {
                n: {"version": self.versions[n], "bytes": g.nbytes(), **_short(g.meta)} for n, g in self.genes.items()
            },
            "vector": None if self.vector is None else {"dim": int(self.vector.size), **(self.vector_spec or {})},
            "payload_bytes": self.nbytes(),
        }


def _short(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: (len(v) if isinstance(v, list) else v) for k, v in meta.items()}


def check_comparable(a: DNA, b: DNA, genes: list[str]) -> None:
    """Refuse, naming the difference, when shared genes were made with other versions or probes."""
    for name in genes:
        if a.versions[name] != b.versions[name]:
            raise IncomparableError(
                f"gene {name} was extracted with version {a.versions[name]} for "
                f"{a.model.get('ref')} and version {b.versions[name]} for {b.model.get('ref')}; "
                "re-extract both with the same progenitor release"
            )
    if a.probes and b.probes and a.probes["hash"] != b.probes["hash"]:
        raise IncomparableError(
            f"DNAs were made with different probe sets: {a.probes['name']} "
            f"({a.probes['hash'][:12]}) for {a.model.get('ref')} vs {b.probes['name']} "
            f"({b.probes['hash'][:12]}) for {b.model.get('ref')}; extract both with the same --probes"
        )


# A DNA is not changed once made; a search asks each candidate's recipe for every verdict.
_recipe: per_object[str] = per_object(lambda dna: dna._recipe_signature())
_views: per_object[dict[int, DNA]] = per_object(lambda _dna: {})

# ------------------------------------------------------------------------------------------ write


def _to_bytes(dna: DNA) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    for gene, value in dna.genes.items():
        for key, arr in value.arrays.items():
            arrays[f"genes/{gene}/{key}"] = arr
    if dna.vector is not None:
        arrays["vector"] = dna.vector.astype(np.float32)
    entries, chunks, offset = [], [], 0
    for key, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        arr = arr.astype(arr.dtype.newbyteorder("<")) if arr.dtype.byteorder == ">" else arr
        dtype = arr.dtype.str
        if dtype not in _ALLOWED_DTYPES:
            raise ValueError(f"cannot store dtype {dtype} in a DNA ({key})")
        raw = arr.tobytes()
        entries.append({"key": key, "dtype": dtype, "shape": list(arr.shape), "offset": offset, "nbytes": len(raw)})
        chunks.append(raw)
        offset += len(raw)
    meta = {
        "created": dna.created,
        "model": dna.model,
        "access": dna.access,
        "probes": dna.probes,
        "versions": dna.versions,
        "gene_meta": {n: g.meta for n, g in dna.genes.items()},
        "vector_spec": dna.vector_spec,
    }
    header = json.dumps({"meta": meta, "arrays": entries}, sort_keys=True).encode()
    body = MAGIC + struct.pack("<HI", FORMAT_VERSION, len(header)) + header + b"".join(chunks)
    return body + hashlib.sha256(body).digest()


def save_dna(dna: DNA, path: str | Path) -> Path:
    """Write ``dna`` to ``path`` atomically (temporary file, then rename); returns the path."""
    return write_atomic(path, _to_bytes(dna))


# ------------------------------------------------------------------------------------------- read


def _check_meta(path: Path, meta: Any) -> None:
    """Refuse a header whose fields have the wrong kinds (a hand-edited or foreign file that
    still carries a valid checksum), before anything reads them."""
    from progenitor.models.base import ACCESS_LEVELS

    def fail(what: str) -> None:
        raise DNAFormatError(f"{path}: DNA header is malformed ({what})")

    if not isinstance(meta, dict):
        fail("no meta object")
    if not isinstance(meta.get("model"), dict):
        fail("model is not an object")
    if meta.get("access") not in ACCESS_LEVELS:
        fail(f"access {meta.get('access')!r} is not one of {', '.join(ACCESS_LEVELS)}")
    for name in ("probes", "vector_spec"):
        if meta.get(name) is not None and not isinstance(meta[name], dict):
            fail(f"{name} is not an object")
    genes, versions = meta.get("gene_meta"), meta.get("versions")
    if not isinstance(genes, dict) or not all(isinstance(v, dict) for v in genes.values()):
        fail("gene_meta is not an object of objects")
    if not isinstance(versions, dict) or set(versions) != set(genes):
        fail("versions do not name the DNA's genes")
    if not isinstance(meta.get("created"), str):
        fail("created is not a string")


def _read_v1(path: Path, header: dict[str, Any], payload: memoryview) -> DNA:
    meta = header["meta"]
    _check_meta(path, meta)
    arrays: dict[str, np.ndarray] = {}
    for entry in header["arrays"]:
        if entry["dtype"] not in _ALLOWED_DTYPES:
            raise DNAFormatError(f"{path}: unknown array dtype {entry['dtype']!r}")
        dtype = np.dtype(entry["dtype"])
        start, size = int(entry["offset"]), int(entry["nbytes"])
        if start < 0 or start + size > len(payload) or size % dtype.itemsize:
            raise DNAFormatError(f"{path}: array {entry['key']} lies outside the file")
        # Copied out of the buffer (one copy: the buffer is a view): numpy's float32 sums group
        # their terms by the data's memory alignment, and a view at an odd offset gave
        # similarities one unit in the last place away from the extracted DNA's.
        arr = np.frombuffer(payload, dtype=dtype, count=size // dtype.itemsize, offset=start)
        arrays[entry["key"]] = arr.reshape(entry["shape"]).copy()
    by_gene: dict[str, dict[str, np.ndarray]] = {name: {} for name in meta["gene_meta"]}
    for key, arr in arrays.items():
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[0] == "genes" and parts[1] in by_gene:
            by_gene[parts[1]][parts[2]] = arr
    genes = {name: GeneValue(by_gene[name], gene_meta) for name, gene_meta in meta["gene_meta"].items()}
    return DNA(
        model=meta["model"],
        access=meta["access"],
        probes=meta["probes"],
        genes=genes,
        versions={k: int(v) for k, v in meta["versions"].items()},
        vector=arrays.get("vector"),
        vector_spec=meta.get("vector_spec"),
        created=meta["created"],
        format_version=1,
    )


_READERS: dict[int, Callable[[Path, dict[str, Any], memoryview], DNA]] = {1: _read_v1}


def dna_to_bytes(dna: DNA) -> bytes:
    """The ``.dna`` file content of ``dna`` (the newest format version)."""
    return _to_bytes(dna)


def dna_from_bytes(data: bytes, origin: str = "<bytes>", verify: bool = True) -> DNA:
    """Read a DNA from the bytes of a ``.dna`` file of any known version.

    Args:
        data: the file content (a file, a registry row, a worker's result).
        origin: named in error messages.
        verify: check the sha256 trailer; False only where the caller checked the bytes another
            way (the registry's CRC-32 of a payload whose sha256 it checked on entry).

    Raises:
        DNAFormatError: bad magic, unknown version, checksum mismatch, truncation or a malformed header.
    """
    if len(data) < len(MAGIC) + 6 + 32 or not data.startswith(MAGIC):
        raise DNAFormatError(f"{origin}: not a progenitor DNA file")
    body, digest = memoryview(data)[:-32], data[-32:]
    version, hlen = struct.unpack_from("<HI", data, len(MAGIC))
    if version not in _READERS:
        known = ", ".join(map(str, sorted(_READERS)))
        raise DNAFormatError(
            f"{origin}: DNA format version {version} is unknown to this release (reads {known}); upgrade progenitor"
        )
    if verify and hashlib.sha256(body).digest() != digest:
        raise DNAFormatError(f"{origin}: DNA file is corrupt or truncated (checksum mismatch)")
    start = len(MAGIC) + 6
    try:
        header = json.loads(bytes(body[start : start + hlen]).decode())
        dna = _READERS[version](Path(origin), header, body[start + hlen :])
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise DNAFormatError(f"{origin}: DNA header is malformed ({exc})") from exc
    if verify:  # a registry read skips it: the payload was checked like this on entry
        _check_finite(dna, origin)
    return dna


def _check_finite(dna: DNA, origin: str) -> None:
    """Refuse NaN or infinite values: no extraction stores them, and they would poison every
    similarity they enter."""
    for gene, value in dna.genes.items():
        for key, arr in value.arrays.items():
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise DNAFormatError(f"{origin}: gene {gene} holds NaN or infinite values ({key})")
    if dna.vector is not None and not np.isfinite(dna.vector).all():
        raise DNAFormatError(f"{origin}: its learned vector holds NaN or infinite values")


def load_dna(path: str | Path) -> DNA:
    """Read a ``.dna`` file of any known version; refuse anything corrupt or unknown."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DNAFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return dna_from_bytes(data, str(path))
