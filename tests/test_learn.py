"""The learned Model DNA: loss, classifier symmetries, input invariances, training, bundles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import progenitor as pg
from progenitor.learn import DNAGenerator, ProvenanceClassifier, dna_similarity_loss, load_learned
from progenitor.learn.inputs import BLOCKS, behaviour_sketch, dna_inputs
from progenitor.learn.train import Pairs, TrainingSet, fit, roc_auc


def unit(*rows: list[float]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_loss_prefers_close_positives() -> None:
    # model 0 is the source, 1 its child, 2 and 3 independent
    good = unit([1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0, 1])
    bad = unit([1, 0, 0], [0, 1, 0], [0.99, 0.1, 0], [0, 0, 1])
    anchors, positives = torch.tensor([0]), torch.tensor([1])
    negatives = torch.tensor([[False, False, True, True]])
    low = dna_similarity_loss(good, anchors, positives, negatives, temperature=0.1)
    high = dna_similarity_loss(bad, anchors, positives, negatives, temperature=0.1)
    assert low < 0.01 < 5 < high


def test_loss_mines_the_hardest_negative() -> None:
    dna = unit([1, 0, 0], [1, 0, 0], [0.9, 0.43, 0], [0, 0, 1], [0, 1, 0])
    anchors, positives = torch.tensor([0]), torch.tensor([1])
    mask = torch.tensor([[False, False, True, True, True]])
    only_hard = dna_similarity_loss(dna, anchors, positives, mask, temperature=0.5, hard_negatives=1)
    hard = float(dna[0] @ dna[2])  # the most similar negative; 3 and 4 are ignored
    manual = torch.logsumexp(torch.tensor([2.0, hard * 2]), 0) - 2.0
    assert only_hard == pytest.approx(float(manual), rel=1e-4)
    # Models that are not negatives (siblings: False in the mask) are never pushed away.
    none = dna_similarity_loss(dna, anchors, positives, torch.zeros_like(mask), hard_negatives=1)
    assert float(none) == 0.0


def test_loss_gradient_pulls_child_towards_source() -> None:
    dna = unit([1, 0], [0.6, 0.8], [0, 1]).requires_grad_(True)
    loss = dna_similarity_loss(dna, torch.tensor([0]), torch.tensor([1]), torch.tensor([[False, False, True]]))
    loss.backward()
    assert dna.grad[1, 0] < 0  # descending the gradient raises the child's first coordinate


def test_classifier_symmetries() -> None:
    torch.manual_seed(0)
    clf = ProvenanceClassifier(dim=8, moments=12)
    u, v = torch.randn(5, 8), torch.randn(5, 8)
    mu, mv, has = torch.randn(5, 12), torch.randn(5, 12), torch.ones(5)
    torch.testing.assert_close(clf.relation_logit(u, v), clf.relation_logit(v, u))
    torch.testing.assert_close(clf.direction_logit(u, v, mu, mv, has), -clf.direction_logit(v, u, mv, mu, has))


def test_behaviour_sketch_ignores_probe_order() -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**62, size=40)
    g = rng.standard_normal((40, 40))
    g = g + g.T
    perm = rng.permutation(40)
    upper = g[np.triu_indices(40, 1)]
    upper_p = g[perm][:, perm][np.triu_indices(40, 1)]
    a, b = behaviour_sketch(upper, keys), behaviour_sketch(upper_p, keys[perm])
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.shape == (BLOCKS["behaviour"],)


def test_inputs_are_fixed_size_and_masked(family, probes_array) -> None:
    white = pg.extract(family.parent, probes=probes_array, input_shape=(1, 8, 8), learned=False)
    black = pg.extract(family.parent, probes=probes_array, input_shape=(1, 8, 8), access="black", learned=False)
    for dna in (white, black):
        blocks, masks = dna_inputs(dna)
        assert {k: v.shape[0] for k, v in blocks.items()} == BLOCKS
    assert dna_inputs(white)[1] == {"behaviour": 1.0, "weights": 1.0, "moments": 1.0, "data": 0.0}
    _, masks = dna_inputs(black)
    assert masks["weights"] == 0.0 and masks["behaviour"] == 1.0
    assert not dna_inputs(black)[0]["weights"].any()  # absent, not faked


def test_generator_output_is_unit_and_ignores_absent_blocks() -> None:
    torch.manual_seed(0)
    gen = DNAGenerator(dim=16).eval()
    blocks = {k: torch.randn(3, n) for k, n in BLOCKS.items()}
    masks = {k: torch.ones(3) for k in BLOCKS}
    masks["data"] = torch.zeros(3)
    z = gen(blocks, masks)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    blocks["data"] = torch.randn(3, BLOCKS["data"]) * 100  # masked: must not matter
    torch.testing.assert_close(gen(blocks, masks), z)


@pytest.fixture(scope="module")
def training_set(family, probes_array):
    """The digits family as a TrainingSet: two parents' lineages vs independents."""
    import families

    models = [family.parent, *family.children.values(), *family.independents]
    fams = ["p"] * 5 + [f"i{i}" for i in range(len(family.independents))]
    for i in (0, 1):  # children of two independents, so more than one family has derived pairs
        models += [
            families.fine_tuned(family.independents[i], seed=60 + i),
            families.noised(family.independents[i], 0.1),
        ]
        fams += [f"i{i}", f"i{i}"]
    dnas = [pg.extract(m, probes=probes_array, input_shape=(1, 8, 8), learned=False) for m in models]
    rows = [(0, c, True, True) for c in range(1, 5)] + [(5, 11, True, True), (5, 12, True, True)]
    rows += [(a, b, False, False) for a in (0, 5, 6, 7) for b in range(5, 11) if a != b and fams[a] != fams[b]]
    val = [(6, 13, True, True), (6, 14, True, True), (6, 8, False, False), (6, 9, False, False), (6, 10, False, False)]
    return TrainingSet(dnas, fams, {"train": Pairs.of(rows), "val": Pairs.of(val)}), dnas


