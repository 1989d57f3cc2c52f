"""The lineage tree of a whole real registry (writes benchmarks/tree_registry.json).

    .venv/bin/python benchmarks/tree_registry.py --zoo ZOO

Registers every model of a built zoo (its cached DNAs, with the packaged learned vectors) in a
temporary SQLite registry, in a seeded random order (the zoo's own order would leak the lineage),
and recovers one tree over all of them with ``progenitor tree``'s defaults but no registration-
order prior: beyond 400 models each model's 16 nearest learned vectors are its candidate
parents. One torch thread, one BLAS thread. Reported: the time, the pairs scored, and the
directed-edge accuracy (the recovered parent is a true parent) over the test families' models
and over all models. Issue 5 asks for the trees of the whole registry; the per-family trees of
``progenitor bench`` (BENCHMARKS.md section 1) see one family at a time, this sees every family
at once, so models of one family can be attached to another.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _zoo_registry import register_zoo

from progenitor._threads import single_blas
from progenitor.index.tree import build_tree, members_of
from progenitor.zoo.dna_dataset import ZooDNA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("tree_registry.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    zoo = ZooDNA(args.zoo)
    ids = zoo.model_ids()
    order = [ids[i] for i in np.random.default_rng(args.seed).permutation(len(ids))]
    parents: dict[str, set[str]] = {}
    for edge in zoo.manifest["edges"]:
        parents.setdefault(edge["child"], set()).add(edge["parent"])
    with single_blas(), tempfile.TemporaryDirectory() as tmp:
        registry = register_zoo(zoo, Path(tmp) / "registry.sqlite", order)
        members = members_of(registry)
        started = time.perf_counter()
        tree = build_tree(members, order_prior=0.0)
        seconds = time.perf_counter() - started
        registry.close()
    out = {
        "zoo": zoo.zoo_hash[:16],
        "registered": len(ids),
        "seconds": round(seconds, 1),
        "candidates": tree.method["candidates"],
        "pairs_scored": tree.method["pairs_scored"],
        "edge_accuracy": {
            str(split or "all"): _accuracy(tree.parent, parents, zoo, split) for split in ("test", "val", "train", None)
        },
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


def _accuracy(found: dict[str, str | None], parents: dict[str, set[str]], zoo: ZooDNA, split: str | None) -> dict:
    """Share of the split's derived models (all when None) whose recovered parent is a true one."""
    children = [c for c in parents if split is None or zoo.models[c]["split"] == split]
    right = sum(found.get(c) in parents[c] for c in children)
    return {"children": len(children), "accuracy": round(right / max(len(children), 1), 4)}


if __name__ == "__main__":
    main()
