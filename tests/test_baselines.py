"""Every registered baseline against one contract, plus each method's own behaviour.

The contract, on the tiny digits family: a model scores itself highest; an independently trained
model of the same recipe scores lower; a permuted copy (same function, shuffled hidden units)
scores as high as the model itself for the methods that claim invariance, and the methods that do
not (raw weight cosine, MoTHer's weight distance, the identity form of the CSU test) are shown to
break on it, so that the limitation stays visible.
"""

from __future__ import annotations

import copy
import zlib

import numpy as np
import pytest
import torch

import progenitor as pg
from progenitor.baselines import (
    BaselineNotApplicable,
    best_parent,
    fingerprint_nbytes,
    get_baseline,
    list_baselines,
    parent_test,
    recover_tree,
    register_baseline,
)
from progenitor.baselines._outputs import cutmix
from progenitor.baselines._weights import weight_layers
from progenitor.baselines.csu import Feed, feeds
from progenitor.baselines.nikolic import holm
from progenitor.baselines.sac import SACm
from progenitor.errors import IncomparableError
from progenitor.models.base import InputSpec

EXPECTED = {"sac_m", "sac_w", "modeldiff", "modelgif", "reef_cka", "csu_independence", "csu_match", "mother",
            "nikolic", "weight_cosine", "output_agreement"}


def _model(module: torch.nn.Module) -> pg.Model:
    return pg.load(module, input_shape=(1, 8, 8))


@pytest.fixture(scope="module")
def models(family):
    return {"parent": _model(family.parent), "permuted": _model(family.children["permuted"]),
            "fine-tuned": _model(family.children["fine-tuned"]),
            "noised": _model(family.children["noised"]),
            "independent": _model(family.independents[0]),
            "independent2": _model(family.independents[1])}


@pytest.fixture(scope="module")
def probes(probes_array):
    return pg.load_probes(probes_array)


def _scores(name: str, models: dict, probes: pg.ProbeSet) -> dict:
    method = get_baseline(name)
    fp = method.fingerprint(models["parent"], probes)
    return {key: method.score(fp, method.fingerprint_target(m, probes, fp))
            for key, m in models.items()}


# ------------------------------------------------------------------------------------- registry


def test_registry_lists_every_method() -> None:
    assert set(list_baselines()) == EXPECTED
    assert list_baselines("black") == sorted(
        n for n in EXPECTED if get_baseline(n).access == "black")
    assert "reef_cka" in list_baselines("gray") and "mother" not in list_baselines("gray")
    with pytest.raises(KeyError, match="sac_m"):
        get_baseline("no-such-method")
    with pytest.raises(ValueError, match="twice"):
        register_baseline(SACm)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_baseline_contract(name: str, models, probes) -> None:
    method = get_baseline(name)
    assert method.access in ("white", "gray", "black") and method.paper
    fp = method.fingerprint(models["parent"], probes)
    assert all(isinstance(a, np.ndarray) for a in fp.values()) and fingerprint_nbytes(fp) > 0
    again = method.fingerprint(models["parent"], probes)
    for key in fp:  # deterministic, searched inputs included
        np.testing.assert_array_equal(fp[key], again[key])
    s = _scores(name, models, probes)
    for result in s.values():
        assert np.isfinite(result.score)
        assert result.p_value is None or 0.0 <= result.p_value <= 1.0
    top = s["parent"].score
    assert all(r.score <= top + 1e-9 for r in s.values()), "a model is closest to itself"
    assert s["independent"].score < top and s["independent2"].score < top
    if method.permutation_invariant:
        assert s["permuted"].score == pytest.approx(top, rel=1e-4, abs=1e-4)
    else:
        # The method reads raw weights in unit order: a permuted copy, the same function,
        # falls to the level of an unrelated model.
        level = max(s["independent"].score, s["independent2"].score)
        assert s["permuted"].score < level + 0.1 * (top - level)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fingerprints_of_another_method_are_refused(name: str, models, probes) -> None:
    other = "weight_cosine" if name != "weight_cosine" else "sac_m"
    fp_other = get_baseline(other).fingerprint(models["parent"], probes)
    with pytest.raises(IncomparableError):
        get_baseline(name).score(fp_other, fp_other)


def test_weight_cosine_floor_breaks_under_permutation(models, probes) -> None:
    s = _scores("weight_cosine", models, probes)
    assert s["parent"].score == pytest.approx(1.0)
    assert s["fine-tuned"].score > 0.99
    assert s["permuted"].score < 0.1  # same function, scored like an unrelated model


# ------------------------------------------------------------------------------------------- SAC


def test_cutmix_pastes_a_fifth_from_another_probe(probes) -> None:
    mixed = cutmix(probes, 0.2, seed=1)
    assert mixed.data.shape == probes.data.shape
    changed = (mixed.data != probes.data).reshape(len(probes), -1)
    # a 4x4 patch of an 8x8 image (rounded from sqrt(0.2) * 8), only where the partner differs
    assert changed.sum(axis=1).max() <= 16 and changed.any(axis=1).mean() > 0.9
    np.testing.assert_array_equal(mixed.data, cutmix(probes, 0.2, seed=1).data)
    texts = pg.load_probes("sentences:20", InputSpec("text"))
    mixed_texts = cutmix(texts, 0.2, seed=1)
    assert len(mixed_texts) == 20 and mixed_texts.data != texts.data


