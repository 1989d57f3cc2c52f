"""Collections: DNA registry, migrations, de-duplication, parent search, lineage trees, engines."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

import progenitor as pg
from progenitor.errors import DNAFormatError
from progenitor.genes import GeneValue
from progenitor.index import (
    ExtractorSpec,
    Member,
    ParentSearch,
    Registry,
    RegistryError,
    SpecMismatchError,
    VectorIndex,
    add_models,
    build_tree,
    default_db_path,
    dna_to_bytes,
    faiss_available,
    genome_hash,
    members_of,
    resolve_target,
)
from progenitor.index._relate import Relation
from progenitor.index.direction import weight_stats_direction
from progenitor.index.keys import KEY_DIM
from progenitor.index.registry import PAGE_SIZE, SCHEMA_VERSION, migrate

CHILDREN = ["fine-tuned", "pruned-50", "noised", "permuted"]
INDEPENDENT = [f"independent{i}" for i in range(6)]


def _refs(saved, names) -> list[str]:
    return [str(saved[n]) for n in names]


@pytest.fixture(scope="module")
def family_db(saved, tmp_path_factory) -> Path:
    """A registry of the test family (parent, 4 children, 6 independents), extracted inline."""
    path = tmp_path_factory.mktemp("registry") / "reg.sqlite"
    with Registry(path) as registry:
        report = add_models(
            registry, _refs(saved, ["parent", *CHILDREN, *INDEPENDENT]), probes=saved["probes"], engine="inline"
        )
    assert len(report.added) == 11 and not report.failed
    return path


@pytest.fixture
def reg(family_db, tmp_path) -> Registry:
    """A private copy of the family registry (tests may write to it)."""
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(family_db.read_bytes())
    with Registry(copy) as registry:
        yield registry


def _synthetic_dna(i: int, vector: np.ndarray | None, generator: str = "synthetic") -> pg.DNA:
    return pg.DNA(
        model={"ref": f"synthetic{i}", "sha256": None, "n_params": 100 + i},
        access="white",
        probes=None,
        genes={},
        versions={},
        vector=None if vector is None else vector.astype(np.float32),
        vector_spec=None if vector is None else {"name": generator, "version": 1, "hash": "0" * 64},
    )


# ------------------------------------------------------------------------------------ registry


def test_registry_round_trip(reg, tmp_path) -> None:
    # New registries use large pages: a DNA spans a few of them, not a chain of ~80.
    assert reg._conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
    entries = reg.entries()
    assert [e.name for e in entries] == ["parent", *CHILDREN, *INDEPENDENT]
    parent = reg.get("parent")
    assert reg.get(str(parent.id)) == parent
    assert reg.get(parent.ref) == parent
    assert reg.get(parent.sha256[:10]) == parent
    dna = reg.dna("parent")
    assert genome_hash(dna) == parent.dna_hash and dna.model["sha256"] == parent.sha256
    assert reg.probe_set() is not None and reg.spec.probes["hash"] == reg.probe_set().hash
    assert reg.probe_set().labels is not None and "error_agreement" in reg.dna("parent").genes
    with pytest.raises(RegistryError, match="no model"):
        reg.get("nothing-like-this")

    manifest = reg.export(tmp_path / "export")
    data = json.loads(manifest.read_text())
    assert len(data["models"]) == 11 and data["probes"]["file"] == "probes.npy"
    assert all((tmp_path / "export" / m["file"]).is_file() for m in data["models"])
    with Registry(tmp_path / "imported.sqlite") as other:
        assert other.import_(tmp_path / "export") == (11, 0)
        assert other.import_(tmp_path / "export") == (0, 11)  # a second import is a no-op
        assert [(e.name, e.dna_hash, e.added_at) for e in other.entries()] == [
            (e.name, e.dna_hash, e.added_at) for e in entries
        ]
        assert other.spec == reg.spec and other.probe_set().hash == reg.probe_set().hash
        assert list(other.probe_set().labels) == list(reg.probe_set().labels)  # labels travel too

    removed = reg.remove("noised")
    assert removed.name == "noised" and len(reg) == 10
    with pytest.raises(RegistryError):
        reg.get("noised")


def test_import_refuses_a_bad_export_before_writing_anything(reg, tmp_path) -> None:
    """A malformed manifest, an entry outside the folder or a corrupt later file: nothing is
    imported, not even the files before it. Removing several models checks every key first."""
    export = tmp_path / "export"
    manifest_path = reg.export(export)
    good = json.loads(manifest_path.read_text())

    def attempt(manifest: object, match: str) -> None:
        manifest_path.write_text(json.dumps(manifest))
        with Registry(tmp_path / "fresh.sqlite") as other:
            with pytest.raises((RegistryError, DNAFormatError), match=match):
                other.import_(export)
            assert len(other) == 0

    attempt([1, 2], "not a progenitor registry export")
    attempt({**good, "models": {"a": 1}}, "malformed")
    attempt({**good, "spec": "x"}, "malformed")
    outside = [{**good["models"][0], "file": "../elsewhere.dna"}, *good["models"][1:]]
    attempt({**good, "models": outside}, "outside the export folder")
    last = export / good["models"][-1]["file"]
    last.write_bytes(last.read_bytes()[:-10])
    attempt(good, "corrupt or truncated")

    with pytest.raises(RegistryError, match="itself"):
        reg.declare("parent", parent="parent")
    with pytest.raises(RegistryError, match="itself"):
        reg.add(_synthetic_dna(99, None), name="selfish", parent="selfish")
    names = len(reg)
    from typer.testing import CliRunner

    from progenitor.cli import app

    result = CliRunner().invoke(app, ["index", "remove", "parent", "no-such-model", "--db", str(reg.path)])
    assert result.exit_code != 0
    assert len(reg) == names and reg.get("parent")
    # A failed import into a registry it would create leaves no (empty) registry behind.
    new = tmp_path / "never.sqlite"
    assert CliRunner().invoke(app, ["index", "import", str(export), "--db", str(new)]).exit_code != 0
    assert not new.exists()


def test_default_db_path(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("PROGENITOR_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "progenitor" / "registry.sqlite"
    monkeypatch.setenv("PROGENITOR_DB", str(tmp_path / "x.sqlite"))
    assert default_db_path() == tmp_path / "x.sqlite"
    with pytest.raises(RegistryError, match="no registry"):
        Registry(tmp_path / "missing.sqlite", create=False)


def test_migration_from_schema_v1(reg, tmp_path) -> None:
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=1) == 1
    vectorised = dataclasses.replace(_synthetic_dna(0, np.eye(4)[0]), model={"ref": "/m/vec.pt"})
    # v1 rows as an older release wrote them: no learned vectors on the two real DNAs
    rows = [
        (dataclasses.replace(reg.dna(n), vector=None, vector_spec=None), f"/models/{n}/model.pt")
        for n in ("parent", "noised")
    ]
    rows.append((vectorised, "/m/vec.pt"))
    for dna, ref in rows:
        conn.execute(
            "INSERT INTO dnas (dna_hash, ref, sha256, declared_parent, added_at, dna) VALUES (?, ?, ?, ?, ?, ?)",
            (genome_hash(dna), ref, dna.model.get("sha256"), None, "2024-01-01T00:00:00+00:00", dna_to_bytes(dna)),
        )
    conn.close()

    with Registry(path) as registry:
        assert registry.schema_version == SCHEMA_VERSION == 6
        entries = registry.entries()
        # names come from the references' stems, made unique; columns back-filled from the DNAs
        assert [e.name for e in entries] == ["model", "model-2", "vec"]
        assert entries[0].n_params == 38282 and entries[0].access == "white"
        assert [e.has_vector for e in entries] == [False, False, True]
        ids, vectors = registry.vectors()
        assert list(ids) == [entries[2].id] and np.allclose(vectors[0], np.eye(4)[0])
        versions = [r[0] for r in registry._conn.execute("SELECT version FROM schema_migrations")]
        assert versions == [1, 2, 3, 4, 5, 6]
        crcs = [r[0] for r in registry._conn.execute("SELECT crc32 FROM payloads ORDER BY id")]
        assert all(isinstance(c, int) for c in crcs) and len(crcs) == 3  # back-filled
        key_ids, keys = registry.keys()  # weight keys back-filled for the two white-box DNAs
        assert list(key_ids) == [entries[0].id, entries[1].id] and keys.shape == (2, KEY_DIM)
        behaviour_ids, behaviour = registry.behaviour_keys()  # likewise behaviour keys (outputs read)
        assert list(behaviour_ids) == list(key_ids) and np.allclose(np.linalg.norm(behaviour, axis=1), 1)
        columns = [r[1] for r in registry._conn.execute("PRAGMA table_info(dnas)")]
        assert "dna" not in columns and "name" in columns  # payloads moved out of the metadata rows
        assert genome_hash(registry.dna("model-2")) == genome_hash(rows[1][0])
        assert registry.add(reg.dna("pruned-50")).entry.id == 4  # ids continue after the migrated rows
        registry._conn.execute("INSERT INTO schema_migrations VALUES (7, 'later', 'from the future')")
    with pytest.raises(RegistryError, match="newer than this release"):
        Registry(path)


def test_a_payload_changed_on_disk_is_refused(reg) -> None:
    """Reads check each payload's CRC-32 (its sha256 was checked when it was added)."""
    entry = reg.get("noised")
    blob = bytearray(reg._conn.execute("SELECT dna FROM payloads WHERE id = ?", (entry.id,)).fetchone()[0])
    blob[len(blob) // 2] ^= 0x01
    reg._conn.execute("UPDATE payloads SET dna = ? WHERE id = ?", (bytes(blob), entry.id))
    with pytest.raises(DNAFormatError, match="corrupt"):
        reg.dna(entry)
    with pytest.raises(DNAFormatError, match="corrupt"):
        list(reg.dnas([entry.id]))
    assert genome_hash(reg.dna("parent")) == reg.get("parent").dna_hash  # the others still read


def test_concurrent_reader_sees_committed_state(reg) -> None:
    writer = reg
    with Registry(writer.path, create=False) as reader:
        before = len(reader)
        writer._conn.execute("BEGIN IMMEDIATE")
        writer._conn.execute("DELETE FROM dnas WHERE name = 'noised'")
        assert len(reader) == before  # the reader is not blocked and sees the last commit
        assert reader.dna("noised") is not None
        writer._conn.execute("COMMIT")
        assert len(reader) == before - 1


# ------------------------------------------------------------------------------ de-duplication


def test_adding_a_registered_model_is_a_noop(reg, saved, tmp_path) -> None:
    dna = reg.dna("parent")
    outcome = reg.add(dna)
    assert not outcome.added and outcome.entry.name == "parent" and "same DNA" in outcome.reason
    # the same file under another path: skipped before extraction (sha256)
    copy = tmp_path / "renamed.pt"
    copy.write_bytes(Path(saved["parent"]).read_bytes())
    report = add_models(reg, [str(copy), str(saved["fine-tuned"])], engine="inline")
    assert [s["name"] for s in report.skipped] == ["parent", "fine-tuned"] and not report.added
    # the same DNA with another model hash (re-exported bytes): a no-op by genome hash
    twin = dataclasses.replace(dna, model={**dna.model, "sha256": "f" * 64, "ref": "elsewhere"})
    assert not reg.add(twin).added
    assert len(reg) == 11


def test_compact_rewrites_an_old_registry_in_large_pages(reg, tmp_path, monkeypatch, capsys) -> None:
    """A registry made with 4 KiB pages is rewritten in 64 KiB pages without the space of removed
    models; its DNAs read back unchanged. Refused while another connection has the file open."""
    from progenitor.cli import main
    from progenitor.index import registry as registry_module

    path = tmp_path / "old.sqlite"
    monkeypatch.setattr(registry_module, "PAGE_SIZE", 4096)
    with Registry(path) as old:
        for name in ("parent", "fine-tuned", "noised"):
            old.add(reg.dna(name), name=name)
        old.remove("noised")
        assert old.page_size() == 4096
    monkeypatch.undo()
    with Registry(path) as old, Registry(path) as other:
        with pytest.raises(RegistryError, match="open in another process"):
            old.compact()
        assert other.dna("parent").genes.keys() == reg.dna("parent").genes.keys()
    assert main(["index", "compact", "--db", str(path)]) == 0
    assert "64 KiB pages" in capsys.readouterr().err
    with Registry(path) as new:
        assert new.page_size() == 65536 and [e.name for e in new.entries()] == ["parent", "fine-tuned"]
        assert genome_hash(new.dna("fine-tuned")) == genome_hash(reg.dna("fine-tuned"))


# ---------------------------------------------------------------------- foreign extractor specs


def test_foreign_extractor_specs_are_rejected(reg, saved, probes_array) -> None:
    registered = reg.dna("noised")
    reg.remove("noised")  # (a DNA of a registered model file would be a no-op, not an error)
    other_probes = pg.extract(str(saved["noised"]), probes=probes_array[:48])
    with pytest.raises(SpecMismatchError, match="probe set"):
        reg.add(other_probes)
    newer = dataclasses.replace(registered, versions=dict(registered.versions))
    newer.versions["weight_sketch"] = 99
    current = registered.versions["weight_sketch"]
    with pytest.raises(SpecMismatchError, match=f"weight_sketch v99, the index uses v{current}"):
        reg.add(newer)
    vectorised = dataclasses.replace(
        registered, vector=np.ones(4, np.float32) / 2, vector_spec={"name": "dna-gen", "version": 3, "hash": "ab" * 8}
    )
    with pytest.raises(SpecMismatchError, match="generator dna-gen v3"):
        reg.add(vectorised)
    # refused before any extraction when the probe files differ
    with pytest.raises(SpecMismatchError, match="not the index's"):
        add_models(reg, [str(saved["noised"])], probes=probes_array[:48], engine="inline")
    assert len(reg) == 10
    spec = reg.spec
    assert ExtractorSpec.from_json(json.dumps(spec.to_json())) == spec


def test_an_index_adopts_genes_added_after_it_was_created(reg, tmp_path) -> None:
    dna = reg.dna("noised")
    old = dataclasses.replace(reg.spec, genes={n: v for n, v in reg.spec.genes.items() if n != "weight_sketch"})
    with Registry(tmp_path / "old.sqlite") as older:
        older.set_spec(old)  # as a release without weight_sketch would have created it
        assert older.add(dna).added
        assert older.spec.genes["weight_sketch"] == dna.versions["weight_sketch"]
        unknown = dataclasses.replace(reg.dna("parent"), versions={**dna.versions, "not_a_gene": 1})
        with pytest.raises(SpecMismatchError, match="gene not_a_gene v1, which the index does not know"):
            older.add(unknown)
        assert len(older) == 1


# -------------------------------------------------------------------------------------- search


def test_vector_search_faiss_and_numpy_agree() -> None:
    if not faiss_available():
        pytest.skip("faiss not installed")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(100, 3100)
    queries = vectors[rng.choice(3000, 20)] + 0.1 * rng.standard_normal((20, 64)).astype(np.float32)
    exact, flat = VectorIndex(ids, vectors, "numpy"), VectorIndex(ids, vectors, "faiss")
    for q in queries:
        a, b = exact.search(q, 10)[0], flat.search(q, 10)[0]
        truth = ids[np.argsort(-(vectors @ q), kind="stable")[:10]]
        assert list(a) == list(b) == list(truth)
    assert (exact.search_many(queries, 5) == flat.search_many(queries, 5)).all()


def test_registry_retrieval_same_top_k_with_and_without_faiss(tmp_path) -> None:
    if not faiss_available():
        pytest.skip("faiss not installed")
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((300, 32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with Registry(tmp_path / "vectors.sqlite") as registry:
        for i, v in enumerate(vectors):
            registry.add(_synthetic_dna(i, v))
        with pytest.raises(SpecMismatchError, match="no learned vector"):
            registry.add(_synthetic_dna(999, None))
        target = _synthetic_dna(1000, vectors[7] + 0.05 * rng.standard_normal(32))
        found = {
            b: ParentSearch(registry, backend=b, exhaustive_up_to=0).candidates_for(target, 15)
            for b in ("faiss", "numpy")
        }
    assert found["faiss"][0] == found["numpy"][0] and found["faiss"][0][0] == 8  # row 7 = id 8
    assert found["faiss"][2] == "vector:faiss" and found["numpy"][2] == "vector:numpy"


def test_search_finds_each_childs_parent_and_abstains_on_independents(reg) -> None:
    engine = ParentSearch(reg)
    for name in CHILDREN:
        dna, label, entry = resolve_target(reg, name)
        result = engine(dna, top=3, name=label, order=entry.id)
        assert result.parent is not None and result.parent.entry.name == "parent", result.to_json()
        assert name in result.excluded and result.method == "exhaustive"
    for name in INDEPENDENT[:3]:
        dna, label, entry = resolve_target(reg, name)
        result = engine(dna, top=3, name=label, order=entry.id)
        assert result.parent is None and result.to_json()["abstained"]
        assert all(c.relation.verdict != "derived" for c in result.candidates)


def test_search_caches_change_no_answer(reg) -> None:
    """Kept candidates and kept verdicts between registered models give the answers, bit for bit,
    that decoding and comparing afresh gives."""
    cached = ParentSearch(reg, exhaustive_up_to=0)
    fresh = ParentSearch(reg, exhaustive_up_to=0, cached_dnas=0, cached_pairs=0)
    for _ in range(2):  # the second round finds the first one's candidates and verdicts kept
        for name in CHILDREN + INDEPENDENT[:2]:
            dna, label, entry = resolve_target(reg, name)
            answers = [engine(dna, top=4, name=label, order=entry.id).to_json() for engine in (cached, fresh)]
            for answer in answers:
                answer.pop("seconds")
            assert answers[0] == answers[1], name
    assert cached.dna_cache.hits > 0 and cached.pair_cache.hits > 0
    assert len(fresh.dna_cache) == len(fresh.pair_cache) == 0


def test_search_beyond_the_exhaustive_threshold_retrieves_by_weight_keys(reg) -> None:
    """Past ``exhaustive_up_to``, candidates are the nearest weight keys and learned vectors;
    the weight keys bring each child's parent into even a short candidate list."""
    engine = ParentSearch(reg, exhaustive_up_to=0)
    for child in CHILDREN:
        result = engine(reg.dna(child), name=child, candidates=2)
        assert result.method.startswith("key:"), result.method
        assert result.parent is not None and result.parent.entry.name == "parent", child


def test_a_black_box_target_is_retrieved_by_behaviour_keys(reg) -> None:
    """A target known by its outputs only has no weight key, and its learned vector is made from
    one block of four: the behaviour keys (every registered DNA has one) bring its parent in."""
    engine = ParentSearch(reg, exhaustive_up_to=0)
    parent = reg.get("parent").id
    for child in CHILDREN:
        # the five nearest: itself and the family's four others, before any independent model
        ids, _, how = engine.candidates_for(reg.dna(child).at_access("black"), 5)
        assert "behaviour-key" in how and parent in ids, (child, how)
    assert "behaviour-key" not in engine.candidates_for(reg.dna(CHILDREN[0]), 2)[2]  # white among white
    # A black-box model registered (an API): white-box targets look it up by behaviour key, among
    # the models without weights only (the others they find by weight key).
    api = reg.dna("noised").at_access("black")
    api = dataclasses.replace(api, model={**api.model, "sha256": "a" * 64, "ref": "http://api.example/v1"})
    bundle = pg.api.default_learned()
    api = dataclasses.replace(api, vector=bundle.embed([api])[0], vector_spec=bundle.spec)
    added = reg.add(api, name="api").entry
    mixed = ParentSearch(reg, exhaustive_up_to=0)
    ids, _, how = mixed.candidates_for(reg.dna("parent"), 1)
    assert "key:" in how and "behaviour-key" in how and added.id in ids
    assert list(mixed._behaviour_keys(keyless_only=True).ids) == [added.id]


def test_a_served_model_is_registered_and_searched_black_box(reg, saved) -> None:
    """An auditor's case: a model behind an HTTP endpoint, registered beside white-box DNAs and
    searched for its parent (behaviour keys retrieve it; the verdict reads its outputs only)."""
    from progenitor.serve import serve

    with serve(pg.load(saved["noised"])) as server:
        report = add_models(reg, [server.url], probes=saved["probes"], engine="inline")
    assert len(report.added) == 1 and not report.failed
    entry = reg.get(report.added[0]["name"])
    assert entry.access == "black"
    result = ParentSearch(reg, exhaustive_up_to=0)(reg.dna(entry), name="api", order=entry.id)
    assert "behaviour-key" in result.method
    verdicts = {c.entry.name: c.relation.verdict for c in result.candidates}
    assert verdicts.get("noised") == "derived"  # its own white-box DNA, same outputs
    assert result.parent is not None and result.parent.entry.name in {"parent", "noised", "permuted"}


def test_search_new_uploads(reg, saved) -> None:
    reg.remove("fine-tuned")
    reg.remove("independent5")
    engine = ParentSearch(reg)
    dna, label, entry = resolve_target(reg, str(saved["fine-tuned"]))  # probes from the index
    assert entry is None
    result = engine(dna, top=2, name=label)
    assert result.parent.entry.name == "parent" and result.parent.relation.p_value < 0.01
    obj = result.to_json()
    assert obj["parent"] == "parent" and len(obj["candidates"]) == 2 and obj["scored"] == 9
    dna, label, _ = resolve_target(reg, str(saved["independent5"]))
    assert engine(dna, name=label).parent is None
    # the root of the reg: its relatives look derived from it, so no parent
    dna, label, entry = resolve_target(reg, "parent")
    result = engine(dna, name=label, order=entry.id)
    assert result.parent is None and "look derived from the target" in result.reason


def test_lineage_check_prefers_the_parent_over_a_closer_sibling() -> None:
    """A light fine-tune of the parent (a sibling of the target) can look closer to the target
    than the parent does; in the lineage tree of the candidates it is the parent's child, and the
    target goes to the parent."""
    from progenitor.calibration import load_calibration
    from progenitor.index.direction import get_direction
    from progenitor.index.search import lineage_check_parent

    dna = {n: _synthetic_dna(i, None) for i, n in enumerate(["parent", "sib1", "sib2", "target"])}
    for d in dna.values():
        d.model["n_params"] = 100
    strength = {("parent", "target"): 10.0, ("sib1", "target"): 10.3, ("sib2", "target"): 9.0,
                ("parent", "sib1"): 20.0, ("parent", "sib2"): 20.0, ("sib1", "sib2"): 12.0}

    def rel(a: str, b: str) -> Relation:
        value = strength.get((a, b), strength.get((b, a)))
        return Relation("derived", 1.0, 1e-9, value, aligned=1.0)

    ranked = ["sib1", "parent", "sib2"]  # by edge cost alone the sibling comes first
    candidates = [(n, dna[n], rel(n, "target"), 0) for n in ranked]
    pick = lineage_check_parent(candidates, dna["target"], 0, load_calibration(), 0.01,
                                get_direction("auto"), 0.0, relate_pair=rel)
    assert pick == "parent"


# ---------------------------------------------------------------------------------------- trees


def test_direction_signal() -> None:
    rng = np.random.default_rng(0)

    def dna(sparsity: float, n: int) -> pg.DNA:
        moments = np.column_stack([rng.normal(size=3), np.full(3, -0.5), np.full(3, sparsity)])
        gene = GeneValue({"moments": moments.astype(np.float32), "depth": np.linspace(0, 1, 3, dtype=np.float32)})
        return pg.DNA({"n_params": n}, "white", None, {"weight_stats": gene}, {"weight_stats": 1})

    parent, pruned, smaller = dna(0.0, 1000), dna(0.5, 1000), dna(0.0, 500)
    assert weight_stats_direction(parent, pruned) > 0.95
    assert weight_stats_direction(parent, smaller) > 0.95
    assert weight_stats_direction(parent, parent) == 0.5
    assert weight_stats_direction(pruned, parent) == pytest.approx(1 - weight_stats_direction(parent, pruned))

    def with_precision(fp16_exact: float) -> pg.DNA:  # a float16 copy: every weight float16-exact
        gene = GeneValue({"moments": np.zeros((3, 3), np.float32), "precision": np.full((3, 2), 0.0, np.float32)})
        gene.arrays["precision"][:, 0] = fp16_exact
        return pg.DNA({"n_params": 1000}, "white", None, {"weight_stats": gene}, {"weight_stats": 2})

    original, cast = with_precision(0.0001), with_precision(1.0)
    assert weight_stats_direction(original, cast) > 0.95 > 0.05 > weight_stats_direction(cast, original)

    def model(kinds: list[str], n_params: int, errors: int | None, labels: str = "L") -> pg.DNA:
        layers = [[f"l{i}", kind, 8, [8], i / len(kinds)] for i, kind in enumerate(kinds)]
        genes = {"weight_sketch": GeneValue({}, {"layers": layers})}
        if errors is not None:
            wrong = np.zeros(100, np.uint8)
            wrong[:errors] = 1
            genes["error_agreement"] = GeneValue({"top1": np.zeros(100, np.int32), "wrong": wrong}, {"labels": labels})
        return pg.DNA({"n_params": n_params}, "white", None, genes, {})

    # Between architectures the more accurate model is the parent, whatever the sizes; within one
    # (structured pruning keeps the layer kinds), or without labels on both, the size vote stands.
    teacher, big_student = model(["conv", "dense"], 1000, 30), model(["conv", "conv", "dense"], 5000, 45)
    assert weight_stats_direction(teacher, big_student) > 0.95
    assert weight_stats_direction(teacher, model(["conv", "conv", "dense"], 5000, None)) < 0.05
    assert weight_stats_direction(teacher, model(["conv", "conv", "dense"], 5000, 45, "other")) < 0.05
    assert weight_stats_direction(teacher, model(["conv", "dense"], 500, 45)) > 0.95  # pruned: smaller
    assert weight_stats_direction(teacher, model(["conv", "dense"], 2000, 20)) < 0.05  # same kinds: size


def test_tree_takes_the_aligned_original_not_its_permuted_copy(reg) -> None:
    """A fine-tune of the parent matches the parent's units in order, not those of the parent's
    permuted copy (same genes otherwise): the tree gives it the parent, whoever came first."""
    members = {m.name: m for m in members_of(reg)}
    chosen = [members[n] for n in ("permuted", "fine-tuned", "parent")]
    for order, m in enumerate(chosen):
        m.order = order  # the permuted copy registered first
    tree = build_tree(chosen, order_prior=0.0)
    assert tree.parent["fine-tuned"] == "parent"
    edge = next(e for e in tree.edges if e.child == "fine-tuned")
    assert edge.relation.aligned > 0.9


def test_tree_recovers_the_family(reg) -> None:
    tree = build_tree(members_of(reg))
    assert tree.roots == ["parent"]
    assert sorted(tree.orphans) == sorted(INDEPENDENT)
    assert {c: tree.parent[c] for c in CHILDREN} == dict.fromkeys(CHILDREN, "parent")
    assert not tree.flags
    obj = tree.to_json()
    assert {e["child"] for e in obj["edges"]} == set(CHILDREN)
    assert all(e["verdict"] == "derived" for e in obj["edges"])
    assert '"parent" -> "pruned-50"' in tree.to_dot()
    assert "<h1>Lineage of 11 models</h1>" in tree.to_html()


def test_tree_flags_contradicted_declarations(reg) -> None:
    reg.declare("pruned-50", from_scratch=True)
    reg.declare("noised", parent="independent0")
    reg.declare("fine-tuned", parent="parent")  # true: no flag
    reg.declare("permuted", parent="not-registered")
    tree = build_tree(members_of(reg))
    kinds = {(f.model, f.kind, f.severity) for f in tree.flags}
    assert kinds == {
        ("pruned-50", "claims_scratch_has_parent", "contradiction"),
        ("noised", "declared_parent_unrelated", "contradiction"),
        ("permuted", "declared_parent_unknown", "note"),
    }
    assert 'color="red"' in tree.to_dot()


def test_tree_with_vector_candidates_and_custom_relation() -> None:
    """Synthetic families: candidates from learned vectors (k nearest), a stand-in verdict."""
    rng = np.random.default_rng(3)
    members, truth = [], {}
    for f in range(40):
        root = rng.standard_normal(16)
        chain = [root]
        for _ in range(3):  # root -> child1 -> child2 -> child3, each sparser than its parent
            chain.append(chain[-1] + 0.15 * rng.standard_normal(16))
        for k, v in enumerate(chain):
            moments = np.array([[0.0, -0.5, 0.1 * k]], np.float32)
            gene = GeneValue({"moments": moments, "depth": np.zeros(1, np.float32)})
            dna = pg.DNA(
                {"n_params": 100},
                "white",
                None,
                {"weight_stats": gene},
                {"weight_stats": 1},
                vector=(v / np.linalg.norm(v)).astype(np.float32),
            )
            members.append(Member(f"f{f}m{k}", dna, order=int(rng.integers(1000))))
            if k:
                truth[f"f{f}m{k}"] = f"f{f}m{k - 1}"

    def relate_fn(a: Member, b: Member) -> Relation:
        cos = float(a.dna.vector @ b.dna.vector)
        strength = 10 * float(np.arctanh(min(cos, 0.999999)))  # Fisher z, like the verdict's
        return Relation("derived" if cos > 0.8 else "unrelated", cos, None, strength)

    tree = build_tree(members, relate_fn=relate_fn, neighbours=5, order_prior=0.0)
    assert tree.method["candidates"].startswith("5 nearest per model by learned vectors")
    correct = sum(tree.parent[c] == p for c, p in truth.items())
    assert correct / len(truth) >= 0.95
    assert len(tree.roots) == 40


def test_a_tree_of_black_box_models_prunes_by_behaviour_keys(reg) -> None:
    """Models known by their outputs only have no weight keys: each one's nearest behaviour keys
    still pair it with its parent."""
    from progenitor.index.tree import _candidate_pairs, members_of

    members = [dataclasses.replace(m, dna=m.dna.at_access("black")) for m in members_of(reg)]
    pairs, how = _candidate_pairs(members, 4, "numpy")
    assert how == "4 nearest per model by behaviour keys (numpy)"
    at = {m.name: i for i, m in enumerate(members)}
    assert all((at["parent"], at[child]) in pairs for child in CHILDREN)
    assert len(pairs) < len(members) * (len(members) - 1) // 2  # pruned


def test_tree_roots_a_family_at_the_model_whose_unit_order_the_family_shares() -> None:
    """An original and its permuted copy have the same genes; the copy is made a little more
    central, as float noise can, but the original's other derivations share its unit order, so
    the original is the root and the copy its child."""
    names = ["copy", "original", "ft1", "ft2", "ft3", "copy-ft"]
    dna = {n: _synthetic_dna(i, None) for i, n in enumerate(names)}
    for d in dna.values():
        d.model["n_params"] = 100  # no size cue: the direction signal says 0.5 for every pair

    def relate_fn(a: Member, b: Member) -> Relation:
        pair = {a.name, b.name}
        if pair == {"copy", "original"}:
            return Relation("derived", 1.0, 1e-12, 18.0, permuted=True)
        # Permutation-invariant genes: the copy is as close to everyone as the original is.
        same_order = ("copy-ft" in pair) == ("copy" in pair)
        strength = 8.0 + (0.01 if "copy" in pair else 0.0)
        return Relation("derived", 1.0, 1e-9, strength, aligned=float(same_order), permuted=not same_order)

    members = [Member(n, dna[n], order=i) for i, n in enumerate(names)]
    tree = build_tree(members, relate_fn=relate_fn, order_prior=0.0, learned=False)
    assert tree.parent["copy"] == "original" and tree.parent["original"] is None
    assert tree.parent["copy-ft"] == "copy" and all(tree.parent[f"ft{k}"] == "original" for k in (1, 2, 3))


def test_learned_model_dna_joins_the_verdicts(reg) -> None:
    """With a learned Model DNA (here an untrained one), its classifier enters every verdict."""
    from progenitor.learn.bundle import build
    from progenitor.learn.generator import BLOCKS

    torch.manual_seed(0)
    bundle = build({"parts": list(BLOCKS), "dim": 8, "hidden": 16})
    dna, label, entry = resolve_target(reg, "fine-tuned")
    result = ParentSearch(reg, learned=bundle)(dna, top=2, name=label, order=entry.id)
    assert all("learned_dna" in c.relation.comparison.evidence for c in result.candidates)
    tree = build_tree(members_of(reg), learned=bundle)
    assert tree.method["direction"] == "auto" and len(tree.members) == 11


def test_index_verdicts_are_compares_and_rank_on_the_pooled_null(reg, monkeypatch) -> None:
    """Search and trees judge a pair as ``compare`` does (the source recipe's own null), and order
    related candidates by a strength measured on the calibration's pooled null (one scale)."""
    from progenitor.api import score_genes
    from progenitor.calibration import load_calibration
    from progenitor.index import _relate
    from progenitor.verdict import gene_evidence

    recipes = []
    real = _relate.decide

    def recording(*args, **kwargs):
        recipes.append(kwargs["recipe"] if "recipe" in kwargs else (args[8] if len(args) > 8 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(_relate, "decide", recording)
    source, target = reg.dna("parent"), reg.dna("fine-tuned")
    shipped = load_calibration(None)
    # A calibration whose nulls for the source's recipe differ from the pooled ones.
    calibration = dataclasses.replace(shipped, genes={
        name: dataclasses.replace(null, groups={source.recipe(): [v + 0.5 for v in null.null[:40]]},
                                  group_clusters={})
        for name, null in shipped.genes.items()
    })
    relation = _relate.relate(source, target, calibration, 0.01)
    assert recipes and set(recipes) == {source.recipe()}
    assert relation.p_value == pg.compare(source, target, calibration=calibration, learned=False).p_value
    scores = score_genes(source, target)
    pooled = _relate.strength_of({"genes": gene_evidence(scores, calibration)})
    own = _relate.strength_of({"genes": gene_evidence(scores, calibration, recipe=source.recipe())})
    assert relation.strength == pooled != own
    # Without a null of the recipe's own the verdict's evidence is the pooled one, and is reused.
    assert not calibration.pooled_for(source.recipe()) and shipped.pooled_for("a recipe no zoo had")
    plain = dataclasses.replace(shipped, genes={n: dataclasses.replace(g, groups={}) for n, g in shipped.genes.items()})
    assert plain.pooled_for(source.recipe())
    assert _relate.relate(source, target, plain, 0.01).strength == _relate.strength_of(
        {"genes": gene_evidence(scores, plain)})


def test_learned_classifier_is_skipped_only_where_it_cannot_change_the_verdict(reg) -> None:
    """``relate(learned_if_related=True)`` gives every pair the same verdict, probability, p-value
    and strength as the full verdict, and assesses the classifier exactly on the related pairs."""
    from progenitor.calibration import load_calibration
    from progenitor.index._relate import learned_bundle, relate

    bundle, calibration = learned_bundle(True), load_calibration(None)
    assert bundle is not None
    dnas = [reg.dna(e) for e in reg.entries()]
    related = 0
    for source in dnas[:4]:
        for target in dnas:
            full = relate(source, target, calibration, 0.01, bundle=bundle)
            lazy = relate(source, target, calibration, 0.01, bundle=bundle, learned_if_related=True)
            assert (lazy.verdict, lazy.probability, lazy.p_value, lazy.strength) == (
                full.verdict, full.probability, full.p_value, full.strength
            )
            is_related = full.p_value is not None and full.p_value < 0.01
            related += is_related
            assert ("learned_dna" in lazy.comparison.evidence) == is_related
    assert 0 < related < 4 * len(dnas)


@pytest.mark.slow
def test_tree_on_the_smoke_zoo(smoke_zoo, tmp_path) -> None:
    from progenitor.zoo import load_manifest

    manifest = load_manifest(smoke_zoo)
    truth = {e["child"]: e["parent"] for e in manifest["edges"]}
    probes = smoke_zoo / manifest["probes"][0]["path"]
    with Registry(tmp_path / "zoo.sqlite") as registry:
        for model in manifest["models"]:  # one call each: load options differ by format
            report = add_models(
                registry,
                [str(smoke_zoo / model["path"])],
                probes=probes,
                engine="inline",
                names=[model["id"]],
                load_options=model["load"],
            )
            assert not report.failed, report.failed
        tree = build_tree(members_of(registry))
    found = {child: tree.parent[child] for child in truth}
    directed = sum(found[c] == p for c, p in truth.items()) / len(truth)
    assert directed >= 0.75, {c: (p, found[c]) for c, p in truth.items() if found[c] != p}


# ------------------------------------------------------------------------------------- engines


def crash_once_model() -> torch.nn.Module:
    """``py:test_index:crash_once_model``: kills its worker the first time it is built."""
    import families

    marker = Path(os.environ["PROGENITOR_TEST_CRASH_MARKER"])
    if marker.exists():
        marker.unlink()
        os._exit(3)
    torch.manual_seed(0)
    return families.SmallCNN()


def test_interrupted_add_resumes(saved, tmp_path) -> None:
    refs = _refs(saved, ["parent", *CHILDREN])
    calls = []

    def interrupt_after_two(message: str) -> None:
        if "] added " in message:
            calls.append(message)
            if len(calls) == 2:
                raise KeyboardInterrupt

    with Registry(tmp_path / "r.sqlite") as registry:
        with pytest.raises(KeyboardInterrupt):
            add_models(registry, refs, probes=saved["probes"], engine="inline", progress=interrupt_after_two)
        assert [e.name for e in registry.entries()] == ["parent", "fine-tuned"]
        report = add_models(registry, refs, engine="inline")  # probes: the registry's own
        assert [s["name"] for s in report.skipped] == ["parent", "fine-tuned"]
        assert [a["name"] for a in report.added] == CHILDREN[1:]
        assert [e.name for e in registry.entries()] == ["parent", *CHILDREN]


@pytest.mark.slow
def test_engines_give_identical_dnas_and_survive_a_dying_worker(saved, tmp_path, monkeypatch) -> None:
    refs = _refs(saved, ["parent", "pruned-50", "independent0"])
    marker = tmp_path / "crash-once"
    marker.write_text("armed")
    monkeypatch.setenv("PROGENITOR_TEST_CRASH_MARKER", str(marker))
    hashes = {}
    for engine in ("local", "ray", "inline"):
        extra = ["py:test_index:crash_once_model"] if engine == "local" else []
        with Registry(tmp_path / f"{engine}.sqlite") as registry:
            report = add_models(
                registry,
                refs + extra,
                probes=saved["probes"],
                engine=engine,
                workers=2,
                retries=2,
                load_options={"input_shape": (1, 8, 8)},
            )
            assert not report.failed, report.failed
            hashes[engine] = [(e.name, e.dna_hash) for e in registry.entries()]
    assert not marker.exists()  # the first worker died on the crashing model ...
    assert hashes["local"][-1][0] == "crash_once_model"  # ... and the retry registered it once
    assert hashes["local"][:3] == hashes["ray"] == hashes["inline"]


# ----------------------------------------------------------------------------------------- CLI


def test_cli_collection_workflow(saved, tmp_path, capsys) -> None:
    from progenitor.cli import app, main
    from progenitor.cli_index import register

    register(app)
    register(app)  # idempotent
    db = str(tmp_path / "cli.sqlite")
    assert (
        main(
            [
                "index",
                "add",
                *_refs(saved, ["parent", "pruned-50", "independent0"]),
                "--probes",
                str(saved["probes"]),
                "--engine",
                "inline",
                "--db",
                db,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "index",
                "add",
                str(saved["noised"]),
                "--engine",
                "inline",
                "--db",
                db,
                "--parent",
                "independent0",
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert json.loads(out)["added"][0]["name"] == "noised"
    assert main(["index", "list", "--json", "--db", db]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in listed] == ["parent", "pruned-50", "independent0", "noised"]

    assert main(["search", str(saved["fine-tuned"]), "pruned-50", "--json", "--top", "2", "--db", db]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["parent"] for r in results] == ["parent", "parent"]
    assert main(["search", str(saved["independent3"]), "--db", db]) == 0
    assert "no likely parent (abstained)" in capsys.readouterr().out

    assert main(["tree", "--json", "--db", db]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert tree["roots"] == ["parent"] and tree["orphans"] == ["independent0"]
    assert [f["kind"] for f in tree["flags"]] == ["declared_parent_unrelated"]
    assert main(["tree", "--dot", "--db", db]) == 0
    assert capsys.readouterr().out.startswith("digraph lineage {")
    assert main(["tree", "--html", "-o", str(tmp_path / "tree.html"), "--db", db]) == 0
    assert "noised" in (tmp_path / "tree.html").read_text()
    assert main(["tree", "--db", db]) == 0
    text = capsys.readouterr().out
    assert text.startswith("parent\n") and "── pruned-50" in text and "orphans: independent0" in text

    assert main(["index", "get", "noised", "--db", db, "-o", str(tmp_path / "n.dna")]) == 0
    assert pg.load_dna(tmp_path / "n.dna").model["ref"].endswith("noised.pt")
    assert main(["index", "export", str(tmp_path / "exp"), "--db", db]) == 0
    assert main(["index", "import", str(tmp_path / "exp"), "--db", str(tmp_path / "b.sqlite")]) == 0
    assert main(["index", "remove", "noised", "--db", db]) == 0
    assert main(["index", "get", "noised", "--db", db]) == 2
    assert main(["search", "x.pt", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no registry" in capsys.readouterr().err


def test_search_abstains_on_a_pruned_copy_whose_source_is_not_registered(reg) -> None:
    """Its siblings are as related as its parent by every similarity, but do not hold its values."""
    dna, label, entry = resolve_target(reg, "pruned-50")
    with_parent = ParentSearch(reg)(dna, top=4, name=label, order=entry.id)
    assert with_parent.parent is not None and with_parent.parent.entry.name == "parent"
    assert with_parent.parent.relation.copied == 1.0
    reg.remove("parent")
    result = ParentSearch(reg)(dna, top=4, name=label, order=entry.id)
    siblings = [c for c in result.candidates if c.relation.verdict == "derived"]
    assert siblings and all(c.relation.copied < 0.5 for c in siblings)
    assert result.parent is None and "pruned or converted" in result.reason


def test_search_names_the_parent_of_a_prune_retrained_with_its_mask(reg, family, tmp_path, capsys) -> None:
    """Retraining after pruning moves every kept value, so the parent no longer holds them; its
    smallest weights are still where the target has zeros, and the search names it, saying on
    what ground. A fine-tune of the parent fails that test."""
    import families
    from progenitor.index._relate import MASKED

    retrained = families.pruned(family.parent)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(3)
        for p in retrained.parameters():
            if p.ndim > 1:
                p.add_(0.02 * p.abs().max() * torch.randn(p.shape, generator=generator) * (p != 0))
    path = tmp_path / "retrained.pt"
    torch.jit.save(torch.jit.trace(retrained, torch.zeros(1, 1, 8, 8)), path)
    dna, label, _ = resolve_target(reg, str(path))
    # The registered prune is the very state the retraining started from: it is named first.
    assert ParentSearch(reg)(dna, top=4, name=label).parent.entry.name == "pruned-50"
    reg.remove("pruned-50")
    result = ParentSearch(reg)(dna, top=4, name=label)
    best = result.parent
    assert best is not None and best.entry.name == "parent" and best.basis == MASKED
    assert best.relation.copied_exact == 0.0 and best.relation.mask_kept
    assert "pruned, then retrained" in result.reason and result.to_json()["candidates"][0]["basis"] == MASKED
    tuned = next(c for c in result.candidates if c.entry.name == "fine-tuned")
    assert not tuned.relation.mask_kept and not tuned.eligible
    from progenitor.cli import main

    assert main(["search", str(path), "--db", str(reg.path)]) == 0
    out = capsys.readouterr().out
    assert "likely parent parent" in out and "pruned, then retrained" in out


def test_a_candidate_holding_the_values_overrules_the_mask_test() -> None:
    from progenitor.index._relate import COPIED, MASKED, RELATED, strongest_bases

    assert strongest_bases({"a": MASKED, "b": COPIED, "c": None, "d": RELATED}) == {
        "a": None, "b": COPIED, "c": None, "d": RELATED}
    alone = {"a": MASKED, "c": None, "d": RELATED}
    assert strongest_bases(alone) == alone


def test_a_permuted_copy_is_not_the_parent_of_a_fine_tune_of_the_original(reg) -> None:
    """The fine-tune is aligned with the parent; the parent's permuted copy computes the same
    function but is not aligned with the fine-tune, and would have to be permuted and changed in
    one step to be its parent."""
    from progenitor.index._relate import parent_basis, relate

    dna = {e.name: reg.dna(e.name) for e in reg.entries()}
    cal = pg.load_calibration()
    copy_rel = relate(dna["parent"], dna["permuted"], cal, 0.01)
    assert copy_rel.verdict == "derived" and copy_rel.permuted and not copy_rel.unaligned_change
    to_parent = relate(dna["parent"], dna["fine-tuned"], cal, 0.01)
    assert to_parent.aligned == 1.0 and to_parent.permuted is False and not to_parent.unaligned_change
    to_copy = relate(dna["permuted"], dna["fine-tuned"], cal, 0.01)
    assert to_copy.verdict == "derived" and to_copy.unaligned_change
    assert parent_basis(to_copy, 0.9, dna["permuted"], dna["fine-tuned"]) is None
    assert parent_basis(to_parent, 0.9, dna["parent"], dna["fine-tuned"]) == "related"
    # Below the target only beyond the direction signal's tolerance (DIRECTION_TOLERANCE = 0.05).
    assert parent_basis(to_parent, 0.47, dna["parent"], dna["fine-tuned"]) == "related"
    assert parent_basis(to_parent, 0.44, dna["parent"], dna["fine-tuned"]) is None


def test_copy_step_kinds(family, probes_array) -> None:
    """Pruning adds exact zeros, a float16 round trip adds float16-exact values, a fine-tune neither."""
    import copy

    from progenitor.index.direction import copy_step

    def dna(module):
        return pg.extract(module, probes=probes_array, input_shape=(1, 8, 8), learned=False, genes=["weight_stats"])

    half = copy.deepcopy(family.parent)
    half.load_state_dict({k: v.half().float() for k, v in family.parent.state_dict().items()})
    parent = dna(family.parent)
    assert copy_step(parent, dna(family.children["pruned-50"])) == "pruned"
    assert copy_step(parent, dna(half)) == "lossy"
    assert copy_step(parent, dna(family.children["fine-tuned"])) is None
    assert copy_step(dna(half), parent) is None  # the original is not a copy of its copy


def test_merge_weight_finds_averages_not_parents(family, probes_array) -> None:
    """A weight average of two fine-tunes is found between them; their common parent is not."""
    import copy

    import families
    from progenitor.index.merges import merge_weight

    def dna(module):
        return pg.extract(module, probes=probes_array, input_shape=(1, 8, 8), learned=False, genes=["weight_values"])

    a = families.fine_tuned(family.parent, seed=100)
    b = families.fine_tuned(family.parent, seed=101)
    soup = copy.deepcopy(a)
    soup.load_state_dict({k: 0.3 * v + 0.7 * b.state_dict()[k] for k, v in a.state_dict().items()})
    da, db = dna(a), dna(b)
    assert merge_weight(dna(soup), da, db) == pytest.approx(0.3, abs=0.02)
    assert merge_weight(dna(family.parent), da, db) is None
    assert merge_weight(da, dna(family.parent), db) is None  # a fine-tune is not between its parent and a sibling


def test_search_abstains_when_the_lineage_check_roots_the_target(reg) -> None:
    """Without registration order, the root's permuted copy is as likely its parent as its child
    (direction 0.5) and eligible; in the lineage tree of the root and its relatives the root is
    the root (its children share its unit order), so the search abstains."""
    dna, label, _ = resolve_target(reg, "parent")
    result = ParentSearch(reg)(dna, name=label)
    copy = next(c for c in result.candidates if c.entry.name == "permuted")
    assert copy.eligible and copy.direction == pytest.approx(0.5)
    assert result.rooted and result.parent is None and "the target is the root" in result.reason
    assert result.to_json()["abstained"] and result.to_json()["rooted"]
