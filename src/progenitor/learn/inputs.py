"""Fixed-size, architecture-independent inputs of the DNA generator, read from a DNA's genes.

Every block has the same size whatever the model's architecture, depth, width or output size:

* ``behaviour`` (from ``output_geometry``): a count sketch of the probe x probe output-cosine
  matrix. Each pair of probes is hashed from the two probes' *content* keys to a bucket and a
  sign, so the sketch is the same whatever order the probes come in and whatever their number,
  and inner products of sketches estimate inner products of the (standardised) matrices.
* ``weights`` (from ``weight_sketch``): per layer, the Gram matrix of its unit sketches (invariant
  to hidden-unit permutation and to the layer's width), averaged within ``DEPTH_BINS`` bins of
  relative depth.
* ``moments`` (from ``weight_stats``): log-std, kurtosis and sparsity per depth bin, the cues of
  direction (which of two related models is the parent).
* ``data`` (from ``training_data``): the fixed-encoder profile of a training-data sample.

A block whose gene is missing (no weights for a black-box model, no data sample) is zeros with
its mask 0: absent, not faked.
"""

from __future__ import annotations

import numpy as np

from progenitor.dna import DNA
from progenitor.genes.data import FEATURES as DATA_FEATURES

BEHAVIOUR_BUCKETS = 1024
DEPTH_BINS = 4
SKETCH_TRI = 32 * 31 // 2  # weight_sketch stores the off-diagonal upper triangle
BLOCKS = {
    "behaviour": BEHAVIOUR_BUCKETS,
    "weights": DEPTH_BINS * SKETCH_TRI,
    "moments": DEPTH_BINS * 3,
    "data": 2 * DATA_FEATURES,
}
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a well-mixed 64-bit hash of 64-bit integers (vectorised)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + _MIX
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def behaviour_sketch(cosines: np.ndarray, keys: np.ndarray, buckets: int = BEHAVIOUR_BUCKETS) -> np.ndarray:
    """Count sketch of the standardised off-diagonal output cosines, keyed by probe content."""
    n = len(keys)
    rows, cols = np.triu_indices(n, k=1)
    values = cosines.astype(np.float64)
    values = (values - values.mean()) / (values.std() + 1e-9)
    lo = np.minimum(keys[rows], keys[cols]).astype(np.uint64)
    hi = np.maximum(keys[rows], keys[cols]).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _splitmix(_splitmix(lo) ^ (hi * np.uint64(0xD6E8FEB86659FD93)))
    bucket = (h % np.uint64(buckets)).astype(np.int64)
    sign = np.where((h >> np.uint64(63)) == 1, 1.0, -1.0)
    sketch = np.bincount(bucket, weights=sign * values, minlength=buckets)
    return (sketch / np.sqrt(len(values))).astype(np.float32)


def _gram(units: np.ndarray) -> np.ndarray:
    """Off-diagonal upper triangle of a layer's sketch Gram (m x m): independent of its width."""
    x = units.astype(np.float32)
    gram = x.T @ x / len(x)
    return gram[np.triu_indices(len(gram), k=1)].astype(np.float32)


def _depth_binned(values: list[np.ndarray], depths: list[float], bins: int = DEPTH_BINS) -> np.ndarray:
    """Average per-layer vectors within depth bins; an empty bin takes the nearest layer's."""
    stacked = np.stack(values)
    centres = (np.arange(bins) + 0.5) / bins
    which = np.minimum((np.asarray(depths) * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        members = stacked[which == b]
        if len(members) == 0:
            members = stacked[[int(np.argmin(np.abs(np.asarray(depths) - centres[b])))]]
        out.append(members.mean(axis=0))
    return np.concatenate(out).astype(np.float32)


def moments_input(dna: DNA) -> tuple[np.ndarray, float]:
    """The ``moments`` block (``weight_stats`` binned by depth) and its mask, alone: the
    classifier's direction head reads it beside the two embeddings."""
    stats = dna.genes.get("weight_stats")
    if stats is None:
        return np.zeros(BLOCKS["moments"], np.float32), 0.0
    return _depth_binned(list(stats.arrays["moments"]), list(stats.arrays["depth"])), 1.0


def behaviour_input(dna: DNA) -> np.ndarray | None:
    """The ``behaviour`` block (``behaviour_sketch`` of the output geometry), or None without it."""
    out = dna.genes.get("output_geometry")
    if out is None or "probe_keys" not in out.arrays:
        return None
    return behaviour_sketch(out.arrays["cosines"], out.arrays["probe_keys"])


def weights_input(dna: DNA) -> np.ndarray | None:
    """The ``weights`` block (unit-sketch Grams binned by depth), or None without ``weight_sketch``."""
    sketch = dna.genes.get("weight_sketch")
    if sketch is None:
        return None
    layers = sketch.meta["layers"]
    grams = [_gram(sketch.arrays[f"units{i}"]) for i in range(len(layers))]
    return _depth_binned(grams, [layer[4] for layer in layers])


def dna_inputs(dna: DNA) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The generator's input blocks and their presence masks for one DNA."""
    blocks = {name: np.zeros(size, np.float32) for name, size in BLOCKS.items()}
    masks = dict.fromkeys(BLOCKS, 0.0)
    for name, block in (("behaviour", behaviour_input(dna)), ("weights", weights_input(dna))):
        if block is not None:
            blocks[name], masks[name] = block, 1.0
    blocks["moments"], masks["moments"] = moments_input(dna)
    data = dna.genes.get("training_data")
    if data is not None:
        blocks["data"] = np.concatenate([data.arrays["mean"], data.arrays["std"]]).astype(np.float32)
        masks["data"] = 1.0
    return blocks, masks


def stack_inputs(dnas: list[DNA]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Inputs of many DNAs stacked per block: ``(n, size)`` arrays and ``(n,)`` masks."""
    pairs = [dna_inputs(d) for d in dnas]
    blocks = {k: np.stack([p[0][k] for p in pairs]) for k in BLOCKS}
    masks = {k: np.array([p[1][k] for p in pairs], np.float32) for k in BLOCKS}
    return blocks, masks
