"""Scale of the collection tools: search, lineage trees and extraction (writes benchmarks/scale.json).

    .venv/bin/python benchmarks/scale.py                      # everything (about 10 minutes, 2 cores)
    .venv/bin/python benchmarks/scale.py --only search,tree   # some sections
    .venv/bin/python benchmarks/scale.py --only zoo --zoo DIR # lineage accuracy on a built zoo

Sections:

* ``search``: exact top-k retrieval over 10k / 100k / 1M synthetic unit DNA vectors (64-d, the
  learned generator's default; and 1M x 256), faiss ``IndexFlatIP`` and numpy, one thread: index
  memory and per-query latency; the registry's load time for the vectors (rows written directly
  with SQL); and the re-ranking cost of one candidate (one full verdict on real DNAs).
* ``tree``: ``build_tree`` on 1k and 10k synthetic models in families of ten (random trees; each
  child = its parent's vector plus noise, sparser weights), with 16 nearest-vector candidates per
  model and a stand-in verdict (Fisher z of the vectors' cosine): time per stage and directed-edge
  accuracy. The real verdict costs what ``search`` measures per pair.
* ``extract``: ``add_models`` on 64 random CNNs (TorchScript, 420k parameters, 28x28 inputs, 128 probes) with
  the local engine at 1 and 2 workers and with Ray (local instance, 2 CPUs): models per second,
  with and without the engine's start-up.
* ``zoo`` (with ``--zoo DIR``): the lineage tree and parent search on a built zoo (e.g. ``smoke``)
  against its manifest: directed-edge accuracy, top-1 parent accuracy and abstention on roots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).with_name("scale.json")


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    out = np.empty((n, d), np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), d)).astype(np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


# ------------------------------------------------------------------------------------- search


def bench_search(quick: bool) -> dict[str, Any]:
    import faiss
    from threadpoolctl import threadpool_limits

    from progenitor.index import VectorIndex

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []
    sizes = [(10_000, 64), (100_000, 64)] + ([] if quick else [(1_000_000, 64), (1_000_000, 256)])
    with threadpool_limits(limits=1):
        for n, d in sizes:
            vectors = _unit(rng, n, d)
            queries = vectors[rng.choice(n, 100)] + 0.05 * rng.standard_normal((100, d)).astype(np.float32)
            for backend in ("numpy", "faiss"):
                before = _rss_mb()
                started = time.perf_counter()
                index = VectorIndex(np.arange(n), vectors, backend)
                build = time.perf_counter() - started
                grown = _rss_mb() - before
                index.search(queries[0], 51)  # warm up
                times = []
                for q in queries:
                    t = time.perf_counter()
                    index.search(q, 51)
                    times.append((time.perf_counter() - t) * 1000)
                rows.append(
                    {
                        "n": n,
                        "dim": d,
                        "backend": backend,
                        "k": 51,
                        "vectors_mb": round(vectors.nbytes / 2**20, 1),
                        "index_extra_rss_mb": round(grown, 1),
                        "build_s": round(build, 3),
                        "query_ms_median": round(statistics.median(times), 2),
                        "query_ms_p95": round(float(np.percentile(times, 95)), 2),
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr)
                del index
            del vectors
    return {"retrieval": rows, "registry_load": _registry_load(quick), "rerank": _rerank_cost()}


def _registry_load(quick: bool) -> list[dict[str, Any]]:
    """Time to read n vectors out of a registry file (rows written with plain SQL)."""
    from progenitor.dna import DNA
    from progenitor.index import Registry, dna_to_bytes, genome_hash

    out = []
    rng = np.random.default_rng(1)
    for n in [100_000] + ([] if quick else [1_000_000]):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "r.sqlite"
            with Registry(path) as registry:
                spec_dna = DNA(
                    {"ref": "x"},
                    "white",
                    None,
                    {},
                    {},
                    vector=_unit(rng, 1, 64)[0],
                    vector_spec={"name": "synthetic", "version": 1, "hash": "0"},
                )
                registry.add(spec_dna)
            conn = sqlite3.connect(path)
            started = time.perf_counter()
            blob = dna_to_bytes(spec_dna)  # payload bytes do not matter: vectors live in their own table
            prefix = genome_hash(spec_dna)[:40]
            for start in range(2, n + 2, 50_000):
                vecs = _unit(rng, min(50_000, n + 2 - start), 64)
                ids = range(start, start + len(vecs))
                conn.executemany(
                    "INSERT INTO dnas (id, dna_hash, name, ref, access, added_at) VALUES (?, ?, ?, ?, 'white', '2024')",
                    ((i, f"{prefix}{i}", f"m{i}", f"/models/m{i}") for i in ids),
                )
                conn.executemany("INSERT INTO payloads VALUES (?, ?)", ((i, blob) for i in ids))
                conn.executemany(
                    "INSERT INTO vectors VALUES (?, ?)", ((i, v.tobytes()) for i, v in zip(ids, vecs, strict=True))
                )
                conn.commit()
            fill = time.perf_counter() - started
            conn.close()
            with Registry(path) as registry:
                started = time.perf_counter()
                ids, _vectors = registry.vectors()
                load = time.perf_counter() - started
            out.append(
                {
                    "n": len(ids),
                    "fill_s": round(fill, 1),
                    "load_vectors_s": round(load, 2),
                    "file_mb": round(path.stat().st_size / 2**20, 1),
                }
            )
            print(json.dumps(out[-1]), file=sys.stderr)
    return out


def _rerank_cost() -> dict[str, Any]:
    """One full verdict (score_genes + decide) on two real DNAs of small CNNs, in ms."""
    import torch

    import progenitor as pg
    from progenitor.index._relate import relate

    torch.manual_seed(0)
    models = [_cnn(seed) for seed in (0, 1)]
    probes = np.random.default_rng(0).random((128, 1, 28, 28), dtype=np.float32)
    dnas = [pg.extract(pg.load(m, input_shape=(1, 28, 28)), probes=probes) for m in models]
    cal = pg.load_calibration()
    times = []
    for _ in range(30):
        t = time.perf_counter()
        relate(dnas[0], dnas[1], cal, 0.01)
        times.append((time.perf_counter() - t) * 1000)
    return {
        "verdict_ms_median": round(statistics.median(times), 2),
        "genes": sorted(dnas[0].genes),
        "candidates_default": 50,
        "rerank_ms_for_50_candidates": round(50 * statistics.median(times), 1),
    }


def _cnn(seed: int, width: int = 8) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(2 * width * 49, 4 * width), nn.ReLU(), nn.Linear(4 * width, 10),
    ).eval()  # fmt: skip


# --------------------------------------------------------------------------------------- tree


def synthetic_collection(n_models: int, family_size: int = 10, dim: int = 64, seed: int = 0):
    """Members with vectors and weight moments, and the true parent of each child."""
    from progenitor.dna import DNA
    from progenitor.genes import GeneValue
    from progenitor.index import Member

    rng = np.random.default_rng(seed)
    members, truth = [], {}
    order = rng.permutation(n_models)  # registration order unrelated to lineage
    for f in range(n_models // family_size):
        vecs, sparsity = [rng.standard_normal(dim)], [0.0]
        for k in range(1, family_size):
            parent = int(rng.integers(k))
            vecs.append(vecs[parent] + 0.25 * rng.standard_normal(dim))
            sparsity.append(sparsity[parent] + 0.02)
            truth[f"f{f}m{k}"] = f"f{f}m{parent}"
        for k, v in enumerate(vecs):
            moments = np.array([[0.0, -0.5, sparsity[k]]], np.float32)
            gene = GeneValue({"moments": moments, "depth": np.zeros(1, np.float32)})
            dna = DNA(
                {"n_params": 1000},
                "white",
                None,
                {"weight_stats": gene},
                {"weight_stats": 1},
                vector=(v / np.linalg.norm(v)).astype(np.float32),
            )
            members.append(Member(f"f{f}m{k}", dna, order=int(order[len(members)])))
    return members, truth


def bench_tree(quick: bool) -> list[dict[str, Any]]:
    from progenitor.index import build_tree
    from progenitor.index._relate import Relation

    calls = [0]

    def relate_fn(a: Any, b: Any) -> Relation:
        calls[0] += 1
        cos = float(a.dna.vector @ b.dna.vector)
        strength = 10 * float(np.arctanh(min(cos, 0.999999)))
        return Relation("derived" if cos > 0.75 else "unrelated", cos, None, strength)

    rows = []
    for n in [1000] + ([] if quick else [10_000]):
        members, truth = synthetic_collection(n)
        calls[0] = 0
        stages: list[tuple[str, float]] = []
        started = time.perf_counter()
        tree = build_tree(
            members,
            relate_fn=relate_fn,
            neighbours=16,
            order_prior=0.0,
            progress=lambda m, s=stages, t0=started: s.append((m, time.perf_counter() - t0)),
        )
        total = time.perf_counter() - started
        directed = sum(tree.parent[c] == p for c, p in truth.items()) / len(truth)
        undirected = sum(tree.parent[c] == p or tree.parent.get(p) == c for c, p in truth.items()) / len(truth)
        rows.append(
            {
                "models": n,
                "families": n // 10,
                "candidate_pairs": tree.method["pairs_scored"],
                "plausible_pairs": tree.method["plausible_pairs"],
                "seconds_total": round(total, 2),
                "seconds_to_candidates": round(stages[0][1], 2) if stages else None,
                "directed_edge_accuracy": round(directed, 4),
                "undirected_edge_accuracy": round(undirected, 4),
                "verdict": "stand-in (Fisher z of vector cosine), not the full verdict",
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


# ------------------------------------------------------------------------------------ extract


def bench_extract(quick: bool) -> list[dict[str, Any]]:
    import torch

    from progenitor.index import Registry, add_models

    rows = []
    n = 8 if quick else 64
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        refs = []
        for i in range(n):
            path = root / f"cnn{i}.pt"
            torch.jit.save(torch.jit.trace(_cnn(i, width=32), torch.zeros(1, 1, 28, 28)), path)
            refs.append(str(path))
        np.save(root / "probes.npy", np.random.default_rng(0).random((128, 1, 28, 28), dtype=np.float32))
        reference = None
        for engine, workers in (("local", 1), ("local", 2), ("ray", 2)):
            with Registry(root / f"{engine}{workers}.sqlite") as registry:
                stamps: list[float] = []
                started = time.perf_counter()
                report = add_models(
                    registry,
                    refs,
                    probes=root / "probes.npy",
                    engine=engine,
                    workers=workers,
                    progress=lambda m, s=stamps: s.append(time.perf_counter()) if "] added" in m else None,
                )
                wall = time.perf_counter() - started
                hashes = [e.dna_hash for e in registry.entries()]
            reference = reference or hashes
            steady = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else None
            rows.append(
                {
                    "engine": engine,
                    "workers": workers,
                    "models": n,
                    "wall_s": round(wall, 2),
                    "models_per_s": round(n / wall, 2),
                    "models_per_s_after_startup": round(1 / steady, 2) if steady else None,
                    "worker_seconds_per_model": round(report.extract_seconds / n, 3),
                    "same_dnas_as_local1": hashes == reference,
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


# ---------------------------------------------------------------------------------------- zoo


def bench_zoo(zoo: Path) -> dict[str, Any]:
    from progenitor.index import ParentSearch, Registry, add_models, build_tree, members_of
    from progenitor.zoo import load_manifest

    manifest = load_manifest(zoo)
    truth = {e["child"]: e["parent"] for e in manifest["edges"]}
    out: dict[str, Any] = {"zoo": manifest["name"], "models": len(manifest["models"]), "edges": len(truth)}
    with tempfile.TemporaryDirectory() as tmp, Registry(Path(tmp) / "zoo.sqlite") as registry:
        for entry in manifest["models"]:  # one call per model: load options differ
            add_models(
                registry,
                [str(zoo / entry["path"])],
                probes=zoo / manifest["probes"][0]["path"],
                engine="inline",
                names=[entry["id"]],
                load_options=entry["load"],
            )
        assert len(registry) == len(manifest["models"]), "some zoo models were not registered"
        members = members_of(registry)
        for prior in (0.5, 0.0):
            tree = build_tree(members, order_prior=prior)
            directed = sum(tree.parent.get(c) == p for c, p in truth.items())
            undirected = sum(tree.parent.get(c) == p or tree.parent.get(p) == c for c, p in truth.items())
            spurious = sum(1 for name, p in tree.parent.items() if p is not None and name not in truth)
            out[f"tree_order_prior_{prior}"] = {
                "directed_edge_accuracy": round(directed / len(truth), 4),
                "undirected_edge_accuracy": round(undirected / len(truth), 4),
                "spurious_parents": spurious,
                "seconds": round(tree.seconds, 3),
                "wrong": {c: tree.parent.get(c) for c, p in truth.items() if tree.parent.get(c) != p},
            }
        roots = [m["id"] for m in manifest["models"] if m["id"] not in truth]
        for prior in (0.5, 0.0):
            engine = ParentSearch(registry, order_prior=prior)
            hits, abstained, wrong = 0, 0, {}
            for entry in registry.entries():
                result = engine(registry.dna(entry), name=entry.name, order=entry.id)
                found = None if result.parent is None else result.parent.entry.name
                if entry.name in truth:
                    hits += found == truth[entry.name]
                    if found != truth[entry.name]:
                        wrong[entry.name] = found
                else:
                    abstained += found is None
            out[f"search_order_prior_{prior}"] = {
                "top1_parent_accuracy": round(hits / len(truth), 4),
                "abstention_on_roots": f"{abstained}/{len(roots)}",
                "wrong": wrong,
            }
        out["calibration"] = tree.method["calibration"]
    print(json.dumps(out), file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="search,tree,extract", help="comma-separated sections")
    parser.add_argument("--zoo", type=Path, help="a built zoo directory (section zoo)")
    parser.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    args = parser.parse_args()
    sections = set(args.only.split(","))
    if args.zoo:
        sections.add("zoo")
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    runners = {
        "search": lambda: bench_search(args.quick),
        "tree": lambda: bench_tree(args.quick),
        "extract": lambda: bench_extract(args.quick),
        "zoo": lambda: bench_zoo(args.zoo),
    }
    for name, run in runners.items():
        if name not in sections or (name == "zoo" and not args.zoo):
            continue
        load = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews timings
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        results[name] = {"command": "python " + " ".join(sys.argv), "started": started,
                         "load_average_at_start": load, "result": run()}  # fmt: skip
    OUT.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
