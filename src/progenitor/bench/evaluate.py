"""Grade one method's answers against the zoo's ground truth (numbers only; no I/O).

Operating point, per method (recorded as ``rule``):

* ours: its own verdict ``derived`` at ``alpha`` (the combined p-value, and the learned
  classifier's agreement when one is used);
* methods that define a p-value (the CSU tests): ``p < alpha``;
* every other method: ``score > threshold``, the threshold set on the threshold split's
  independent negatives so that at most ``fpr`` of them are above it.

The threshold is computed for every method (also reported for ours and the p-value methods).
ROC-AUC and TPR at ``fpr`` are computed against the split's *independent* negatives (the standard
protocol) and, separately, against all its negatives (adding reverse pairs, siblings and cousins).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from progenitor.bench.methods import Method, PairResult
from progenitor.bench.metrics import edge_accuracy, roc_auc, threshold_at_fpr, top1_outcomes, tpr_at_fpr
from progenitor.bench.tasks import BenchPair, Tasks

Edges = list[tuple[str, str]]


@dataclass
class MethodRun:
    """What running one method produced (filled by ``progenitor.bench.run``)."""

    method: Method
    fps: dict[str, Any] = field(default_factory=dict)  # model -> fingerprint (None: not applicable)
    fp_seconds: dict[str, float] = field(default_factory=dict)
    fp_bytes: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # model -> why it has no fingerprint
    results: dict[tuple[str, str], PairResult] = field(default_factory=dict)
    compare_seconds: list[float] = field(default_factory=list)  # per scored pair
    picks: dict[tuple[str, str], str | None] = field(default_factory=dict)
    tree_edges: Edges | None = None
    tree_seconds: float = 0.0
    tree_error: str | None = None
    seconds: float = 0.0
    error: str | None = None  # the method failed as a whole

    def scores(self, pairs: list[BenchPair]) -> np.ndarray:
        """Scores of ``pairs`` (nan where missing)."""
        return np.array([self.results.get((p.source, p.target), _NAN).score for p in pairs], dtype=np.float64)


_NAN = PairResult(float("nan"))


def rule_of(run: MethodRun, alpha: float, threshold_split: str = "val") -> str:
    """The operating-point rule the method is graded with."""
    if run.method.has_own_verdict:
        return f"own verdict at alpha={alpha:g}"
    if any(r.p_value is not None for r in run.results.values()):
        return f"p < {alpha:g}"
    return f"score > threshold (1% of {threshold_split} independents)"


def decide(result: PairResult, threshold: float, alpha: float) -> bool:
    """Whether the method calls the pair derived at its operating point."""
    if np.isnan(result.score):
        return False
    if result.decided is not None:
        return bool(result.decided)
    if result.p_value is not None:
        return result.p_value < alpha
    return result.score > threshold


def _auc_block(scores: np.ndarray, pairs: list[BenchPair], kinds: list[str], fpr: float,
               negative: np.ndarray) -> dict[str, Any]:
    derived = np.array([p.derived for p in pairs])
    by_kind = {}
    for kind in kinds:
        mask = np.array([p.derived and p.kind == kind for p in pairs]) | negative
        by_kind[kind] = roc_auc(scores[mask], derived[mask])
    mask = derived | negative
    return {"overall": roc_auc(scores[mask], derived[mask]), "by_kind": by_kind,
            "tpr_at_fpr": tpr_at_fpr(scores[mask], derived[mask], fpr)}


def _operating(run: MethodRun, pairs: list[BenchPair], threshold: float, alpha: float) -> dict[str, Any]:
    flags = np.array([decide(run.results.get((p.source, p.target), _NAN), threshold, alpha) for p in pairs])
    derived = np.array([p.derived for p in pairs])
    independent = np.array([p.independent for p in pairs])
    same_arch = np.array([p.same_arch_independent for p in pairs])
    kinds = sorted({p.kind for p in pairs})
    rate = {k: float(flags[[p.kind == k for p in pairs]].mean()) for k in kinds}
    return {
        "tpr": float(flags[derived].mean()) if derived.any() else float("nan"),
        "fpr_independent": float(flags[independent].mean()) if independent.any() else float("nan"),
        "same_arch_false_positives": int(flags[same_arch].sum()),
        "same_arch_pairs": int(same_arch.sum()),
        "flagged_by_kind": rate,
    }


def _picks(run: MethodRun, tasks: Tasks, threshold: float, alpha: float) -> dict[tuple[str, str], str | None]:
    """Each query's answer: the method's own parent test, or argmax + operating point."""
    method = run.method
    picks: dict[tuple[str, str], str | None] = {}
    for q in tasks.queries:
        usable = [c for c in q.candidates if run.fps.get(c) is not None]
        if method.own_parent_test and len(usable) >= method.min_candidates and run.fps.get(q.target) is not None:
            picks[(q.target, q.kind)] = method.pick_parent(
                q.target, run.fps[q.target], {c: run.fps[c] for c in usable}, run.results)
            continue
        scored = [(c, run.results.get((c, q.target), _NAN)) for c in q.candidates]
        scored = [(c, r) for c, r in scored if not np.isnan(r.score)]
        if not scored:
            picks[(q.target, q.kind)] = None
            continue
        best, result = max(scored, key=lambda cr: (cr[1].score, cr[1].tiebreak, cr[0]))
        picks[(q.target, q.kind)] = best if decide(result, threshold, alpha) else None
    return picks


def _cost(run: MethodRun, models: list[str]) -> dict[str, Any]:
    seconds = [run.fp_seconds[m] for m in models if m in run.fp_seconds]
    sizes = [run.fp_bytes[m] for m in models if m in run.fp_bytes]
    return {
        "extract_s_per_model": statistics.fmean(seconds) if seconds else float("nan"),
        "extract_s_median": statistics.median(seconds) if seconds else float("nan"),
        "models_fingerprinted": len(seconds),
        "fingerprint_failures": len(run.failures),
        "compare_ms_per_pair": 1000 * statistics.fmean(run.compare_seconds) if run.compare_seconds else float("nan"),
        "pairs_compared": len(run.compare_seconds),
        "bytes_per_model": statistics.fmean(sizes) if sizes else float("nan"),
        "tree_seconds": run.tree_seconds,
        "total_seconds": run.seconds,
    }


def evaluate(run: MethodRun, tasks: Tasks, alpha: float, fpr: float) -> dict[str, Any]:
    """Every number of one method (see the module docstring)."""
    method = run.method
    pairs = tasks.pairs
    scores = run.scores(pairs)
    kinds = tasks.derivation_kinds
    threshold = threshold_at_fpr(run.scores(tasks.threshold_pairs), fpr)
    independent = np.array([p.independent for p in pairs])
    negative = np.array([not p.derived for p in pairs])
    run.picks = _picks(run, tasks, threshold, alpha)
    out: dict[str, Any] = {
        "name": method.name,
        "family": method.family,
        "access": method.access,
        "paper": method.paper,
        "rule": rule_of(run, alpha, tasks.threshold_split),
        "threshold": threshold,
        "coverage": float(np.isfinite(scores).mean()) if scores.size else float("nan"),
        "coverage_by_kind": {k: float(np.isfinite(scores[[p.kind == k for p in pairs]]).mean())
                             for k in sorted({p.kind for p in pairs})},
        "auc": _auc_block(scores, pairs, kinds, fpr, independent),
        "auc_all_negatives": _auc_block(scores, pairs, kinds, fpr, negative),
        "operating": _operating(run, pairs, threshold, alpha),
        "top1": top1_outcomes(tasks.queries, run.picks),
        "tree": None,
        "cost": _cost(run, tasks.models()),
        "failures": _reasons(run.failures),
        "error": run.error,
        "tree_error": run.tree_error,
        "parent_rule": _parent_rule(method),
    }
    if not out["rule"].startswith("score"):  # also grade the p-value methods at the val threshold
        out["operating_at_threshold"] = _operating(
            _as_threshold(run), pairs, threshold, alpha)
    if run.tree_edges is not None:
        members = [m for ms in tasks.families.values() for m in ms]
        out["tree"] = edge_accuracy(tasks.parents, run.tree_edges, members)
    return out


def _parent_rule(method: Method) -> str:
    if method.family == "ours":
        return "progenitor search: cheapest derived candidate not below the target (direction >= 0.45)"
    if method.own_parent_test:
        return "own parent test (best candidate beats all others, Holm-Bonferroni)"
    return "argmax over the candidates; abstain below the operating point"


def _as_threshold(run: MethodRun) -> MethodRun:
    """A view of ``run`` whose results carry neither verdicts nor p-values (threshold rule)."""
    plain = MethodRun(run.method)
    plain.results = {k: PairResult(r.score) for k, r in run.results.items()}
    return plain


def _reasons(failures: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in failures.values():
        key = reason.split(":")[0][:120]
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:8])
