"""Statistics used by the verdict: Fisher z, predictive p-values, p-value combination."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special as _special

_CLIP = 0.999999
P_CAP = 0.99


def fisher_z(similarity: float) -> float:
    """Fisher's z (arctanh) of a correlation-like similarity, clipped away from +-1."""
    # min/max, not np.clip: the same bits, without numpy's dispatch on a scalar (a search calls it
    # tens of thousands of times).
    return float(np.arctanh(min(max(float(similarity), -_CLIP), _CLIP)))


def predictive_p_value(value: float, null: Sequence[float]) -> float:
    """One-sided p-value of ``value`` under a normal null known only through samples.

    Uses the Student-t prediction interval for a new draw from the null's distribution:
    ``t = (value - mean) / (sd * sqrt(1 + 1/n))`` with ``n - 1`` degrees of freedom. Unlike an
    empirical rank it can reach small p-values from a few null samples, and it widens honestly
    when there are few. Needs at least 3 samples.
    """
    x = np.asarray(null, dtype=np.float64)
    if x.size < 3:
        raise ValueError("a null needs at least 3 samples")
    sd = max(float(x.std(ddof=1)), 1e-6)
    t = (value - float(x.mean())) / (sd * math.sqrt(1 + 1 / x.size))
    return _t_sf(t, x.size - 1)


@dataclass(frozen=True)
class NullModel:
    """A null distribution summarised for predictive p-values: mean, predictive sd, degrees of freedom."""

    mean: float
    sd: float
    df: int
    n: int
    clusters: int

    def p_value(self, value: float) -> float:
        """One-sided P(a new null draw >= value), Student-t with the model's df."""
        return _t_sf((value - self.mean) / max(self.sd, 1e-6), max(self.df, 1))


def _t_sf(t: float, df: int) -> float:
    """Student-t survival function (``scipy.stats.t.sf``'s value, without its per-call overhead)."""
    return float(_special.stdtr(df, -t))


def clustered_null(
    values: Sequence[float], clusters: Sequence[int] | None = None, between_sd: float = 0.0
) -> NullModel:
    """A predictive null from samples that come in clusters of dependent values.

    Pairs of models that share a family (every derivative of one source against every
    derivative of another) are not independent draws: the variation between families is what a
    new pair from new families faces. With C clusters of means m_k and pooled within-cluster
    variance s_w^2, the predictive variance of a new draw is ``var(m) (1 + 1/C) + s_w^2`` with
    C - 1 degrees of freedom. With fewer than 3 clusters the spread between clusters cannot be
    estimated from the values: ``between_sd`` (pooled over other nulls) stands in for it, with 2
    degrees of freedom. Without ``clusters`` every value is its own cluster, which is the
    Student-t prediction interval (``predictive_p_value``).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size < 3:
        raise ValueError("a null needs at least 3 samples")
    means, inverse = _cluster_means(x, np.arange(x.size) if clusters is None else clusters)
    c = len(means)
    within = float(((x - means[inverse]) ** 2).sum() / (x.size - c)) if x.size > c else 0.0
    if c >= 3:
        var = float(means.var(ddof=1)) * (1 + 1 / c) + within
        df = c - 1
    else:
        var = between_sd**2 + within
        df = 2
    return NullModel(float(means.mean()), math.sqrt(max(var, 1e-12)), df, int(x.size), c)


def _cluster_means(x: np.ndarray, clusters: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each cluster's values, and each value's cluster index into those means."""
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    return np.bincount(inverse, weights=x) / np.bincount(inverse), inverse


def pooled_between_sd(groups: Sequence[tuple[Sequence[float], Sequence[int]]]) -> float:
    """Spread of cluster means around their group's mean, pooled over groups with 2+ clusters."""
    ss, df = 0.0, 0
    for values, clusters in groups:
        means, _ = _cluster_means(np.asarray(values, dtype=np.float64), clusters)
        if len(means) < 2:
            continue
        ss += float(((means - means.mean()) ** 2).sum())
        df += len(means) - 1
    return math.sqrt(ss / df) if df else 0.0


def cauchy_combination(p_values: Sequence[float]) -> float:
    """Combine p-values with the Cauchy combination test (Liu & Xie 2020), equal weights.

    Valid under arbitrary dependence between the tests in the tail that matters, which suits genes
    measured on the same pair of models (Fisher's method would assume independence). p-values
    are capped at ``P_CAP``: near 1 the Cauchy transform runs to minus infinity and one gene with
    no signal at all would cancel any other gene's evidence.
    """
    if len(p_values) == 0:
        raise ValueError("no p-values to combine")
    # tan((0.5 - p) * pi) = 1 / tan(p * pi) avoids precision loss for tiny p. A verdict combines a
    # handful of p-values, thousands of times in a search: plain floats, not numpy arrays.
    t = math.fsum(1.0 / math.tan(min(max(float(p), 1e-300), P_CAP) * math.pi) for p in p_values) / len(p_values)
    return min(max(0.5 - math.atan(t) / math.pi, 1e-300), 1.0) if t < 1e15 else 1 / (t * math.pi)


def sigmoid(x: float) -> float:
    """Numerically safe logistic function."""
    return float(1 / (1 + math.exp(-x))) if x >= 0 else float(math.exp(x) / (1 + math.exp(x)))
