"""Which lineage edges of a zoo can be told at all: parents with an exactly equivalent alternative.

The zoo records one parent per derived model, but some children are made, bit for bit, from more
than one of their relatives. Magnitude pruning to 80% of a model already pruned to 50% zeroes the
same weights as pruning the original to 80% (its zeroed weights are the smallest), so
``prune80`` is as much the child of ``prune50`` as of their parent, and ``prune80-rec`` (pruned,
then retrained with its mask) is bit for bit the retraining of ``prune80``. A float32 export that
holds the parent's weights unchanged is the parent, as far as any derivation from it goes. No
method can tell these parents apart: the models carry no trace of the path taken.

This script finds such alternatives from the zoo's own models and recipes, never from a method's
answers. For every derived model ``c`` of the chosen splits' image families, made by operation
``op`` from parent ``p``, a relative ``a`` is an *exact alternative* when

* ``a``'s weights equal ``p``'s, every tensor, value for value (an unchanged export; any
  operation on ``a`` then makes ``c``); or
* ``op`` is a magnitude pruning, ``a`` is a masked copy of ``p`` (every nonzero weight of ``a``
  equals ``p``'s), and running ``op`` on ``a`` with ``c``'s recorded parameters and seed rebuilds
  ``c``'s weights exactly (pruning retrained after masking included); or
* ``c`` is an int8 ONNX quantization of ``p`` (export, then static quantization), ``a`` is
  ``p``'s float ONNX export, and quantizing ``a``'s file with ``c``'s calibration data gives
  ``c``'s weights exactly (the export is the state the quantization started from).

It reports the share of lineage edges (the trees' directed edges) and of parent-present queries
(``progenitor bench``'s top-1: the candidates are the model's family) whose parent has an exact
alternative. Fine-tunes of one parent on the same data (one epoch against five, one learning
rate against another) are close to lying on one training path, but are not counted: their
weights differ. The script measures how close: per family, the cosine between the weight
updates (child minus parent, all weights) of its one-epoch and five-epoch fine-tunes at the low
learning rate, and the ratio of their lengths. Students (distilled, extracted) are not counted
either: what limits them is detection.

    python benchmarks/identifiability.py --zoo ZOO [--splits val,test] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from progenitor.zoo import derivations, formats
from progenitor.zoo.build import load_manifest, model_seed, open_model
from progenitor.zoo.train import pinned_threads

PRUNING = {"prune"}


def _weights(zoo: Path, entry: dict[str, Any], cache: dict[str, list[np.ndarray] | None]) -> list[np.ndarray] | None:
    """The model's weight arrays in forward order as progenitor reads them (None: no weights)."""
    if entry["id"] not in cache:
        model = open_model(zoo, entry["id"])
        cache[entry["id"]] = [np.asarray(w) for w in model.weights().values()] if model.can("weights") else None
    return cache[entry["id"]]


def _same(a: list[np.ndarray] | None, b: list[np.ndarray] | None) -> bool:
    return (a is not None and b is not None and len(a) == len(b)
            and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True)))


def _masked_copy(a: list[np.ndarray] | None, p: list[np.ndarray] | None) -> bool:
    """Every nonzero weight of ``a`` equals ``p``'s, and ``a`` has zeros ``p`` lacks."""
    if a is None or p is None or len(a) != len(p) or any(x.shape != y.shape for x, y in zip(a, p, strict=True)):
        return False
    extra_zeros = False
    for x, y in zip(a, p, strict=True):
        keep = x != 0
        if not np.array_equal(x[keep], y[keep]):
            return False
        extra_zeros |= bool(np.count_nonzero(~keep & (y != 0)))
    return extra_zeros


def _built(zoo: Path, entry: dict[str, Any]) -> Any:
    record = json.loads((zoo / "cache" / f"{entry['spec_hash']}.json").read_text("utf-8"))
    io = formats.get_format_io(record["zoo_format"])
    return None if io.reload is None else io.reload(zoo / record["path"], record)


def _rebuilds(zoo: Path, child: dict[str, Any], params: dict[str, Any], alternative: dict[str, Any],
              threads: int) -> bool:
    """Whether ``child``'s operation, run on ``alternative`` with the child's parameters and
    seed (and the builder's thread count), gives the child's weights exactly."""
    built = _built(zoo, alternative)
    if built is None:
        return False
    with pinned_threads(threads):  # as the zoo builder ran it: the thread count changes float sums
        made = derivations.apply(child["op"], [built], params, model_seed(child["spec_hash"]))
    mine = [v.detach().numpy() for v in made.module.state_dict().values()]
    theirs = _built(zoo, child)
    if theirs is None:
        return False
    target = [v.detach().numpy() for v in theirs.module.state_dict().values()]
    return len(mine) == len(target) and all(np.array_equal(x, y) for x, y in zip(mine, target, strict=True))


