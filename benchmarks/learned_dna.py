"""Issue 4 evaluation: the learned Model DNA on held-out zoo families, with the paper's ablation.

For each variant, trained on the zoo's train split (selected and calibrated on val) and scored
on the test split's pairs (families never seen in training):

* ``training-free``: the genes' combined p-value (the verdict without any learning);
* ``genes-linear``: a least-squares linear probe on the genes' Fisher-z similarities (no generator);
* ``behaviour``, ``data``, ``behaviour+data``, ``full``: the learned classifier's P(derived) with
  the generator restricted to those gene blocks (``full`` adds weights and moments).

Usage: python benchmarks/learned_dna.py --zoo ZOO --out benchmarks/learned_dna.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from progenitor.api import score_genes
from progenitor.bench.metrics import roc_auc, tpr_at_fpr
from progenitor.calibration import load_calibration
from progenitor.learn.train import fit
from progenitor.stats import cauchy_combination, fisher_z
from progenitor.zoo.dna_dataset import ZooDNA

VARIANTS = {
    "behaviour": ["behaviour"],
    "data": ["data"],
    "behaviour+data": ["behaviour", "data"],
    "full": ["behaviour", "weights", "moments", "data"],
}
GENES = ("weight_sketch", "output_geometry", "feature_cka")
NEGATIVES = ("same-arch-same-data-other-seed", "same-arch-other-data", "other-arch")


def metrics(scores: np.ndarray, labels: np.ndarray, kinds: list[str]) -> dict:
    """AUC overall and per derivation kind (vs all negatives), TPR at 1% FPR."""
    out = {"auc": roc_auc(scores, labels), "tpr_at_1pct_fpr": tpr_at_fpr(scores, labels, 0.01)}
    neg = ~labels.astype(bool)
    for kind in sorted({k for k, lab in zip(kinds, labels, strict=True) if lab}):
        sel = np.array([k == kind for k in kinds]) | neg
        out[f"auc:{kind}"] = roc_auc(scores[sel], labels[sel])
    return {k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) else v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(2)
    zoo = ZooDNA(args.zoo)
    training = zoo.training_set()
    test = [p for p in zoo.pairs("test") if p.derived or p.kind in NEGATIVES]
    labels = np.array([p.derived for p in test], dtype=float)
    kinds = [p.kind for p in test]
    cal = load_calibration()
    sims = [{n: s.similarity for n, s in score_genes(zoo.dna(p.source), zoo.dna(p.target)).items()} for p in test]
    results: dict[str, dict] = {}

    def gene_p(s: dict, recipe: str) -> float:
        ps = [cal.genes[n].p_value(fisher_z(v), recipe) for n, v in s.items() if n in cal.genes]
        return cauchy_combination(ps)

    free = np.array(
        [-math.log10(max(gene_p(s, zoo.dna(p.source).recipe()), 1e-300)) for s, p in zip(sims, test, strict=True)]
    )
    results["training-free"] = metrics(free, labels, kinds)
    # genes-linear: a least-squares linear probe fitted on the train split's pairs, applied to test
    train_pairs = [p for p in zoo.pairs("train") if p.derived or p.kind in NEGATIVES]

    def feats(p) -> np.ndarray:
        s = {n: v.similarity for n, v in score_genes(zoo.dna(p.source), zoo.dna(p.target)).items()}
        return np.array([fisher_z(s.get(g, 0.0)) for g in GENES])

    xtr = np.stack([feats(p) for p in train_pairs])
    ytr = np.array([p.derived for p in train_pairs], dtype=float)
    w = np.linalg.lstsq(np.column_stack([np.ones(len(xtr)), xtr]), ytr * 2 - 1, rcond=None)[0]  # linear probe
    xte = np.stack([feats(p) for p in test])
    results["genes-linear"] = metrics(np.column_stack([np.ones(len(xte)), xte]) @ w, labels, kinds)
    timings = {}
    for name, parts in VARIANTS.items():
        t0 = time.perf_counter()
        bundle, val = fit(training, {"epochs": args.epochs, "parts": parts, "seed": 0})
        timings[name] = round(time.perf_counter() - t0, 1)
        probs = np.array([bundle.assess(zoo.dna(p.source), zoo.dna(p.target))["probability"] for p in test])
        results[name] = {**metrics(probs, labels, kinds), "val_auc": val["val_auc"], "train_seconds": timings[name]}
        print(name, results[name]["auc"], flush=True)
    Path(args.out).write_text(
        json.dumps(
            {"zoo": zoo.zoo_hash[:16], "test_pairs": len(test), "derived": int(labels.sum()), "results": results},
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