def test_sac_w_uses_the_least_confident_quarter(models, probes) -> None:
    s = _scores("sac_w", models, probes)
    assert s["parent"].details["probes"] == 24  # a quarter of 96
    fp = get_baseline("sac_w").fingerprint(models["parent"], probes)
    assert s["parent"].details["max_source_confidence"] <= np.median(fp["confidence"])


def test_sac_separates_derived_from_independent(models, probes) -> None:
    for name in ("sac_m", "sac_w"):
        s = _scores(name, models, probes)
        assert s["noised"].score > max(s["independent"].score, s["independent2"].score)


# ------------------------------------------------------------------------------------- ModelDiff


def test_modeldiff_search_and_source_dependence(models, probes) -> None:
    method = get_baseline("modeldiff")
    assert method.source_dependent
    fp = method.fingerprint(models["parent"], probes)
    assert fp["inputs"].shape == fp["mutants"].shape == probes.data.shape
    assert np.abs(fp["mutants"] - fp["inputs"]).max() <= 0.1 + 1e-6  # bounded mutation
    unsearched = type(method)(iterations=0).fingerprint(models["parent"], probes)
    assert fp["ddv"].mean() > unsearched["ddv"].mean()  # the search finds more sensitive pairs
    target = method.fingerprint_target(models["noised"], probes, fp)
    assert set(target) == {"baseline", "ddv"}  # the target keeps only its answers
    s = _scores("modeldiff", models, probes)
    assert s["fine-tuned"].score > max(s["independent"].score, s["independent2"].score)


# ---------------------------------------------------------------------------------------- REEF


def test_reef_matches_layers_one_to_one(models, probes) -> None:
    s = _scores("reef_cka", models, probes)
    layers = s["fine-tuned"].details["layers"]
    assert len({d["target"] for d in layers}) == len(layers)
    assert s["parent"].score == pytest.approx(1.0)
    assert s["fine-tuned"].score > max(s["independent"].score, s["independent2"].score)


def test_reef_needs_features(probes, saved) -> None:
    scripted = pg.load(saved["parent"])  # TorchScript: no hooks, so no features
    with pytest.raises(pg.AccessError):
        get_baseline("reef_cka").fingerprint(scripted, probes)


# --------------------------------------------------------------------------------------- ModelGiF


def test_modelgif_fields_and_what_it_cannot_score(models, probes, saved) -> None:
    s = _scores("modelgif", models, probes)
    assert s["parent"].score == pytest.approx(1.0, abs=1e-3)
    assert s["fine-tuned"].score > max(s["independent"].score, s["independent2"].score)
    fp = get_baseline("modelgif").fingerprint(models["parent"], probes)
    assert fp["field"].shape == (min(64, len(probes)), 8, 64)  # inputs x path points x pixels
    # The field accumulates along the path: at its end it is the integrated-gradients
    # attribution, whose sum over pixels approaches f_c(x) - f_c(0) for the predicted class c.
    x = probes.data[: len(fp["field"])]
    out, black = models["parent"].forward(x), models["parent"].forward(np.zeros_like(x))
    rows, c = np.arange(len(x)), out.argmax(axis=1)
    change, attributed = out[rows, c] - black[rows, c], fp["field"][:, -1].astype(np.float64).sum(axis=1)
    assert np.median(np.abs(attributed - change) / np.abs(change)) < 0.05
    scripted = pg.load(saved["parent"])  # TorchScript models are differentiable too
    np.testing.assert_allclose(get_baseline("modelgif").fingerprint(scripted, probes)["field"], fp["field"], atol=2e-3)
    with pytest.raises(BaselineNotApplicable, match="no input gradients"):
        get_baseline("modelgif").fingerprint(pg.load(lambda b: b.reshape(len(b), -1)[:, :3]), probes)


# ------------------------------------------------------------------------------------------- CSU


def test_csu_feeds_follow_the_chain(models) -> None:
    fp = get_baseline("csu_independence").fingerprint(models["parent"])
    # conv1 reads pixels; conv2 reads conv1; fc1 reads conv2's pooled 4x4 map; fc2 reads fc1
    assert feeds(weight_layers(fp)) == [None, Feed(0, 9), Feed(1, 16), Feed(2, 1)]


def test_csu_p_values(models, probes) -> None:
    ident = _scores("csu_independence", models, probes)
    match = _scores("csu_match", models, probes)
    for s in (ident, match):
        assert s["parent"].p_value < 1e-100 and s["fine-tuned"].p_value < 1e-100
        assert s["independent"].p_value > 1e-3 and s["independent2"].p_value > 1e-3
        assert s["parent"].details["tested"] == 3  # hidden layers only: the output layer is not
    assert ident["permuted"].p_value > 0.05  # the constrained test cannot see through permutation
    assert match["permuted"].p_value < 1e-100  # both views of each unit move together


