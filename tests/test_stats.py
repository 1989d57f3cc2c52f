"""Statistics behind the verdict, on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from progenitor.calibration import fit_logistic
from progenitor.stats import cauchy_combination, clustered_null, fisher_z, pooled_between_sd, predictive_p_value


def test_predictive_p_value_is_calibrated_under_the_null() -> None:
    rng = np.random.default_rng(0)
    null = rng.normal(0.3, 0.1, size=8)
    draws = rng.normal(0.3, 0.1, size=4000)
    ps = np.array([predictive_p_value(v, null) for v in draws])
    # A valid p-value: P(p < a) is about a under the null (for one fixed null sample, roughly).
    assert abs((ps < 0.1).mean() - 0.1) < 0.06
    assert predictive_p_value(0.9, null) < 1e-3 < predictive_p_value(0.5, null)


def test_predictive_p_value_needs_samples() -> None:
    with pytest.raises(ValueError):
        predictive_p_value(1.0, [0.1, 0.2])


def test_cauchy_combination() -> None:
    assert cauchy_combination([0.5]) == pytest.approx(0.5)
    assert cauchy_combination([1e-8, 0.5, 0.5]) == pytest.approx(3e-8, rel=0.05)  # ~Bonferroni
    assert cauchy_combination([0.01, 0.01]) == pytest.approx(0.01, rel=1e-6)
    assert 0 < cauchy_combination([1e-300, 1e-300]) < 1e-250
    with pytest.raises(ValueError):
        cauchy_combination([])
    # a gene with no signal at all (p = 1) does not cancel another gene's strong evidence
    assert cauchy_combination([1e-6, 1.0]) < 1e-5


def test_fisher_z_clips() -> None:
    assert np.isfinite(fisher_z(1.0)) and fisher_z(0.0) == 0.0 and fisher_z(-1.0) < -5


def test_fit_logistic_separates() -> None:
    x = np.array([0.1, 0.3, 0.2, 5.0, 8.0, 6.0])
    y = np.array([0, 0, 0, 1, 1, 1.0])
    a, b = fit_logistic(x, y)
    assert b > 0 and 1 / (1 + np.exp(-(a + b * 0.2))) < 0.2 and 1 / (1 + np.exp(-(a + b * 6))) > 0.8


def test_clustered_null_without_clusters_is_the_prediction_interval() -> None:
    null = [0.1, 0.3, 0.2, 0.25, 0.15]
    assert clustered_null(null).p_value(0.6) == pytest.approx(predictive_p_value(0.6, null))


def test_clustered_null_treats_a_cluster_as_one_draw() -> None:
    """Families of dependent pairs: the false-positive rate on a pair from new families stays near
    alpha with clusters, and is far above it when every pair counts as an independent draw."""
    rng = np.random.default_rng(1)
    clustered, naive = [], []
    for _ in range(400):
        centres = rng.normal(0.0, 1.0, size=5)  # five family pairs, 20 pairs each, little spread within
        values = np.repeat(centres, 20) + rng.normal(0, 0.1, size=100)
        labels = np.repeat(np.arange(5), 20)
        new = rng.normal(0.0, 1.0) + rng.normal(0, 0.1)  # a pair from two new families
        clustered.append(clustered_null(values, labels).p_value(new))
        naive.append(predictive_p_value(new, values))
    assert abs((np.array(clustered) < 0.1).mean() - 0.1) < 0.05
    assert (np.array(naive) < 0.1).mean() > 0.12
    # with fewer than 3 clusters the pooled spread between clusters stands in
    few = clustered_null([0.0, 0.01, 0.02, 1.0, 1.01], [0, 0, 0, 1, 1], between_sd=2.0)
    assert few.df == 2 and few.sd > 1.9
    assert pooled_between_sd([([0.0, 0.0, 2.0, 2.0], [0, 0, 1, 1]), ([5.0, 5.0], [0, 0])]) == pytest.approx(2**0.5)