def _training_path(zoo: Path, root: str, models: dict[str, Any],
                   cache: dict[str, list[np.ndarray] | None]) -> dict[str, Any] | None:
    """How nearly ``ROOT.ft-short-lo`` lies on the way from ``ROOT`` to ``ROOT.ft-long-lo``: the
    cosine of their weight updates and the ratio of the updates' lengths (None without them)."""
    short, long = f"{root}.ft-short-lo", f"{root}.ft-long-lo"
    if short not in models or long not in models:
        return None
    base, a, b = (_weights(zoo, models[m], cache) for m in (root, short, long))
    if base is None or a is None or b is None:
        return None
    da = np.concatenate([(x - y).ravel() for x, y in zip(a, base, strict=True)]).astype(np.float64)
    db = np.concatenate([(x - y).ravel() for x, y in zip(b, base, strict=True)]).astype(np.float64)
    return {"root": root, "cosine": round(float(da @ db / np.linalg.norm(da) / np.linalg.norm(db)), 3),
            "length_ratio": round(float(np.linalg.norm(da) / np.linalg.norm(db)), 3)}


def _quantizes_to(zoo: Path, child: dict[str, Any], export: dict[str, Any],
                  cache: dict[str, list[np.ndarray] | None]) -> bool:
    """Whether quantizing the float ONNX ``export`` as the zoo made ``child`` gives its weights."""
    import tempfile

    from progenitor.models import load
    from progenitor.zoo.data import get_part
    from progenitor.zoo.export import quantize_onnx_int8

    if export.get("format") != "onnx" or child.get("format") != "onnx":
        return False
    record = json.loads((zoo / "cache" / f"{child['spec_hash']}.json").read_text("utf-8"))
    calibration = get_part(child["task"], "derive", record["facts"].get("calibration_n", 512)).x
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "quantized.onnx"
        quantize_onnx_int8(zoo / export["path"], out, calibration)
        mine = [np.asarray(w) for w in load(str(out), **child["load"]).weights().values()]
    return _same(mine, _weights(zoo, child, cache))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, required=True)
    parser.add_argument("--splits", default="val,test")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("identifiability.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    manifest = load_manifest(args.zoo)
    models = {m["id"]: m for m in manifest["models"]}
    parent_of = {e["child"]: e["parent"] for e in manifest["edges"] if e.get("parent_index", 0) == 0}
    kind_of = {e["child"]: e["kind"] for e in manifest["edges"]}
    params_of = {e["child"]: e["params"] for e in manifest["edges"] if e.get("parent_index", 0) == 0}
    weights: dict[str, list[np.ndarray] | None] = {}
    threads = int(manifest["build"]["threads"])
    result: dict[str, Any] = {"zoo": manifest["name"], "splits": {}}
    for split in args.splits.split(","):
        families = [f for f in manifest["families"] if f["split"] == split and f["modality"] == "image"]
        edges, ambiguous, by_kind = 0, [], {}
        for family in families:
            members = [m for m, e in models.items() if e.get("family") == family["root"]]
            for child in members:
                parent = parent_of.get(child)
                if parent is None:
                    continue
                edges += 1
                kind = kind_of[child]
                rebuild = models[child]["op"] in PRUNING
                if rebuild and not _rebuilds(args.zoo, models[child], params_of[child], models[parent], threads):
                    raise SystemExit(f"{child} is not rebuilt exactly from its own parent here: "
                                     "another torch build or machine; rebuilt alternatives would mean nothing")
                by_kind.setdefault(kind, [0, 0])[0] += 1
                p = _weights(args.zoo, models[parent], weights)
                found = []
                for other in members:
                    if other in (child, parent) or models[other]["architecture"] != models[parent]["architecture"]:
                        continue
                    a = _weights(args.zoo, models[other], weights)
                    if _same(a, p):
                        found.append((other, "same weights"))
                    elif rebuild and _masked_copy(a, p) and _rebuilds(
                            args.zoo, models[child], params_of[child], models[other], threads):
                        found.append((other, "rebuilt exactly"))
                    elif (models[child]["op"] == "onnx_int8" and parent_of.get(other) == parent
                          and models[other]["op"] == "onnx"
                          and _quantizes_to(args.zoo, models[child], models[other], weights)):
                        found.append((other, "quantized exactly"))
                if found:
                    by_kind[kind][1] += 1
                    ambiguous.append({"child": child, "kind": kind, "parent": parent,
                                      "alternatives": [{"model": m, "how": how} for m, how in found]})
                    print(f"{child}: parent {parent}, exact alternatives {[m for m, _ in found]}", flush=True)
        rebuilt = [e for e in ambiguous if any(a["how"] != "same weights" for a in e["alternatives"])]
        paths = [_training_path(args.zoo, f["root"], models, weights) for f in families]
        result["splits"][split] = {
            "edges": edges,
            "with_exact_alternative": len(ambiguous),
            "with_rebuilt_alternative": len(rebuilt),
            "share": round(len(ambiguous) / max(edges, 1), 4),
            "by_kind": {k: {"edges": v[0], "with_exact_alternative": v[1]} for k, v in sorted(by_kind.items())},
            "edges_with_alternatives": ambiguous,
            "fine_tune_paths": [p for p in paths if p is not None],
        }
        print(f"{split}: {len(ambiguous)} of {edges} edges have an exact alternative parent "
              f"({len(rebuilt)} rebuilt from another relative)", flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
