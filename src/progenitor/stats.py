"""Statistics used by the verdict: Fisher z, predictive p-values, p-value combination."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _st

_CLIP = 0.999999
P_CAP = 0.99


def fisher_z(similarity: float) -> float:
    """Fisher's z (arctanh) of a correlation-like similarity, clipped away from +-1."""
    return float(np.arctanh(np.clip(similarity, -_CLIP, _CLIP)))


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
    return float(_st.t.sf(t, df=x.size - 1))


def cauchy_combination(p_values: Sequence[float]) -> float:
    """Combine p-values with the Cauchy combination test (Liu & Xie 2020), equal weights.

    Valid under arbitrary dependence between the tests in the tail that matters, which suits genes
    measured on the same pair of models (Fisher's method would assume independence). p-values
    are capped at ``P_CAP``: near 1 the Cauchy transform runs to minus infinity and one gene with
    no signal at all would cancel any other gene's evidence.
    """
    p = np.clip(np.asarray(p_values, dtype=np.float64), 1e-300, P_CAP)
    if p.size == 0:
        raise ValueError("no p-values to combine")
    # tan((0.5 - p) * pi) = 1 / tan(p * pi) avoids precision loss for tiny p.
    t = float(np.mean(1.0 / np.tan(p * np.pi)))
    return float(np.clip(0.5 - math.atan(t) / math.pi, 1e-300, 1.0)) if t < 1e15 else float(1 / (t * math.pi))


def sigmoid(x: float) -> float:
    """Numerically safe logistic function."""
    return float(1 / (1 + math.exp(-x))) if x >= 0 else float(math.exp(x) / (1 + math.exp(x)))
