"""The benchmark harness: every method on the same zoo pairs, side by side.

    from progenitor.bench import BenchConfig, run_bench
    results = run_bench(BenchConfig(zoo=Path("zoo"), out=Path("bench-out")))

``run_bench`` runs ours (``progenitor``: full verdict with the learned Model DNA when one ships;
``progenitor-genes``: training-free; ``progenitor-black``: training-free on outputs only) and
every registered baseline on the labelled pairs of one split of a built zoo, and writes
``results.json`` (versions, zoo hash, git commit, machine, every number), ``results.md`` (tables),
``pairs.csv`` (every score), ``calibration.json`` (ours' gene calibration as used) and plots (ROC
per derivation kind, AUC heat map, cost vs accuracy). Modules: ``tasks`` (the questions),
``methods`` (one adapter per method), ``metrics`` (pure functions), ``evaluate`` (grading),
``trees`` (family trees), ``run``, ``report``, ``plots``.
"""

from __future__ import annotations

from progenitor.bench.methods import list_methods
from progenitor.bench.metrics import (
    Query,
    edge_accuracy,
    roc_auc,
    roc_curve,
    threshold_at_fpr,
    top1_outcomes,
    tpr_at_fpr,
)
from progenitor.bench.run import BenchConfig, load_results, run_bench

__all__ = [
    "BenchConfig",
    "Query",
    "edge_accuracy",
    "list_methods",
    "load_results",
    "roc_auc",
    "roc_curve",
    "run_bench",
    "threshold_at_fpr",
    "top1_outcomes",
    "tpr_at_fpr",
]
