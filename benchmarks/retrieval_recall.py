"""Would vector retrieval lose parents? Recall@k of candidate keys on a built zoo (issue 5).

    .venv/bin/python benchmarks/retrieval_recall.py --zoo ZOO [--out benchmarks/retrieval_recall.json]

Parent search re-ranks every registered model up to 2,000 (exact); beyond that it re-ranks only the
``candidates`` (default 50) nearest learned DNA vectors, so a parent outside them is lost. Here every
image model of the zoo is "registered", and for each target of the test split that has a parent,
the rank of its nearest true parent among all other models is measured under several keys:

* ``learned``: the packaged learned DNA vector;
* ``key``: the registry's weight key (``progenitor.index.keys.retrieval_key``), as search uses it;
* ``weights``, ``behaviour``, ``moments``: the learned generator's raw input blocks
  (``progenitor.learn.inputs.dna_inputs``), centred over the collection, cosine;
* ``key+learned``: the union of the two candidate lists, as search retrieves (k from each).

And for black-box targets (each test target's DNA as a model known by its outputs would give it,
``DNA.at_access("black")``) among the same white-box registered models (``black_targets``):
``learned`` (the target's learned vector, made from its behaviour block alone, against the
registered models' vectors), ``behaviour_key`` (``progenitor.index.keys.behaviour_key``, the same
for both) and their union, as search retrieves for a target without a weight key.

Reported: recall@k for all targets, and for the targets whose parent the verdict calls ``derived``
(the ones an exhaustive search can find at all).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from progenitor.api import compare_many, default_learned
from progenitor.calibration import load_calibration
from progenitor.index.keys import behaviour_key, retrieval_key
from progenitor.learn.inputs import dna_inputs
from progenitor.zoo.dna_dataset import ZooDNA

KS = (1, 5, 10, 20, 50)


def _unit(x: np.ndarray, centre: bool) -> np.ndarray:
    x = x.astype(np.float64)
    if centre:
        x = x - x.mean(axis=0)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def recall(
    keys: list[np.ndarray], targets: list[int], parents: list[list[int]], queries: list[np.ndarray] | None = None
) -> dict[str, float]:
    """Fraction of targets with a true parent within the top k (k in ``KS``) of any of ``keys``
    (the union of the candidate lists, as search retrieves); ``queries``: the targets' own keys
    where they differ from the registered ones (default: ``keys``)."""
    hits = dict.fromkeys(KS, 0)
    for t, ps in zip(targets, parents, strict=True):
        rank = len(keys[0])
        for key, query in zip(keys, queries or keys, strict=True):
            sims = key @ query[t]
            sims[t] = -np.inf
            order = np.argsort(-sims, kind="stable")
            rank = min(rank, *(int(np.flatnonzero(order == p)[0]) for p in ps))
        for k in KS:
            hits[k] += rank < k
    return {f"recall@{k}": round(hits[k] / len(targets), 4) for k in KS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("retrieval_recall.json"))
    args = parser.parse_args()
    zoo = ZooDNA(args.zoo)
    ids = zoo.model_ids()
    index = {m: i for i, m in enumerate(ids)}
    dnas = [zoo.dna(m) for m in ids]
    edges: dict[str, list[int]] = {}
    for e in zoo.manifest["edges"]:
        if e["parent"] in index:
            edges.setdefault(e["child"], []).append(index[e["parent"]])
    targets = [m for m in ids if zoo.models[m]["split"] == "test" and m in edges]
    cal = load_calibration()
    detectable = [
        m for m in targets
        if any(compare_many(dnas[p], [zoo.dna(m)], calibration=cal, learned=False)[0].verdict == "derived"
               for p in edges[m])
    ]
    blocks = [dna_inputs(d)[0] for d in dnas]
    keys = {"learned": _unit(np.stack(default_learned().embed(dnas)), centre=False),
            "key": np.stack([retrieval_key(d) for d in dnas]).astype(np.float64)}
    for part in ("weights", "behaviour", "moments"):
        keys[part] = _unit(np.stack([b[part] for b in blocks]), centre=True)
    results = {}
    combos = {name: [key] for name, key in keys.items()}
    combos["key+learned"] = [keys["key"], keys["learned"]]  # what search retrieves beyond 2,000 models
    for name, combo in combos.items():
        results[name] = {
            "all": recall(combo, [index[m] for m in targets], [edges[m] for m in targets]),
            "detectable": recall(combo, [index[m] for m in detectable], [edges[m] for m in detectable]),
        }
        print(name, results[name], flush=True)
    black = [d.at_access("black") for d in dnas]
    black_detectable = [
        m for m in targets
        if any(compare_many(dnas[p], [black[index[m]]], calibration=cal, learned=False)[0].verdict == "derived"
               for p in edges[m])
    ]
    behaviour = np.stack([behaviour_key(d) for d in dnas]).astype(np.float64)
    black_learned = _unit(np.stack(default_learned().embed(black)), centre=False)
    black_combos = {
        "learned": ([keys["learned"]], [black_learned]),
        "behaviour_key": ([behaviour], [behaviour]),  # a black-box DNA's behaviour key is its white DNA's
        "behaviour_key+learned": ([behaviour, keys["learned"]], [behaviour, black_learned]),
    }
    black_results = {}
    for name, (registered, queries) in black_combos.items():
        black_results[name] = {
            "all": recall(registered, [index[m] for m in targets], [edges[m] for m in targets], queries),
            "detectable": recall(registered, [index[m] for m in black_detectable],
                                 [edges[m] for m in black_detectable], queries),
        }
        print("black target", name, black_results[name], flush=True)
    args.out.write_text(json.dumps({"zoo": zoo.zoo_hash[:16], "models": len(ids), "targets": len(targets),
                                    "detectable_targets": len(detectable), "results": results,
                                    "black_targets": {"detectable_targets": len(black_detectable),
                                                      "results": black_results}}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
