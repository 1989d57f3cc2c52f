"""Pure metric functions of the benchmark, on plain arrays and dicts (unit-tested by hand).

Scores follow one convention: higher means "more likely derived"; a missing score (the method
could not score the pair) is ``nan`` and ranks below every real score, as "no evidence".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Query",
    "edge_accuracy",
    "roc_auc",
    "roc_curve",
    "threshold_at_fpr",
    "top1_outcomes",
    "tpr_at_fpr",
]


def _filled(scores: np.ndarray) -> np.ndarray:
    """Scores with ``nan`` (missing) replaced by a value below every real score."""
    s = np.array(scores, dtype=np.float64)
    real = s[np.isfinite(s)]
    missing = np.isnan(s) | np.isneginf(s)
    s[missing] = (real.min() - 1.0) if real.size else 0.0
    return s


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); ``nan`` if a class is empty."""
    labels = np.asarray(labels, dtype=bool)
    s = _filled(scores)
    pos, neg = s[labels], s[~labels]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size)
    ranks[order] = np.arange(1, allv.size + 1)
    _, inverse, counts = np.unique(allv, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]  # average rank within each group of ties
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct threshold, from (0, 0) to (1, 1); ties move together."""
    labels = np.asarray(labels, dtype=bool)
    s = _filled(scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), y.size - 1] if y.size else np.array([], int)
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float = 0.01) -> float:
    """The highest TPR reachable with a threshold whose FPR is at most ``fpr``."""
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return float("nan")
    f, t = roc_curve(scores, labels)
    return float(t[f <= fpr + 1e-12].max())


def threshold_at_fpr(negative_scores: np.ndarray, fpr: float = 0.01) -> float:
    """The smallest threshold ``t`` such that at most ``fpr`` of the negatives score above it.

    A pair is then called derived when its score is strictly above ``t``. Missing scores
    (``nan``) count as negatives that are never flagged.
    """
    s = np.asarray(negative_scores, dtype=np.float64)
    n = s.size
    real = np.sort(s[np.isfinite(s)])[::-1]
    if real.size == 0:
        return float("inf")
    allowed = int(np.floor(fpr * n + 1e-9))  # negatives that may lie above the threshold
    if allowed >= real.size:
        return float(real[-1]) - 1e-12
    return float(real[allowed])


@dataclass(frozen=True)
class Query:
    """One parent-search question: which of ``candidates`` is the target's parent, if any.

    ``expected`` holds the acceptable answers (the true parents among the candidates); empty
    means the correct answer is "no parent" (an orphan: a root, or a target whose ancestors were
    all removed from the candidates).
    """

    target: str
    candidates: tuple[str, ...]
    expected: frozenset[str]
    kind: str  # "parent-present", "root" or "hidden-ancestors"


def top1_outcomes(
    queries: Iterable[Query], picks: Mapping[tuple[str, str], str | None]
) -> dict[str, float | int]:
    """Accuracy of top-1 parent answers with abstention.

    Args:
        queries: the questions.
        picks: ``(target, kind) -> chosen parent or None`` (None: the method abstained).

    Returns:
        ``parent_accuracy`` (targets whose parent is among the candidates: the pick is a true
        parent), ``orphan_abstention`` (orphans: the method said "no parent"), ``accuracy`` (all
        queries pooled), ``wrong_parent`` and ``missed_parent`` rates on parent-present queries,
        and the counts.
    """
    right = {"parent": 0, "orphan": 0}
    total = {"parent": 0, "orphan": 0}
    wrong = missed = 0
    for q in queries:
        pick = picks.get((q.target, q.kind))
        group = "parent" if q.expected else "orphan"
        total[group] += 1
        if q.expected:
            if pick in q.expected:
                right["parent"] += 1
            elif pick is None:
                missed += 1
            else:
                wrong += 1
        elif pick is None:
            right["orphan"] += 1
    n = total["parent"] + total["orphan"]

    def rate(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "parent_accuracy": rate(right["parent"], total["parent"]),
        "orphan_abstention": rate(right["orphan"], total["orphan"]),
        "accuracy": rate(right["parent"] + right["orphan"], n),
        "wrong_parent": rate(wrong, total["parent"]),
        "missed_parent": rate(missed, total["parent"]),
        "n_parent_queries": total["parent"],
        "n_orphan_queries": total["orphan"],
    }


def edge_accuracy(
    true_parents: Mapping[str, Iterable[str]], recovered: Iterable[tuple[str, str]], members: Iterable[str]
) -> dict[str, float | int]:
    """Directed-edge accuracy of a recovered tree against the true lineage.

    Args:
        true_parents: child -> its true parents (a merge has several).
        recovered: recovered ``(parent, child)`` edges.
        members: the models the tree was recovered over; only true edges between two members count.

    Returns:
        ``accuracy``: the fraction of members with a true parent among the members whose recovered
        parent is one of them (directed-edge recall, the measure MoTHer reports); ``precision``:
        the fraction of recovered edges that are true, correctly directed edges; ``reversed``: the
        fraction of recovered edges that are true edges pointing the wrong way; and the counts.
    """
    members = set(members)
    truth = {c: set(ps) & members for c, ps in true_parents.items() if c in members}
    truth = {c: ps for c, ps in truth.items() if ps}
    true_edges = {(p, c) for c, ps in truth.items() for p in ps}
    edges = [(p, c) for p, c in recovered if p in members and c in members]
    got: dict[str, set[str]] = {}
    for p, c in edges:
        got.setdefault(c, set()).add(p)
    correct_children = sum(1 for c, ps in truth.items() if got.get(c, set()) & ps)
    correct_edges = sum(1 for e in edges if e in true_edges)
    reversed_edges = sum(1 for p, c in edges if (c, p) in true_edges)
    return {
        "accuracy": correct_children / len(truth) if truth else float("nan"),
        "precision": correct_edges / len(edges) if edges else float("nan"),
        "reversed": reversed_edges / len(edges) if edges else float("nan"),
        "n_true_edges": len(true_edges),
        "n_children": len(truth),
        "n_recovered": len(edges),
    }
