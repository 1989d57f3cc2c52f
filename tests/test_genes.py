"""Every registered gene against the same contract, plus gene-specific invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import progenitor as pg
from progenitor.genes import GeneNotApplicable, Observation, get_gene, list_genes
from progenitor.genes.weights import Layer, pair_layers, sketch_layers
from progenitor.probes import from_array


@pytest.fixture(scope="module")
def observations(family):
    import families

    # Every held-out digit, labelled: the parent errs on enough of them for error_agreement.
    x, y = families.digits()
    probes = from_array(x[1500:], "held-out", y[1500:])
    sample = pg.load_probes(families.digits()[0][:200])  # the data-driven gene needs a sample

    def obs(m: torch.nn.Module) -> Observation:
        return Observation(pg.load(m, input_shape=(1, 8, 8)), probes, sample)

    return {
        "parent": obs(family.parent),
        "permuted": obs(family.children["permuted"]),
        "independent": obs(family.independents[0]),
    }


@pytest.mark.parametrize("gene", list_genes(), ids=lambda g: g.name)
def test_gene_contract(gene, observations) -> None:
    value = gene.extract(observations["parent"])
    assert gene.access in ("white", "gray", "black") and gene.version >= 1
    assert all(isinstance(a, np.ndarray) for a in value.arrays.values())
    again = gene.extract(observations["parent"])
    for key in value.arrays:  # deterministic
        np.testing.assert_array_equal(value.arrays[key], again.arrays[key])
    self_score = gene.compare(value, again).similarity
    assert self_score == pytest.approx(1.0, abs=1e-3)  # some genes store float16
    perm = gene.compare(value, gene.extract(observations["permuted"])).similarity
    if gene.permutation_invariant:
        assert perm == pytest.approx(1.0, abs=1e-3), "a permuted copy computes the same function"
    else:  # it tests values in place: permuted units move them
        assert perm < 0.5
    other = gene.compare(value, gene.extract(observations["independent"])).similarity
    assert -1.0 <= other <= 1.0
    if gene.role == "lineage":  # direction and data genes are alike across independents by design
        assert other < self_score - 0.03


def test_weight_sketch_invariant_to_relu_rescaling(family) -> None:
    """Scaling a ReLU unit's incoming weights by c and its outgoing ones by 1/c (same function)
    leaves every sketch unchanged; so does folding a BatchNorm into the layer before it."""
    weights = {k: v.detach().numpy().astype(np.float64) for k, v in family.parent.state_dict().items()}
    c = np.linspace(0.25, 4.0, 16)
    scaled = dict(weights)
    scaled["conv1.weight"] = weights["conv1.weight"] * c[:, None, None, None]
    scaled["conv1.bias"] = weights["conv1.bias"] * c
    scaled["conv2.weight"] = weights["conv2.weight"] / c[None, :, None, None]
    with_norm = dict(weights)  # conv1 followed by a BatchNorm of gain g ...
    g = np.linspace(0.5, 2.0, 16)
    with_norm["bn1.weight"] = g
    with_norm["bn1.running_var"] = np.ones(16)
    with_norm = {k: with_norm[k] for k in ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.running_var",
                                             *[k for k in weights if not k.startswith("conv1")]]}
    folded = dict(weights)  # ... and the same norm folded into conv1 (an ONNX export)
    folded["conv1.weight"] = weights["conv1.weight"] * (g / np.sqrt(1 + 1e-5))[:, None, None, None]
    a = [s for _, s in sketch_layers(weights)]
    for other in (scaled, folded):
        for x, y in zip(a if other is scaled else [s for _, s in sketch_layers(with_norm)],
                        [s for _, s in sketch_layers(other)], strict=True):
            np.testing.assert_allclose(x, y, atol=1e-5)


def test_weight_sketch_alignment(observations) -> None:
    """Units matched to their own index: all for a copy, none for a permuted copy, and an exact
    p-value bound that is tiny only for the aligned pair."""
    gene = get_gene("weight_sketch")
    parent = gene.extract(observations["parent"])
    itself = gene.compare(parent, gene.extract(observations["parent"])).details
    permuted = gene.compare(parent, gene.extract(observations["permuted"])).details
    independent = gene.compare(parent, gene.extract(observations["independent"])).details
    assert itself["aligned"] == pytest.approx(1.0)
    assert itself["alignment_p"] < 1e-9
    assert permuted["aligned"] < 0.2 and permuted["alignment_p"] > 0.01
    assert independent["alignment_p"] > 0.01


def test_alignment_p_value_bound() -> None:
    """P(K >= k) <= 1/k! for the fixed points of a random permutation, checked by simulation."""
    from progenitor.genes.weights import alignment_p_value

    rng = np.random.default_rng(0)
    fixed = np.array([(rng.permutation(64) == np.arange(64)).sum() for _ in range(20000)])
    for k in range(1, 6):
        assert (fixed >= k).mean() <= alignment_p_value([k]) + 0.01
    assert alignment_p_value([]) == 1.0 and alignment_p_value([0, 0]) == 1.0
    assert alignment_p_value([10, 2]) == pytest.approx(2 / 3628800)


def test_wide_layers_match_a_sample_of_units() -> None:
    """A layer wider than MATCH_UNITS matches a fixed sample of its units against every unit of
    the other: a permuted copy's sampled units all find their twins, none in place; the copy
    itself has all of them in place; an unrelated layer matches far worse."""
    from progenitor.genes.weights import MATCH_UNITS, match_units, unit_sample

    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 32)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    perm = rng.permutation(300)
    assert len(unit_sample(300)) == MATCH_UNITS and np.array_equal(unit_sample(300), unit_sample(300))
    assert np.array_equal(unit_sample(40), np.arange(40))
    assert match_units(a, a) == (pytest.approx(1.0), MATCH_UNITS, MATCH_UNITS)
    similarity, in_place, matched = match_units(a, a[perm])
    assert similarity == pytest.approx(1.0) and matched == MATCH_UNITS
    assert in_place == int((perm[unit_sample(300)] == unit_sample(300)).sum())
    other = rng.standard_normal((300, 32)).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    assert match_units(a, other)[0] < 0.8
    # The narrower layer is the one sampled, whichever side it is on.
    assert match_units(a[:50], a)[2] == 50 and match_units(a, a[:50])[2] == 50


def _bert_like(seed: int, type_rows: int, hidden: int = 48) -> dict[str, np.ndarray]:
    """Random weights in a BERT's layout: word, position and token-type tables writing the same
    hidden units, then one encoder layer."""
    rng = np.random.default_rng(seed)
    shapes = {
        "embeddings.word_embeddings.weight": (500, hidden),
        "embeddings.position_embeddings.weight": (64, hidden),
        "embeddings.token_type_embeddings.weight": (type_rows, hidden),
        "encoder.layer.0.attention.self.query.weight": (hidden, hidden),
        "encoder.layer.0.intermediate.dense.weight": (2 * hidden, hidden),
        "encoder.layer.0.output.dense.weight": (hidden, 2 * hidden),
    }
    return {k: rng.standard_normal(shape).astype(np.float32) for k, shape in shapes.items()}


def test_narrow_input_table_does_not_collapse_the_layers_after_it() -> None:
    """A BERT writes its word, position and 2-row token-type tables into the same hidden units.
    The encoder's sketches read a full sketch of those units, not the token-type table's rank-2
    one: they are those of the same model without that table, or with its tables in another
    order, and of full rank."""
    from progenitor.genes.weights import SKETCH_DIM

    weights = _bert_like(0, type_rows=2)
    layers = {layer.name: sketch for layer, sketch in sketch_layers(weights)}
    without = {layer.name: sketch for layer, sketch in sketch_layers(
        {k: v for k, v in weights.items() if "token_type" not in k})}
    tables = list(weights)[:3]
    reordered = {k: weights[k] for k in [*reversed(tables), *list(weights)[3:]]}  # as a sorted file gives them
    shuffled = {layer.name: sketch for layer, sketch in sketch_layers(reordered)}
    assert len(layers) == 6  # the table keeps its own sketch
    for name in list(weights)[3:]:
        assert np.array_equal(layers[name], without[name]) and np.array_equal(layers[name], shuffled[name])
        assert np.linalg.matrix_rank(layers[name], tol=1e-3) == SKETCH_DIM


def test_single_input_layers_give_no_alignment_evidence() -> None:
    """A RoBERTa's 1-row token-type table: every unit's sketch is one vector up to its sign, so the
    matching's ties would put its units at their own index in any two models. Such layers are
    not compared: independent models stay unaligned, a copy stays aligned."""
    from types import SimpleNamespace

    gene = get_gene("weight_sketch")
    model, other = (gene.extract(SimpleNamespace(weights=_bert_like(seed, type_rows=1))) for seed in (0, 1))
    independent = gene.compare(model, other).details
    copy = gene.compare(model, model).details
    assert "embeddings.token_type_embeddings.weight" not in {layer["source"] for layer in independent["layers"]}
    assert independent["paired"] == 5 and independent["alignment_p"] == 1.0
    assert copy["aligned"] == pytest.approx(1.0) and copy["alignment_p"] < 1e-9


ROLES = {"query": "query", "key": "key", "value": "value", "q_proj": "query", "k_proj": "key", "v_proj": "value"}


@pytest.mark.parametrize("order", [("query", "key", "value"), ("k_proj", "v_proj", "q_proj")])
def test_permutations_within_attention_heads_are_seen_through(order: tuple[str, str, str]) -> None:
    """Permuting query/key dimensions together, or value dimensions with the output projection's
    columns, leaves attention's function unchanged. The query, key and value projections read the
    stream and the output projection reads the values, so every layer's sketch matches its
    permuted twin, in BERT's order of the projections and in OPT's (key, value, query)."""
    rng = np.random.default_rng(0)
    hidden, heads = 32, 4
    name = {ROLES[leaf]: f"layer.0.attn.{leaf}.weight" for leaf in order}
    weights = {"embed_tokens.weight": rng.standard_normal((200, hidden))}
    weights |= {f"layer.0.attn.{leaf}.weight": rng.standard_normal((hidden, hidden)) for leaf in order}
    weights |= {"layer.0.attn.out.weight": rng.standard_normal((hidden, hidden)),
                "layer.0.fc1.weight": rng.standard_normal((64, hidden)),
                "layer.0.fc2.weight": rng.standard_normal((hidden, 64))}
    head = hidden // heads
    query_key, value = (np.concatenate([h * head + rng.permutation(head) for h in range(heads)]) for _ in range(2))
    permuted = dict(weights)
    permuted[name["query"]] = weights[name["query"]][query_key]
    permuted[name["key"]] = weights[name["key"]][query_key]
    permuted[name["value"]] = weights[name["value"]][value]
    permuted["layer.0.attn.out.weight"] = weights["layer.0.attn.out.weight"][:, value]
    for (layer, a), (_, b) in zip(sketch_layers(weights), sketch_layers(permuted), strict=True):
        assert abs(a @ b.T).max(axis=1).min() > 0.999, layer.name


def test_precision_cue_of_large_tensors_reads_whole_rows() -> None:
    """Past PRECISION_SAMPLE values the cue reads evenly spaced whole rows: a float32 tensor
    still repeats nothing, an int8 copy (a grid per row) and a float16 copy still show."""
    from progenitor.genes.weights import PRECISION_SAMPLE, layer_precision

    w = np.random.default_rng(0).standard_normal((4096, 512)).astype(np.float32)
    assert w.size > PRECISION_SAMPLE
    step = np.abs(w).max(axis=1, keepdims=True) / 127
    int8 = (np.round(w / step) * step).astype(np.float32)
    assert layer_precision(w)[1] < 0.05 and layer_precision(w)[0] < 0.01
    assert layer_precision(int8)[1] > 0.3
    assert layer_precision(w.astype(np.float16).astype(np.float32))[0] == 1.0


def test_weight_passes_equal_their_whole_tensor_references() -> None:
    """The weight genes read big tensors a chunk at a time or by bit tests; each result equals the
    whole-tensor computation it replaced: the float16 test the round trip through float16 (every
    float16 value, random bit patterns, subnormals), the row norms ``np.linalg.norm`` of the
    float64 copy bit for bit (contiguous rows, a transposed table, strided rows), the moments the
    float64 formula after float32 rounding, the largest magnitude ``np.abs(w).max()``."""
    from progenitor.genes.values import _largest_magnitude
    from progenitor.genes.weights import CHUNK, _float16_exact, layer_moments, row_norms

    rng = np.random.default_rng(0)
    halves = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    patterns = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    tiny = (rng.standard_normal(100_000) * 1e-6).astype(np.float32)
    for x in (halves, patterns, tiny):
        with np.errstate(over="ignore", invalid="ignore"):
            assert np.array_equal(_float16_exact(x), x.astype(np.float16).astype(np.float32) == x)

    table = rng.standard_normal((3 * CHUNK // 64 + 5, 64)).astype(np.float32)
    for rows in (table, table.T, table[::2], table[:, ::3]):
        assert np.array_equal(row_norms(rows), np.linalg.norm(rows.astype(np.float64), axis=1))

    def reference(w: np.ndarray) -> tuple[float, float, float]:
        x = w.astype(np.float64).ravel()
        z = x - x.mean()
        m2 = float(z @ z) / x.size
        return 0.5 * float(np.log(m2)), float((z**2) @ (z**2)) / x.size / m2**2 - 3.0, float(np.mean(x == 0))

    big = rng.standard_normal((700, 300)).astype(np.float32) * 0.02 + 0.001
    big[big < -0.03] = 0
    for w in (big, big.T, big[:, :, None], rng.standard_normal(10).astype(np.float32)):
        assert np.array_equal(np.array(layer_moments(w), np.float32), np.array(reference(w), np.float32))

    for w in (big, -np.abs(big), np.full((3, 3), -0.0, np.float32), np.array([[1.0, np.nan]], np.float32)):
        assert np.array_equal(np.float32(_largest_magnitude(w)), np.abs(w).max(), equal_nan=True)
        assert str(_largest_magnitude(w)) == str(float(np.abs(w).max()))


def test_pair_layers_explicit() -> None:
    a = [
        Layer("c1", "conv", 16, (1, 9), 0.0),
        Layer("c2", "conv", 32, (16, 9), 0.33),
        Layer("f1", "dense", 64, (512, 1), 0.67),
        Layer("f2", "dense", 10, (64, 1), 1.0),
    ]
    # target: new head with 5 classes, conv2 structurally pruned to 24 channels
    b = [
        Layer("x1", "conv", 16, (1, 9), 0.0),
        Layer("x2", "conv", 24, (16, 9), 0.33),
        Layer("y1", "dense", 64, (384, 1), 0.67),
        Layer("y2", "dense", 5, (64, 1), 1.0),
    ]
    assert pair_layers(a, b) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    # kinds never mix; a lone dense layer pairs with the dense layer nearest in depth
    c = [Layer("only", "dense", 10, (64, 1), 1.0)]
    assert pair_layers(a, c) == [(3, 0)]
    assert pair_layers(a, [Layer("e", "embedding", 8, (100, 1), 0.0)]) == []


def test_gene_not_applicable_without_matrices() -> None:
    model = pg.load(torch.nn.LayerNorm(4))
    with pytest.raises(GeneNotApplicable):
        get_gene("weight_sketch").extract(Observation(model, None))


def test_weight_stats_direction_cues(family) -> None:
    """Pruning raises sparsity and Gaussian noise pulls kurtosis towards 0: direction cues."""
    import families

    gene = get_gene("weight_stats")

    def moments(m: torch.nn.Module) -> np.ndarray:
        return gene.extract(Observation(pg.load(m), None)).arrays["moments"]

    parent = moments(family.parent)
    assert (moments(family.children["pruned-50"])[:, 2] > parent[:, 2] + 0.4).all()
    assert np.abs(moments(families.noised(family.parent, 1.0))[:, 1]).mean() < np.abs(parent[:, 1]).mean()


def test_training_data_gene(family, probes_array) -> None:
    """Present only with a sample; same data scores higher than other data."""
    import families

    images = families.digits()[0]
    plain = pg.extract(family.parent, probes=probes_array, input_shape=(1, 8, 8))
    assert "training_data" not in plain.genes
    a = pg.extract(family.parent, probes=probes_array, input_shape=(1, 8, 8), data=images[:300])
    b = pg.extract(family.parent, probes=probes_array, input_shape=(1, 8, 8), data=images[300:600])
    noise = np.random.default_rng(0).random((300, 1, 8, 8)).astype(np.float32)
    c = pg.extract(family.parent, probes=probes_array, input_shape=(1, 8, 8), data=noise)
    gene = get_gene("training_data")
    same = gene.compare(a.genes["training_data"], b.genes["training_data"]).similarity
    other = gene.compare(a.genes["training_data"], c.genes["training_data"]).similarity
    assert same > 0.9 and other < same - 0.1
    texts = ["a good film", "a bad film", "the river at night"]
    t = gene.extract(Observation(pg.load(lambda x: np.zeros((len(x), 2)), text=True), None, pg.load_probes(texts)))
    assert t.arrays["mean"].shape == (128,) and t.meta["kind"] == "text"


def test_output_logits_probability_api_and_wide_outputs() -> None:
    """A probability API gives the logits' gene; wide outputs are projected; widths must match."""
    from progenitor.genes.outputs import LOGIT_SKETCH, centred_logits

    gene = get_gene("output_logits")
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((40, 10)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(centred_logits(probs), centred_logits(logits + 3.0), atol=1e-4)

    class _Obs:  # the gene reads only ``outputs`` from an Observation
        def __init__(self, outputs: np.ndarray) -> None:
            self.outputs = outputs

    def score(x: np.ndarray, y: np.ndarray) -> float:
        return gene.compare(gene.extract(_Obs(x)), gene.extract(_Obs(y))).similarity  # type: ignore[arg-type]

    assert score(logits, probs) == pytest.approx(1.0, abs=1e-4)
    assert score(logits, 2.0 * logits) == pytest.approx(1.0, abs=1e-5)  # a temperature keeps the order
    assert abs(score(logits, rng.standard_normal((40, 10)))) < 0.3
    wide = rng.standard_normal((40, 3 * LOGIT_SKETCH))
    value = gene.extract(_Obs(wide))  # type: ignore[arg-type]
    assert value.arrays["logits"].shape == (40, LOGIT_SKETCH)
    near = wide + 0.3 * rng.standard_normal(wide.shape)
    assert score(wide, near) > 0.85 > abs(score(wide, rng.standard_normal(wide.shape))) + 0.5
    with pytest.raises(GeneNotApplicable):
        gene.compare(gene.extract(_Obs(logits)), value)


def test_weight_values_tells_copies_from_relatives(family) -> None:
    """Pruned, float16 and int8 copies agree with their source value by value; a fine-tune
    and an independent model do not."""
    import families

    gene = get_gene("weight_values")

    parent = weight_values(family.parent)
    half = copy_module(family.parent, lambda w: w.half().float())
    int8 = copy_module(family.parent, lambda w: (w * 127 / w.abs().max()).round() * w.abs().max() / 127)
    pruned = copy_module(family.parent, lambda w: w * (w.abs() > w.abs().median()))
    assert gene.compare(parent, weight_values(half)).similarity == 1.0
    assert gene.compare(parent, weight_values(int8)).similarity > 0.95
    pruned_score = gene.compare(parent, weight_values(pruned))
    assert pruned_score.similarity == 1.0 and pruned_score.details["exact"] == 1.0
    assert gene.compare(parent, weight_values(families.fine_tuned(family.parent, seed=5))).similarity < 0.5
    assert gene.compare(parent, weight_values(family.independents[0])).similarity < 0.1


def test_weight_values_mask_test_finds_a_retrained_prune_of_its_source(family) -> None:
    """A copy pruned by magnitude and then retrained (every kept value moved) holds none of its
    source's values, but its zeros are the source's smallest weights: no violation against the
    source, many against a fine-tune of it or an independent model."""
    import families

    gene = get_gene("weight_values")

    def prune_and_retrain(w: torch.Tensor) -> torch.Tensor:
        if w.ndim < 2:
            return w
        kept = w.abs() > w.abs().median()
        return (w + 0.02 * w.abs().max() * torch.randn(w.shape, generator=torch.Generator().manual_seed(0))) * kept

    retrained = weight_values(copy_module(family.parent, prune_and_retrain))
    own = gene.compare(weight_values(family.parent), retrained).details
    assert own["exact"] == 0.0 and own["mask_checked"] >= 32 and own["mask_violations"] == 0
    tuned = gene.compare(weight_values(families.fine_tuned(family.parent, seed=5)), retrained).details
    independent = gene.compare(weight_values(family.independents[0]), retrained).details
    assert tuned["mask_violations"] >= 5 and independent["mask_violations"] > 0.25 * independent["mask_checked"]


def test_weight_values_rows_share_sees_through_per_channel_rescaling(family) -> None:
    """A BatchNorm folded into a convolution rescales each output channel, and a per-channel int8
    copy rounds each on its own grid: the values then disagree with the source's within the
    tensor's rounding step, but agree relative to their rows; a fine-tune agrees with neither."""
    import families

    gene = get_gene("weight_values")

    def folded_int8(w: torch.Tensor) -> torch.Tensor:
        if w.ndim < 2:
            return w
        gain = torch.linspace(0.2, 3.0, w.shape[0]).reshape(-1, *[1] * (w.ndim - 1))
        scaled = w * gain
        step = scaled.abs().flatten(1).max(dim=1).values.reshape(gain.shape) / 127
        return (scaled / step).round() * step

    parent = weight_values(family.parent)
    score = gene.compare(parent, weight_values(copy_module(family.parent, folded_int8)))
    assert score.similarity < 0.9 and score.details["rows"] > 0.99
    tuned = gene.compare(parent, weight_values(families.fine_tuned(family.parent, seed=5)))
    assert tuned.details["rows"] < 0.9


def weight_values(module: torch.nn.Module):
    """The ``weight_values`` gene of a test-family module."""
    return get_gene("weight_values").extract(Observation(pg.load(module, input_shape=(1, 8, 8)), None))


def copy_module(module: torch.nn.Module, change) -> torch.nn.Module:
    """A deep copy of ``module`` with ``change`` applied to every floating tensor of its state."""
    import copy

    out = copy.deepcopy(module)
    out.load_state_dict({k: change(v) if v.is_floating_point() else v for k, v in module.state_dict().items()})
    return out


def test_error_agreement_counts_the_sources_mistakes_the_target_repeats() -> None:
    """Hand-made predictions: the share is over the source's mistakes only, needs labels of the
    same probe set, and refuses a source with too few mistakes."""
    from progenitor.genes.errors import MIN_ERRORS

    gene = get_gene("error_agreement")
    labels = np.arange(100) % 4
    source = labels.copy()
    source[:32] = (labels[:32] + 1) % 4  # wrong on the first 32 probes
    target = labels.copy()
    target[:24] = source[:24]  # repeats 24 of those 32 mistakes ...
    target[40:56] = (labels[40:56] + 2) % 4  # ... and makes 16 of its own

    def value(top: np.ndarray, labels_hash: str = "L") -> pg.genes.GeneValue:
        arrays = {"top1": top.astype(np.int32), "wrong": (top != labels).astype(np.uint8)}
        return pg.genes.GeneValue(arrays, {"n": 100, "width": 4, "labels": labels_hash})

    score = gene.compare(value(source), value(target))
    assert score.similarity == pytest.approx(24 / 32) and score.details == {"source_errors": 32, "repeated": 24}
    assert gene.compare(value(target), value(source)).similarity == pytest.approx(24 / 40)  # directional
    with pytest.raises(GeneNotApplicable, match="labels"):
        gene.compare(value(source), value(target, "other"))
    nearly_right = labels.copy()
    nearly_right[: MIN_ERRORS - 1] = (labels[: MIN_ERRORS - 1] + 1) % 4
    with pytest.raises(GeneNotApplicable, match="fewer than"):
        gene.compare(value(nearly_right), value(target))


def test_probe_labels_load_beside_the_array_and_are_checked(tmp_path, family) -> None:
    """``NAME.labels.npy`` beside ``NAME.npy`` labels the probes (not part of the probe hash); a
    probe set without labels has no ``error_agreement`` gene; bad labels are a clear error."""
    import families

    x, y = families.probes(), families.probe_labels()
    np.save(tmp_path / "p.npy", x)
    plain = pg.load_probes(str(tmp_path / "p.npy"))
    np.save(tmp_path / "p.labels.npy", y)
    labelled = pg.load_probes(str(tmp_path / "p.npy"))
    assert plain.labels is None and list(labelled.labels) == list(y)
    assert plain.hash == labelled.hash and labelled.labels_hash is not None
    model = pg.load(family.parent, input_shape=(1, 8, 8))
    assert "error_agreement" not in pg.extract(model, probes=plain, learned=False).genes
    assert "error_agreement" in pg.extract(model, probes=labelled, learned=False).genes
    np.save(tmp_path / "p.labels.npy", y[:-1])
    with pytest.raises(pg.ProgenitorError, match="96 non-negative integers"):
        pg.load_probes(str(tmp_path / "p.npy"))


def test_mask_tests_side_by_side_equal_the_tensor_by_tensor_rule() -> None:
    """The vectorised mask test over tensors laid side by side gives, summed, what the rule
    gives tensor by tensor (including tensors with nothing kept or nothing zeroed)."""
    from progenitor.genes.values import _mask_tests

    def one(source: np.ndarray, target: np.ndarray) -> tuple[int, int]:
        kept = (target != 0) & (source != 0)
        zeroed = (target == 0) & (source != 0)
        if not kept.any() or not zeroed.any():
            return 0, 0
        smallest = np.abs(source[kept]).min()
        return int(zeroed.sum()), int(np.count_nonzero(np.abs(source[zeroed]) > smallest))

    rng = np.random.default_rng(0)
    for trial in range(200):
        sizes = rng.integers(1, 40, size=rng.integers(1, 6))
        source = rng.standard_normal(sizes.sum()).astype(np.float32)
        target = np.where(rng.random(sizes.sum()) < rng.random(), 0, source + 0.01).astype(np.float32)
        source[rng.random(sizes.sum()) < 0.1] = 0
        if trial % 7 == 0:
            target[: sizes[0]] = 0  # a tensor with nothing kept
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        tensor = np.repeat(np.arange(len(sizes)), sizes)
        per_tensor = [one(source[s : s + n], target[s : s + n]) for s, n in zip(starts, sizes, strict=True)]
        expected = np.sum(per_tensor, axis=0)
        assert _mask_tests(source, target, starts, tensor) == tuple(int(v) for v in expected)
