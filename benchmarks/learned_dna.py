"""Issue 4 evaluation: the learned Model DNA on held-out zoo families, with the paper's ablation.

For each variant, trained on the zoo's train split (selected and calibrated on val) and scored
on the test split's pairs (families never seen in training):

* ``training-free``: the verdict's combined p-value (``progenitor.verdict.decide`` without any
  learning: every gene, and the behavioural genes alone, the smaller doubled);
* ``genes-linear``: a least-squares linear probe on the genes' Fisher-z similarities (no generator);
* ``behaviour``, ``data``, ``behaviour+data``, ``full``: the learned classifier's P(derived) with
  the generator restricted to those gene blocks (``full`` adds weights and moments);
* ``fused:<variant>``: the verdict's combined p-value and the learned classifier's p-value
  (against its validation independents) in one Cauchy combination, reported on the validation
  split too (where a decision to fuse may be taken) as ``val:fused:<variant>``.

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
from progenitor.stats import NullModel, cauchy_combination, fisher_z
from progenitor.verdict import decide, learned_evidence
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


def log_p(ps: list[float]) -> float:
    """-log10 of the Cauchy combination of p-values."""
    return -math.log10(max(cauchy_combination(ps), 1e-300))


def fused(verdict_ps: list[float], assessed: list[dict], null: NullModel | None) -> np.ndarray:
    """Per pair: the verdict's p-value and the learned classifier's p-value in one Cauchy combination."""
    pairs = zip(verdict_ps, assessed, strict=True)
    return np.array([log_p([p, learned_evidence(a, null)["p_value"]]) for p, a in pairs])


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
    val = [p for p in zoo.pairs("val") if p.derived or p.kind in NEGATIVES]
    val_labels = np.array([p.derived for p in val], dtype=float)
    results: dict[str, dict] = {}

    def verdict_p(p) -> float:
        """The verdict's combined p-value without learning, as ``compare`` computes it."""
        source, target = zoo.dna(p.source), zoo.dna(p.target)
        scores = score_genes(source, target)
        recipes = {"recipe": source.recipe(), "target_recipe": target.recipe()}
        verdict = decide(p.source, p.target, "white", scores, cal, **recipes)
        return 1.0 if verdict.p_value is None else verdict.p_value

    test_ps, val_ps = [verdict_p(p) for p in test], [verdict_p(p) for p in val]
    results["training-free"] = metrics(-np.log10(np.maximum(test_ps, 1e-300)), labels, kinds)
    val_free = -np.log10(np.maximum(val_ps, 1e-300))
    results["val:training-free"] = metrics(val_free, val_labels, [p.kind for p in val])
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
        bundle, fitted = fit(training, {"epochs": args.epochs, "parts": parts, "seed": 0})
        timings[name] = round(time.perf_counter() - t0, 1)
        assessed = [bundle.assess(zoo.dna(p.source), zoo.dna(p.target)) for p in test]
        probs = np.array([a["probability"] for a in assessed])
        results[name] = {**metrics(probs, labels, kinds), "val_auc": fitted["val_auc"], "train_seconds": timings[name]}
        val_assessed = [bundle.assess(zoo.dna(p.source), zoo.dna(p.target)) for p in val]
        results[f"fused:{name}"] = metrics(fused(test_ps, assessed, bundle.null_model()), labels, kinds)
        results[f"val:fused:{name}"] = metrics(
            fused(val_ps, val_assessed, bundle.null_model()), val_labels, [p.kind for p in val]
        )
        print(name, results[name]["auc"], results[f"fused:{name}"]["auc"], flush=True)
    Path(args.out).write_text(
        json.dumps(
            {"zoo": zoo.zoo_hash[:16], "test_pairs": len(test), "derived": int(labels.sum()), "results": results},
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