@pytest.fixture(scope="module")
def trained(training_set, tmp_path_factory):
    """A tiny LearnedDNA fitted on the digits family."""
    data, dnas = training_set
    torch.set_num_threads(1)
    bundle, metrics = fit(data, {"epochs": 60, "eval_every": 10, "seed": 0})
    return bundle, metrics, dnas, tmp_path_factory.mktemp("learned")


def test_training_is_deterministic_on_two_threads(training_set) -> None:
    """Same seed and thread count, same weights (the CLI pins 2 threads); torch's setting is
    restored."""
    data, _ = training_set
    # Many (repeated) pairs: the thread-dependent accumulation only shows on large batches.
    train = data.pairs["train"]
    many = Pairs(*(np.tile(a, 400) for a in (train.source, train.target, train.derived, train.related)))
    data = TrainingSet(data.dnas, data.families, {**data.pairs, "train": many})
    states = []
    for threads in (2, 2):
        torch.set_num_threads(threads)
        bundle, _ = fit(data, {"epochs": 5, "eval_every": 5, "seed": 0})
        states.append({**bundle.generator.state_dict(), **bundle.classifier.state_dict()})
    torch.set_num_threads(1)
    for state in states[1:]:
        assert all(torch.equal(state[k], states[0][k]) for k in states[0])
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_separates_and_is_deterministic(training_set) -> None:
    """On a GPU: the same selection quality as on the CPU, the bundle back on the CPU, and two
    runs give the same weights."""
    data, dnas = training_set
    states = []
    for _ in range(2):
        bundle, metrics = fit(data, {"epochs": 60, "eval_every": 10, "seed": 0}, device="cuda")
        assert metrics["val_auc"] >= 0.99
        states.append({**bundle.generator.state_dict(), **bundle.classifier.state_dict()})
    assert all(v.device.type == "cpu" for v in states[0].values())
    assert all(torch.equal(states[1][k], states[0][k]) for k in states[0])
    derived = [bundle.assess(dnas[6], dnas[k])["probability"] for k in (13, 14)]
    assert min(derived) > max(bundle.assess(dnas[6], dnas[k])["probability"] for k in (8, 9, 10))


def test_training_refuses_an_unknown_device_and_a_split_without_both_classes(training_set) -> None:
    data = training_set[0]
    with pytest.raises(pg.ProgenitorError, match="not one of cpu, cuda"):
        fit(data, {"epochs": 1, "seed": 0}, device="gpu0")
    only_derived = Pairs.of([(0, c, True, True) for c in range(1, 5)])
    with pytest.raises(pg.ProgenitorError, match="derived and independent pairs"):
        fit(TrainingSet(data.dnas, data.families, {**data.pairs, "train": only_derived}), {"epochs": 1})


def test_training_separates_derived_from_independent(trained) -> None:
    bundle, metrics, dnas, _ = trained
    assert metrics["val_auc"] >= 0.99
    derived = [bundle.assess(dnas[6], dnas[k])["probability"] for k in (13, 14)]
    independent = [bundle.assess(dnas[6], dnas[k])["probability"] for k in (8, 9, 10)]
    assert min(derived) > max(independent)
    assert roc_auc(np.array(derived + independent), np.array([1, 1, 0, 0, 0])) == 1.0


def test_training_is_deterministic_and_bundle_round_trips(trained) -> None:
    bundle, _, dnas, root = trained
    bundle.save(root)
    again = load_learned(root)
    np.testing.assert_array_equal(again.embed(dnas[:3]), bundle.embed(dnas[:3]))
    assert again.assess(dnas[0], dnas[1]) == bundle.assess(dnas[0], dnas[1])
    vectors = bundle.embed(dnas)
    assert vectors.shape == (len(dnas), 64) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    manifest = (root / "manifest.json").read_text()
    assert "weights_sha256" in manifest and (root / "MODEL_CARD.md").exists()
    (root / "weights.safetensors").write_bytes(b"tampered")
    with pytest.raises(pg.ProgenitorError, match="hash"):
        load_learned(root)


def test_direction_is_decided(trained) -> None:
    bundle, _, dnas, _ = trained
    forward = bundle.assess(dnas[0], dnas[1])
    backward = bundle.assess(dnas[1], dnas[0])
    assert forward["relation"] == pytest.approx(backward["relation"], abs=1e-6)
    assert forward["direction"] == pytest.approx(1 - backward["direction"], abs=1e-5)


def test_assess_uses_a_stored_vector_of_the_same_generator(trained) -> None:
    """A DNA carrying this generator's vector is not re-embedded, and the answer is the same."""
    import copy

    bundle, _, dnas, _ = trained
    plain = bundle.assess(dnas[0], dnas[13])
    stored = [copy.copy(dnas[0]), copy.copy(dnas[13])]
    for dna, vector in zip(stored, bundle.embed(stored), strict=True):
        dna.vector, dna.vector_spec = vector, bundle.spec
    fast = bundle.assess(*stored)
    assert fast == pytest.approx(plain, abs=1e-5)
    other = copy.copy(dnas[13])
    other.vector, other.vector_spec = -bundle.embed([other])[0], {**bundle.spec, "hash": "another"}
    assert bundle.assess(stored[0], other) == pytest.approx(plain, abs=1e-5)  # another generator's vector is ignored
