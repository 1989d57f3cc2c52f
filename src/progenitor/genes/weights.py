"""White-box gene: permutation-invariant sketches of every weight matrix.

Each layer's units (rows of a dense weight, output channels of a convolution) get a sketch: a
fixed random projection of their weight vector for layers that read the model's input (their
input axis is anchored), or, for layers that read other units, the weighted sum of those units'
sketches. A permutation of hidden units permutes both a layer's rows and the next layer's columns,
which leaves every sketch unchanged, so the sketches of derived models line up without matching
units. Rows are normalised, so per-unit scaling (batch norm folded into a convolution on export)
changes nothing either. The gene stores each layer's unit sketches (units x m, float16); two
models' layers are paired by kind, shape and relative depth (``pair_layers``), their units matched
one-to-one (Hungarian on |cosine|), and the similarity is the mean matched cosine over layers. Of a
layer wider than ``MATCH_UNITS`` a fixed sample of that many units is matched against all units of
the other model's layer (``unit_sample``): each sampled unit of a derived layer still finds its
twin, and the solver's cubic cost stays bounded (a 3072-unit transformer MLP would otherwise cost
seconds per pair). Version 4 introduced the sample; its values are those of version 3.

Version 5: of input tables writing the same units, the smallest full one defines them for the
layers after it (``_replaces``; version 4 chained a BERT's whole encoder to its 2-row token-type
table, so every encoder sketch had rank 2, a RoBERTa's rank 1); layers with a single input are
left out of the comparison (``Layer.tells_units``); embedding tables are told by their module's
name (``models.naming.is_embedding``: a projection named after embeddings is a dense layer); and
separate attention projections are chained as below (version 4 chained key to query and value to
key). Every image model and GPT-2 layout has the values of version 4.

The sketches are stored in the model's own unit order, so the matching also says whether the two
models' units are *aligned*: a model derived without a permutation matches unit i to unit i, an
independent model (or a copy that went through a permutation) does not. The ``aligned`` detail
(the fraction of matched hidden units matched to their own index) tells a model's direct ancestor from a
permuted copy of it, which has the same sketches; lineage trees use it (``progenitor.index``).

Alignment is also evidence with an exact null. The hidden units of an independently trained model
are exchangeable (initialised i.i.d., trained symmetrically), so relative to another model its
unit labels are a uniformly random permutation, and the number of units the matching sends to
their own index is the number of fixed points of a random permutation: P(at least k) <= 1/k!
(also among a sample of s of a layer's n units: k given units land on their own index with
probability (n-k)!/n!, and C(s, k) (n-k)!/n! <= 1/k! for s <= n).
The ``alignment_p`` detail is that bound for the most aligned layer, times the number of layers
(Bonferroni, valid however the layers depend on each other). It needs no calibration, and it
survives derivations that move weights far (heavy noise then retraining) as long as no one
permuted the units; the verdict merges it with the gene's calibrated p-value
(``progenitor.verdict``). Models that share a random initialisation are not independent, and
the test says so. Caveat: where units are only exchangeable within a structure (attention heads:
permutations within and of heads), the labels are a random element of that smaller group, and
1/k! is then an approximation rather than a bound; on the zoo's ViTs and language models no
independent pair reached alpha (BENCHMARKS.md).

Layers are chained by unit count: a layer reads the latest layer with as many units as it has
inputs, which is exact for MLP and convolution stacks. An attention's separate query, key and
value projections (told by module name) all read the stream, and its output projection reads the
values, so permutations within heads (query/key dimensions together, value dimensions with the
output projection's columns) are seen through as well. Not yet: fused projections (GPT-2's
``c_attn``, torch's ``in_proj_weight``), whose output projection reads the stream's latest
layer, and grouped-query attention, whose output projection is wider than the values.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import linear_sum_assignment

from progenitor._memo import per_object
from progenitor.genes._linalg import (
    correlation,
    normalize_rows,
    seeded_gaussian,
    seeded_signs,
)
from progenitor.genes._registry import Gene, GeneNotApplicable, GeneScore, GeneValue, register_gene
from progenitor.genes.observe import Observation
from progenitor.models.naming import is_embedding, module_leaf

SKETCH_DIM = 32
MATCH_UNITS = 64  # units of a layer matched (a seeded sample of wider layers)
CHUNK = 1 << 16  # values a float64 pass over weights takes at a time (512 KiB: stays in cache)
# Module names of separate attention projections (BERT, DistilBERT, T5, OPT, Llama and their
# kin); fused ones (GPT-2's ``c_attn``, torch's ``in_proj_weight``) are one layer.
_ATTENTION_NAMES = {
    "query": ("query", "q", "q_proj", "q_lin", "wq", "to_q"),
    "key": ("key", "k", "k_proj", "k_lin", "wk", "to_k"),
    "value": ("value", "v", "v_proj", "v_lin", "wv", "to_v"),
}


@dataclass(frozen=True)
class Layer:
    """A weight matrix seen as units x inputs: its name, kind, units, fan-in shape and depth."""

    name: str
    kind: str  # "dense", "conv" or "embedding"
    units: int
    fan_in: tuple[int, ...]
    depth: float  # position in forward order, 0..1

    def shape_key(self) -> tuple[Any, ...]:
        return (self.kind, self.units, self.fan_in)

    @property
    def tells_units(self) -> bool:
        """Whether the sketches can tell this layer's units apart. Of a layer with a single input
        (a RoBERTa's 1-row token-type table) every unit's sketch is one vector up to its sign: any
        two such layers match perfectly, and the solver's tie-breaking would put every unit at its
        own index (independent RoBERTa models had been called derived on it, p 1e-53)."""
        return math.prod(self.fan_in) > 1


def layer_views(weights: dict[str, np.ndarray]) -> list[tuple[str, str, np.ndarray]]:
    """(name, kind, units x channels x positions array) for every matrix-like weight, in order."""
    views = []
    for name, w in weights.items():
        # Tensors with a leading axis of 1 (class tokens, position tables of shape (1, n, d)) are
        # not layers of units: viewing them as convolutions would chain later layers to them.
        if w.ndim < 2 or min(w.shape) == 0 or (w.ndim > 2 and w.shape[0] == 1):
            continue
        if w.ndim == 2 and is_embedding(name):
            # An embedding's rows are tokens (fixed ids); its units are the columns.
            views.append((name, "embedding", w.T[:, :, None]))
        elif w.ndim == 2:
            views.append((name, "dense", w[:, :, None]))
        else:
            views.append((name, "conv", w.reshape(w.shape[0], w.shape[1], -1)))
    return views


def _attention_role(name: str) -> str | None:
    """"query", "key" or "value" for an attention's separate projections (by module name), else None."""
    leaf = module_leaf(name)
    return next((role for role, names in _ATTENTION_NAMES.items() if leaf in names), None)


def sketch_layers(weights: dict[str, np.ndarray], dim: int = SKETCH_DIM) -> list[tuple[Layer, np.ndarray]]:
    """Unit sketches (units x dim, unit rows) for every matrix-like weight, chained through depth.

    A layer that reads other units sees each input column multiplied by that unit's *gain* (the
    norm of its incoming weights, times its BatchNorm's ``|gamma| / sqrt(var + eps)`` when one
    follows): scaling a ReLU unit's incoming weights by ``c`` and its outgoing weights by ``1/c``
    leaves the function and this product unchanged, so the sketches are invariant to that
    rescaling too (and a BatchNorm folded into its convolution on export gives the same gains).
    """
    views = layer_views(weights)
    names = list(weights)
    position = {name: i for i, name in enumerate(names)}
    latest: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # unit count -> (sketch, gains) of the latest layer
    # An attention's separate query, key and value projections all read the stream: none is read
    # by the next. Query and key units meet only in the attention scores, which no weight reads;
    # the value units are what the output projection reads, once the three are done.
    values: tuple[int, np.ndarray, np.ndarray] | None = None
    anchored: dict[int, int | None] = {}  # unit count -> inputs of the input layer that wrote it, None: a chained one
    out = []
    for index, (name, kind, w) in enumerate(views):
        units, channels, positions = w.shape
        role = _attention_role(name)
        if values is not None and role is None:
            latest[values[0]] = values[1:]
            anchored[values[0]] = None
            values = None
        if kind == "dense" and channels not in latest:
            w, channels, positions = _unflatten(w, {k: v[0] for k, v in latest.items()})
        # One input channel is the input itself (a grey image), never a layer's single unit.
        chained = kind != "embedding" and channels > 1 and channels in latest
        if chained:  # weights as seen from balanced inputs: each input column times its unit's gain
            w = w * latest[channels][1][None, :, None].astype(w.dtype)
        stop = position[views[index + 1][0]] if index + 1 < len(views) else len(names)
        gains = row_norms(w.reshape(units, -1))
        gains = gains * _norm_gain(weights, names[position[name] + 1 : stop], units)
        gains = gains / max(float(gains.mean()), 1e-30)  # only ratios matter; keeps deep products finite
        if chained:
            inputs = latest[channels][0]  # channels x dim: this layer reads those units
            w = normalize_rows(w.reshape(units, -1)).reshape(units, channels, positions)
            signs = seeded_signs(positions, dim, "position")
            sketch = np.einsum("ucp,cd,pd->ud", w, inputs, signs, optimize=True)
        else:
            w = normalize_rows(w.reshape(units, -1))
            anchor = seeded_gaussian(channels * positions, dim, "anchor")
            sketch = w @ anchor
        sketch = normalize_rows(sketch.astype(np.float32))
        replaces = units not in latest or _replaces(channels * positions, anchored[units], dim)
        if role is None and (chained or replaces):
            latest[units] = (sketch, gains)
            anchored[units] = None if chained else channels * positions
        elif role == "value":
            values = (units, sketch, gains)
        depth = index / max(len(views) - 1, 1)
        out.append((Layer(name, kind, units, (channels, positions), depth), sketch))
    return out


def _replaces(fan_in: int, current: int | None, dim: int) -> bool:
    """Whether an input layer of ``fan_in`` inputs defines its units for the layers after it, where
    an input layer of ``current`` inputs (None: a chained layer) has defined them so far.

    Input layers that write the same units (a BERT's word, position and token-type tables) are
    read through one, whatever their order: not one of fewer inputs than ``dim``, which would cap
    the rank of every sketch after it (a 2-row token-type table: rank 2), and of the full ones the
    smallest: the position table rather than the vocabulary, most of whose rows training barely
    moves (on the text zoo's validation families, derived against independent BERT pairs AUC 1.000
    against 0.944 through the vocabulary, all pairs 0.980 against 0.959; GPT-2's then reads its
    position table, as in version 4).
    """
    if fan_in < dim:
        return False
    return current is None or current < dim or fan_in < current


def _norm_gain(weights: dict[str, np.ndarray], between: list[str], units: int) -> np.ndarray:
    """``|gamma| / sqrt(running_var + eps)`` of a BatchNorm among the state-dict keys ``between`` a
    layer and the next, else 1.

    Found by state-dict order and names (``P.weight`` and ``P.running_var`` of ``units`` values),
    the layout torch uses; a model without such buffers (an ONNX export folds the norm into the
    convolution) gets 1.
    """
    for key in between:
        if not key.endswith(".running_var"):
            continue
        prefix = key[: -len("running_var")]
        gamma, var = weights.get(prefix + "weight"), weights[key]
        if gamma is not None and gamma.shape == (units,) and var.shape == (units,):
            return np.abs(gamma.astype(np.float64)) / np.sqrt(var.astype(np.float64) + 1e-5)
    return np.ones(units)


def _unflatten(w: np.ndarray, latest: dict[int, np.ndarray]) -> tuple[np.ndarray, int, int]:
    """A dense layer reading a flattened (channels, positions) map is viewed as a convolution.

    Its columns then follow the channel sketches, so permuting the channels of the map (which
    permutes whole groups of columns) leaves its sketch unchanged. The most recent unit count
    that divides the fan-in is taken as the channel count.
    """
    units, fan_in, _ = w.shape
    for channels in reversed(list(latest)):
        if fan_in % channels == 0 and fan_in // channels > 1:
            return w.reshape(units, channels, fan_in // channels), channels, fan_in // channels
    return w, fan_in, 1


@register_gene
class WeightSketch(Gene):
    """Permutation-invariant unit sketches of every weight matrix, compared by matching units."""

    name: ClassVar[str] = "weight_sketch"
    version: ClassVar[int] = 5  # 5: BERT-style tables and separate attention projections; 4: unit sample
    access = "white"
    needs = "weights"
    uses_probes: ClassVar[bool] = False
    description: ClassVar[str] = "chained random sketches of unit weight vectors, units matched per layer"

    def extract(self, obs: Observation) -> GeneValue:
        layers = sketch_layers(obs.weights)
        if not layers:
            raise GeneNotApplicable("no weight matrices")
        arrays = {f"units{i}": sketch.astype(np.float16) for i, (_, sketch) in enumerate(layers)}
        meta_layers = [[la.name, la.kind, la.units, list(la.fan_in), la.depth] for la, _ in layers]
        return GeneValue(arrays, {"layers": meta_layers, "dim": SKETCH_DIM})

    def compare(self, a: GeneValue, b: GeneValue) -> GeneScore:
        layers_a, layers_b = _layers(a), _layers(b)
        pairs = [(i, j) for i, j in pair_layers(layers_a, layers_b)
                 if layers_a[i].tells_units and layers_b[j].tells_units]
        if not pairs:
            raise GeneNotApplicable("no weight matrices of compatible kind to pair")
        matches = [match_units(a.arrays[f"units{i}"], b.arrays[f"units{j}"]) for i, j in pairs]
        scores = [cosine for cosine, _, _ in matches]
        aligned, fixed, matched = _aligned(layers_a, layers_b, pairs, [(same, n) for _, same, n in matches])
        alignment_p = float(f"{alignment_p_value(fixed):.6g}")
        detail = [
            {
                "source": layers_a[i].name,
                "target": layers_b[j].name,
                "similarity": round(s, 4),
                "same_shape": layers_a[i].shape_key() == layers_b[j].shape_key(),
            }
            for (i, j), s in zip(pairs, scores, strict=True)
        ]
        return GeneScore(
            float(np.mean(scores)),
            {
                "paired": len(pairs),
                "unpaired_source": len(layers_a) - len(pairs),
                "unpaired_target": len(layers_b) - len(pairs),
                "max": round(max(scores), 4),
                "aligned": round(aligned, 4),
                "fixed_points": fixed,
                "matched_units": matched,
                "alignment_p": alignment_p,
                "layers": detail,
            },
            exact_p_value=alignment_p,
        )


def match_units(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """Mean |cosine| of units matched one-to-one (Hungarian) between two layers' unit sketches,
    how many units are matched to the unit of the same index, and how many were matched.

    Matching units rather than comparing second moments is what separates a derived layer (each
    unit has its twin) from an independently trained one that spans the same data directions.
    The layer with fewer units (``a`` on a tie) has its units matched, at most ``MATCH_UNITS`` of
    them (``unit_sample``) against every unit of the other: a derived layer's sampled units each
    still find their twin, and the solver's cubic cost stays bounded on wide layers.
    """
    if len(a) > len(b):
        return match_units(b, a)
    rows = unit_sample(len(a))
    # Every unit of ``a``: no copy, unless both sides are one array, whose product with itself
    # BLAS computes as a symmetric one (other rounding than the general product gives).
    units = _float32(a) if len(rows) == len(a) and a is not b else _float32(a)[rows]
    sims = units @ _float32(b).T
    np.abs(sims, out=sims)
    picked, cols = _max_assignment(sims)
    matched = sims[picked, cols]
    # A unit counts as matched to itself only with a nonzero cosine: zero rows (removed units)
    # tie with everything, and the solver would break those ties by index.
    same = (rows[picked] == cols) & (matched > 1e-3)
    return float(matched.mean()), int(same.sum()), len(rows)


@functools.lru_cache(maxsize=1024)
def unit_sample(units: int, count: int = MATCH_UNITS) -> np.ndarray:
    """Sorted indices of at most ``count`` of a layer's units, the same for every layer of that
    width on every machine (all of them for narrower layers). Read-only: kept for reuse."""
    rows = np.arange(units) if units <= count else np.sort(
        np.random.default_rng(units).choice(units, size=count, replace=False)
    )
    rows.setflags(write=False)
    return rows


# A search compares one target with many candidates, and each stored sketch (float16) with every
# layer it is paired with: the float32 copy is made once per array and kept while it lives.
_float32 = per_object(lambda sketch: sketch.astype(np.float32))


def _max_assignment(sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one matching of largest total similarity (rows ascending, as the Hungarian solver
    returns it).

    When every unit of the smaller side has a different best match, those best matches are the
    optimum (their sum bounds every matching from above), which is the usual case for related
    layers; only otherwise does the Hungarian solver run.
    """
    n, m = sims.shape
    if n <= m:
        best = sims.argmax(axis=1)
        if _distinct(best):
            return np.arange(n), best
    else:
        best = sims.argmax(axis=0)
        if _distinct(best):
            order = np.argsort(best)
            return best[order], np.arange(m)[order]
    return linear_sum_assignment(-sims)


def _distinct(values: np.ndarray) -> bool:
    """Whether no value repeats (a sort: ``np.unique`` costs twice as long on a layer's units)."""
    ordered = np.sort(values)
    return bool((ordered[1:] != ordered[:-1]).all())


def _aligned(
    a: list[Layer], b: list[Layer], pairs: list[tuple[int, int]], same: list[tuple[int, int]]
) -> tuple[float, list[int], list[int]]:
    """Fraction of matched hidden units matched to their own index over same-shape paired layers,
    and per such layer that count and the units matched (``same``: per pair, units matched to
    their own index and units matched).

    A model's last layer is left out: its units are the output classes, in a fixed order in every
    model of a task, so they line up whether or not the models are related.
    """
    last_a, last_b = len(a) - 1, len(b) - 1
    fixed: list[int] = []
    matched: list[int] = []
    for (i, j), (k, n) in zip(pairs, same, strict=True):
        if i == last_a or j == last_b or a[i].shape_key() != b[j].shape_key() or a[i].units < 2:
            continue
        fixed.append(k)
        matched.append(n)
    total = sum(matched)
    return (sum(fixed) / total if total else 0.0), fixed, matched


def alignment_p_value(fixed_points: list[int]) -> float:
    """P-value of per-layer fixed-point counts under independence: ``min(1, L * min_l 1/k_l!)``.

    For a uniformly random permutation of n units, at most n!/k! permutations fix k given units
    or more, so P(K >= k) <= 1/k! whatever n; Bonferroni over the L layers.
    """
    if not fixed_points:
        return 1.0
    log_p = -math.lgamma(max(fixed_points) + 1) + math.log(len(fixed_points))
    return min(1.0, math.exp(log_p))


@per_object
def _layers(value: GeneValue) -> list[Layer]:
    return [Layer(n, k, u, tuple(f), d) for n, k, u, f, d in value.meta["layers"]]


def pair_layers(a: list[Layer], b: list[Layer]) -> list[tuple[int, int]]:
    """Pair layers of two models explicitly: same kind required; same shape and depth preferred.

    Solved as an assignment (Hungarian) on a cost that is 0 for an identical shape at the same
    relative depth, grows with the depth difference, and adds a penalty when shapes differ (as
    after structured pruning or a new head). Layers of different kinds are never paired, and a
    pair whose cost exceeds the penalty plus half the depth range is dropped rather than forced.
    """
    if not a or not b:
        return []
    return list(_pairing(tuple((la.shape_key(), la.depth) for la in a), tuple((lb.shape_key(), lb.depth) for lb in b)))


@functools.lru_cache(maxsize=4096)
def _pairing(
    a: tuple[tuple[tuple[Any, ...], float], ...], b: tuple[tuple[tuple[Any, ...], float], ...]
) -> tuple[tuple[int, int], ...]:
    """``pair_layers`` on the layers' (shape key, depth): the same for every pair of models of two
    architectures, so a search solves it once per pair of architectures, not per candidate."""
    big = 1e6
    cost = np.full((len(a), len(b)), big)
    for i, (shape_a, depth_a) in enumerate(a):
        for j, (shape_b, depth_b) in enumerate(b):
            if shape_a[0] != shape_b[0]:  # the kinds differ
                continue
            shape_penalty = 0.0 if shape_a == shape_b else 1.0
            cost[i, j] = shape_penalty + abs(depth_a - depth_b)
    rows, cols = linear_sum_assignment(cost)
    return tuple((int(i), int(j)) for i, j in zip(rows, cols, strict=True) if cost[i, j] <= 1.5)


def layer_moments(w: np.ndarray) -> tuple[float, float, float]:
    """log standard deviation, excess kurtosis and fraction of exact zeros of a weight tensor.

    Summed in float64 a cache-sized chunk at a time (``CHUNK`` values), in memory order: a float64
    copy of a whole 11.7M-value embedding table and its temporaries cost three times as much. The
    moments are stored as float32, which the changed summation order does not reach (the same
    float32 values on every zoo model and on all-MiniLM-L6-v2's 103 tensors).
    """
    x = w.ravel(order="K")  # memory order: a view of a contiguous tensor or a transposed table
    n = x.size
    zeros = int(np.count_nonzero(x == 0)) / n
    mean = sum(float(np.add.reduce(x[i : i + CHUNK], dtype=np.float64)) for i in range(0, n, CHUNK)) / n
    m2 = m4 = 0.0
    centred = np.empty(min(n, CHUNK), np.float64)
    for i in range(0, n, CHUNK):
        part = x[i : i + CHUNK]
        z = centred[: len(part)]
        np.subtract(part, mean, out=z, dtype=np.float64)
        m2 += float(z @ z)  # central moments as dot products: no temporaries
        np.multiply(z, z, out=z)
        m4 += float(z @ z)
    m2 /= n
    if m2 == 0:
        return float(np.log(1e-12)), 0.0, zeros
    return 0.5 * float(np.log(m2)), m4 / n / m2**2 - 3.0, zeros


def row_norms(rows: np.ndarray) -> np.ndarray:
    """Float64 L2 norm of each row of a 2-d array, without a float64 copy of the whole array.

    The sums are those ``np.linalg.norm`` of the float64 copy takes, in its order (the same norms
    on all 5,667 layer views of the standard and text zoos and all-MiniLM-L6-v2): a few contiguous
    rows at a time, each row summed on its own; an embedding table viewed transposed (its rows are
    the table's columns) a block of the table's rows at a time, each column's running sum carried
    into the next block, which is how numpy reduces such a view. A 30522 x 384 table: 25 -> 9 ms.
    """
    if rows.flags.c_contiguous:
        step = max(1, CHUNK // max(rows.shape[1], 1))
        parts = [np.linalg.norm(rows[i : i + step].astype(np.float64), axis=1) for i in range(0, len(rows), step)]
        return np.concatenate(parts) if parts else np.zeros(0)
    if rows.flags.f_contiguous and rows.ndim == 2:
        table = rows.T
        step = max(1, CHUNK // max(table.shape[1], 1))
        sums = np.zeros((1, table.shape[1]))
        for i in range(0, len(table), step):
            block = table[i : i + step].astype(np.float64)
            np.multiply(block, block, out=block)
            sums = np.add.reduce(np.concatenate([sums, block]), axis=0, keepdims=True)
        return np.sqrt(sums[0])
    return np.linalg.norm(rows.astype(np.float64), axis=1)


MIN_NONZERO_FOR_PRECISION = 64
PRECISION_SAMPLE = 1 << 18  # values read per tensor for the precision cue (whole rows)


def layer_precision(w: np.ndarray) -> tuple[float, float]:
    """How lossy a weight tensor's values look: (fraction exactly representable in float16,
    1 - distinct nonzero values / nonzero values).

    A float32 model trained as such has almost no float16-exact weights (about 1 in 8,000 by
    chance) and no repeated nonzero values; a copy cast to float16 or bfloat16 and back is all
    float16-exact, and a quantized copy (int8 on a grid of at most 256 values per tensor or
    channel) repeats values. Both are lossy conversions that only go one way, so they tell a
    converted copy from its original. Exact zeros are left out (pruning makes them). Tensors
    with fewer than 64 nonzero values say nothing (0, 0). Of a tensor larger than
    ``PRECISION_SAMPLE`` values, evenly spaced whole rows (units) of about that many values are
    read: counting distinct values sorts them, which on a transformer's embedding table took a
    second, and whole rows keep per-unit quantization grids intact.
    """
    if w.size > PRECISION_SAMPLE and w.ndim > 1:
        rows = w.reshape(w.shape[0], -1)
        keep = max(1, PRECISION_SAMPLE // rows.shape[1])
        if keep < rows.shape[0]:
            w = rows[np.unique(np.linspace(0, rows.shape[0] - 1, keep).round().astype(int))]
    x = np.asarray(w, dtype=np.float32).ravel(order="K")  # both shares ignore the values' order
    x = x[x != 0]
    if x.size < MIN_NONZERO_FOR_PRECISION:
        return 0.0, 0.0
    fp16_exact = float(np.count_nonzero(_float16_exact(x)) / x.size)
    ordered = np.sort(x)
    distinct = 1 + np.count_nonzero(ordered[1:] != ordered[:-1]) if not np.isnan(ordered[-1]) else np.unique(x).size
    repeated = 1.0 - distinct / x.size
    return fp16_exact, float(repeated)


# float32 bit patterns of float16's normal range, 2**-14 .. 65504
_HALF_NORMAL_LOW, _HALF_NORMAL_HIGH = 0x38800000, 0x477FE000


def _float16_exact(x: np.ndarray) -> np.ndarray:
    """Which float32 values float16 holds exactly (what a round trip through float16 keeps),
    from their bits: twice as fast as the round trip.

    In float16's normal range a float32 must have its 13 lowest mantissa bits zero (float16 keeps
    10 of 23). The rest (subnormal, zero, huge, infinite or NaN values: rare among weights) take
    the general rule, ``_float16_exact_any``."""
    bits = x.view(np.uint32)
    magnitude = bits & 0x7FFFFFFF
    held = ((bits & 0x1FFF) == 0) & (magnitude >= _HALF_NORMAL_LOW) & (magnitude <= _HALF_NORMAL_HIGH)
    rare = np.flatnonzero((magnitude < _HALF_NORMAL_LOW) | (magnitude > _HALF_NORMAL_HIGH))
    if rare.size:
        held[rare] = _float16_exact_any(x[rare])
    return held


def _float16_exact_any(x: np.ndarray) -> np.ndarray:
    """``_float16_exact`` for any float32: below the normal range float16's subnormals keep one
    bit fewer per step down to 2**-24; zeros and infinities convert exactly, NaNs never compare
    equal."""
    bits = x.view(np.uint32)
    exponent = ((bits >> 23) & 0xFF).astype(np.int32) - 127
    # Mantissa bits float16 cannot hold: 13 for normals, 13 + (-14 - e) for subnormals.
    dropped = np.clip(13 + np.maximum(-14 - exponent, 0), 0, 24).astype(np.uint32)
    mask = (np.uint32(1) << dropped) - np.uint32(1)
    held = ((bits & mask) == 0) & (exponent >= -24) & (exponent <= 15)
    magnitude = bits & 0x7FFFFFFF
    return held | (magnitude == 0) | (magnitude == 0x7F800000)


@register_gene
class WeightStats(Gene):
    """Per-layer weight moments (scale, kurtosis, sparsity) and precision, in forward order.

    Too coarse to tell lineage alone (a model and an independent look-alike share them), these
    moments carry direction: fine-tuning raises kurtosis (MoTHer, Horwitz et al. 2025), pruning
    raises sparsity, Gaussian noise pulls kurtosis towards zero, and lossy conversions (float16,
    int8) leave float16-exact or repeated values (``layer_precision``). The learned DNA and the
    lineage trees use them; the verdict does not (its similarity is reported with no calibrated
    null).
    """

    name: ClassVar[str] = "weight_stats"
    version: ClassVar[int] = 3  # 3: the precision cue reads at most ~262k values (whole rows) per tensor
    access = "white"
    needs = "weights"
    uses_probes: ClassVar[bool] = False
    description: ClassVar[str] = "per-layer log-std, kurtosis, sparsity and precision (direction cues)"
    role: ClassVar[str] = "direction"

    def extract(self, obs: Observation) -> GeneValue:
        views = layer_views(obs.weights)
        if not views:
            raise GeneNotApplicable("no weight matrices")
        moments = np.array([layer_moments(w) for _, _, w in views], dtype=np.float32)
        precision = np.array([layer_precision(w) for _, _, w in views], dtype=np.float32)
        depth = np.linspace(0, 1, len(views), dtype=np.float32) if len(views) > 1 else np.zeros(1, np.float32)
        return GeneValue(
            {"moments": moments, "precision": precision, "depth": depth}, {"layers": [n for n, _, _ in views]}
        )

    def compare(self, a: GeneValue, b: GeneValue) -> GeneScore:
        ma, mb = a.arrays["moments"], b.arrays["moments"]
        # Compare the kurtosis profiles over depth (interpolated to a common grid).
        grid = np.linspace(0, 1, 16)
        ka = np.interp(grid, a.arrays["depth"], ma[:, 1])
        kb = np.interp(grid, b.arrays["depth"], mb[:, 1])
        return GeneScore(
            correlation(ka, kb),
            {
                "mean_kurtosis": [round(float(ma[:, 1].mean()), 4), round(float(mb[:, 1].mean()), 4)],
                "mean_sparsity": [round(float(ma[:, 2].mean()), 4), round(float(mb[:, 2].mean()), 4)],
            },
        )