def test_csu_pairs_layers_explicitly(family, models) -> None:
    child = copy.deepcopy(family.parent)
    child.fc2 = torch.nn.Linear(64, 5)  # transfer to 5 classes: a new head
    target = _model(child)
    ident = get_baseline("csu_independence")
    result = ident.compare(models["parent"], target)
    assert result.details["shape_mismatch"] == 1 and result.details["tested"] == 3
    assert result.p_value < 1e-100
    with pytest.raises(BaselineNotApplicable):  # no anchored output layer to start from
        get_baseline("csu_match").compare(models["parent"], target)


# ----------------------------------------------------------------------------------------- MoTHer


@pytest.fixture(scope="module")
def chain(family):
    import families

    first = family.children["fine-tuned"]
    return {"root": _model(family.parent), "ft1": _model(first),
            "ft2": _model(families.fine_tuned(first, seed=101)),
            "other": _model(family.independents[2])}


def test_mother_recovers_a_chain_and_an_independent_root(chain) -> None:
    assert recover_tree(chain) == [("ft1", "ft2"), ("root", "ft1")]
    method = get_baseline("mother")
    fps = {k: method.fingerprint(m) for k, m in chain.items()}
    assert fps["root"]["kurtosis"] < fps["ft1"]["kurtosis"] < fps["ft2"]["kurtosis"]
    assert recover_tree(fps) == recover_tree(chain)  # fingerprints or models alike
    # without the family split, the independent model hangs somewhere in one tree
    assert len(recover_tree(fps, cut=float("inf"))) == 3
    pair = method.score(fps["root"], fps["ft1"])
    assert pair.details["direction_agrees"]
    assert pair.score > method.score(fps["root"], fps["other"]).score


# ---------------------------------------------------------------------------------------- Nikolić


def test_holm_adjustment() -> None:
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})


def _greedy(values: np.ndarray) -> dict:
    return {"baseline": np.array("nikolic"), "greedy": values.astype(np.int64)}


def test_parent_test_accepts_only_a_clear_winner() -> None:
    rng = np.random.default_rng(0)
    child = rng.integers(0, 50, 400)
    copy_of = lambda share: np.where(rng.random(400) < share, child, (child + 1) % 50)  # noqa: E731
    clear = {"p": _greedy(copy_of(0.9)), "a": _greedy(copy_of(0.3)), "b": _greedy(copy_of(0.35))}
    result = parent_test(_greedy(child), clear)
    assert result.parent == "p" and result.p_value < 1e-6 and set(result.p_values) == {"a", "b"}
    close = {"p": _greedy(copy_of(0.40)), "a": _greedy(copy_of(0.38)), "b": _greedy(copy_of(0.1))}
    assert best_parent(_greedy(child), close) is None  # best, but not significantly
    with pytest.raises(ValueError, match="two candidates"):
        parent_test(_greedy(child), {"p": clear["p"]})


def test_best_parent_on_models(models) -> None:
    noise = pg.load_probes("smooth-noise:300", InputSpec("tensor", (1, 8, 8)))
    candidates = {"parent": models["parent"], "independent": models["independent"],
                  "independent2": models["independent2"]}
    assert best_parent(models["noised"], candidates, probes=noise) == "parent"
    assert best_parent(models["permuted"], candidates, probes=noise) == "parent"
    # two candidates computing the same function: no test can tell them apart
    twins = {"parent": models["parent"], "permuted": models["permuted"]}
    assert best_parent(models["noised"], twins, probes=noise) is None


# ---------------------------------------------------------------------------------- text models


def _text_model(seed: int, noise: float = 0.0) -> pg.Model:
    """A bag-of-words classifier over hashed word vectors: outputs (n, 7)."""
    head = np.random.default_rng(seed).standard_normal((16, 7))
    head = head + noise * np.random.default_rng(seed + 1).standard_normal(head.shape)

    def word(w: str) -> np.ndarray:
        return np.random.default_rng(zlib.crc32(w.encode())).standard_normal(16)

    def fn(batch: list[str]) -> np.ndarray:
        return np.stack([np.mean([word(w) for w in t.split()], axis=0) @ head for t in batch])

    return pg.load(fn, text=True)


@pytest.mark.parametrize("name", ["sac_m", "sac_w", "modeldiff", "nikolic", "output_agreement"])
def test_black_box_methods_on_text(name: str) -> None:
    texts = pg.load_probes("sentences:64", InputSpec("text"))
    source, derived, independent = _text_model(0), _text_model(0, 0.1), _text_model(5)
    method = get_baseline(name)
    fp = method.fingerprint(source, texts)
    score = {k: method.score(fp, method.fingerprint_target(m, texts, fp)).score
             for k, m in {"self": source, "derived": derived, "independent": independent}.items()}
    assert score["self"] >= score["derived"] > score["independent"]
