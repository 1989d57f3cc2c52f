"""Statistics behind the verdict, on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from progenitor.calibration import fit_logistic
from progenitor.stats import cauchy_combination, clustered_null, fisher_z, pooled_between_sd, predictive_p_value
from progenitor.verdict import combine_p_values


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


def test_behaviour_is_tested_alone_as_well() -> None:
    """A student's evidence is behavioural only; weight genes that see nothing must not dilute it."""
    student = {"weight_sketch": 0.6, "feature_cka": 0.9, "output_logits": 0.02, "error_agreement": 1e-4}
    tests = combine_p_values(student)
    assert tests["all_genes"] == pytest.approx(cauchy_combination(list(student.values())))
    assert tests["behaviour"] == pytest.approx(cauchy_combination([0.02, 1e-4]))
    assert tests["combined"] == pytest.approx(2 * tests["behaviour"]) and tests["combined"] < tests["all_genes"]
    # a weight-derived child: the test over every gene decides, doubled
    child = {"weight_sketch": 1e-9, "output_logits": 0.3}
    assert combine_p_values(child)["combined"] == pytest.approx(2 * cauchy_combination([1e-9, 0.3]))
    # one test when every gene (or none) reads outputs only
    assert combine_p_values({"output_logits": 0.02, "error_agreement": 0.5}) == {
        "combined": cauchy_combination([0.02, 0.5])
    }
    assert set(combine_p_values({"weight_sketch": 0.02})) == {"combined"}
    assert combine_p_values({}) is None
    # still a valid test: independent uniform p-values are rejected at most alpha of the time
    rng = np.random.default_rng(0)
    names = ["weight_sketch", "feature_cka", "output_geometry", "output_logits", "error_agreement"]
    draws = rng.uniform(size=(4000, len(names)))
    combined = np.array([combine_p_values(dict(zip(names, row, strict=True)))["combined"] for row in draws])
    assert (combined < 0.05).mean() <= 0.05 and (combined < 0.01).mean() <= 0.012


def test_a_student_of_another_recipe_meets_the_pooled_behaviour_null() -> None:
    """The behavioural test reads the source recipe's own null only for targets of that recipe."""
    from progenitor.calibration import Calibration, GeneNull
    from progenitor.genes import GeneScore, get_gene
    from progenitor.verdict import behaviour_recipe, decide

    assert behaviour_recipe("r1", "r1") == "r1" and behaviour_recipe("r1", None) == "r1"
    assert behaviour_recipe("r1", "r2") is None and behaviour_recipe(None, "r2") is None
    rng = np.random.default_rng(0)
    pooled, own = list(rng.normal(0.3, 0.1, 40)), list(rng.normal(1.0, 0.1, 10))  # r1's models agree more
    sketch_null = list(rng.normal(0.0, 0.1, 40)), {"r1": list(rng.normal(0.0, 0.1, 10))}
    calibration = Calibration(
        {
            "weight_sketch": GeneNull(get_gene("weight_sketch").version, sketch_null[0], groups=sketch_null[1]),
            "output_logits": GeneNull(1, pooled, groups={"r1": own}),
        },
        (0.0, 1.0),
        "hand-made",
    )
    scores = {"weight_sketch": GeneScore(0.0, {}), "output_logits": GeneScore(float(np.tanh(0.9)), {})}
    same = decide("s", "t", "white", scores, calibration, recipe="r1", target_recipe="r1")
    other = decide("s", "t", "white", scores, calibration, recipe="r1", target_recipe="r2")
    # the gene's evidence is on the source's own null either way; only the behavioural test moves
    assert same.evidence["genes"] == other.evidence["genes"]
    assert same.evidence["genes"]["output_logits"]["p_value"] > 0.5
    assert other.evidence["tests"]["behaviour"] < 1e-3 < same.evidence["tests"]["behaviour"]
    assert other.verdict == "derived" and same.verdict == "unrelated"
    assert "behaviour_null" in other.evidence and "behaviour_null" not in same.evidence


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
