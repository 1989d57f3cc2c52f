"""White-box gene: raw weight values at fixed positions, to tell a copy's source from its relatives.

Many derivations copy weights: pruning keeps the surviving ones exactly, quantization and float16
conversion keep each within a rounding step, a head fine-tune keeps the body, an export keeps
all. A model made that way matches the model it was made *from* value by value, and matches its
siblings and cousins (each changed differently from a common ancestor) only as loosely as
independent fine-tunes do. So where similarity genes cannot tell a parent from a sibling (both
are close), this one can: it samples each weight tensor at positions fixed by the tensor's shape
and compares the values.

The similarity is the share of sampled positions, nonzero in both models, whose values agree
within an int8 rounding step of the larger tensor (``max |w| / 254``); exact agreement is
reported beside it, and so is the share that agrees *relative to each value's row* (``rows``:
values divided by their unit's largest weight, agreeing within 1/254). An export that folds a
BatchNorm into the convolution before it rescales each output channel, and a per-channel int8
copy rounds each channel on its own grid: the rows share sees through both (version 2 stores each
sampled value's row maximum for it). It is a lineage-ranking cue (role ``direction``: search and trees use it,
the verdict does not): for independent models it is near zero whatever their training, and a
permutation of hidden units moves the values away from the sampled positions.
"""

from __future__ import annotations

import functools
import hashlib
from typing import ClassVar

import numpy as np

from progenitor.genes._registry import Gene, GeneNotApplicable, GeneScore, GeneValue, register_gene
from progenitor.genes.observe import Observation

SAMPLES = 128  # positions per tensor
INT8_STEP = 254.0  # symmetric int8 rounding: |error| <= max|w| / 127 / 2


@functools.lru_cache(maxsize=256)
def sample_positions(shape: tuple[int, ...], count: int = SAMPLES) -> np.ndarray:
    """Flat indices of ``count`` positions of a tensor of ``shape``, the same for every tensor
    of that shape on every machine (read-only: made once per shape and process)."""
    size = int(np.prod(shape))
    seed = int.from_bytes(hashlib.sha256(f"weight_values:{shape}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(size, size=min(count, size), replace=False))
    positions.setflags(write=False)
    return positions


def _largest_magnitude(w: np.ndarray) -> float:
    """``max |w|`` (NaN if any value is), without the copy ``np.abs`` makes of a float tensor."""
    if not np.issubdtype(w.dtype, np.floating):
        return float(np.abs(w).max())
    return float(max(w.max(), -w.min())) + 0.0  # + 0.0: an all -0.0 tensor gives 0.0, as |w| does


@register_gene
class WeightValues(Gene):
    """Share of sampled weight values two models agree on (within int8 rounding), same-shape tensors."""

    name: ClassVar[str] = "weight_values"
    version: ClassVar[int] = 2  # 2: each sampled value's row maximum, for the ``rows`` share
    access = "white"
    needs = "weights"
    uses_probes: ClassVar[bool] = False
    description: ClassVar[str] = "weight values at shape-fixed positions: copies vs relatives (lineage ranking)"
    role: ClassVar[str] = "direction"
    permutation_invariant: ClassVar[bool] = False  # by design: it tests values in place

    def extract(self, obs: Observation) -> GeneValue:
        tensors = [(n, w) for n, w in obs.weights.items() if w.ndim >= 2 and w.size > 1]
        if not tensors:
            raise GeneNotApplicable("no weight matrices")
        arrays: dict[str, np.ndarray] = {}
        shapes, absmax = [], []
        for i, (_, w) in enumerate(tensors):
            positions = sample_positions(w.shape)
            rows = w.reshape(w.shape[0], -1)
            arrays[f"values{i}"] = w[np.unravel_index(positions, w.shape)].astype(np.float32)
            # Only the sampled values' rows, and the largest magnitude without an |w| copy: the same
            # values as from every row of the whole tensor (maxima are exact), at a fraction of
            # the cost on a 22.7M-weight transformer.
            arrays[f"rowmax{i}"] = np.abs(rows[positions // rows.shape[1]]).max(axis=1).astype(np.float32)
            shapes.append(list(w.shape))
            absmax.append(_largest_magnitude(w))
        arrays["absmax"] = np.array(absmax, np.float32)
        return GeneValue(arrays, {"shapes": shapes})

    def compare(self, a: GeneValue, b: GeneValue) -> GeneScore:
        pairs = pair_by_shape(a.meta["shapes"], b.meta["shapes"])
        if not pairs:
            raise GeneNotApplicable("no weight tensors of the same shape")
        # The paired tensors' samples side by side (paired tensors share a shape, so the same
        # sampled positions): one pass of array operations instead of one per tensor. Counts
        # are the same integers as tensor by tensor; each value is tested against its own
        # tensor's thresholds.
        x = np.concatenate([a.arrays[f"values{i}"] for i, _ in pairs])
        y = np.concatenate([b.arrays[f"values{j}"] for _, j in pairs])
        rx = np.concatenate([a.arrays[f"rowmax{i}"] for i, _ in pairs])
        ry = np.concatenate([b.arrays[f"rowmax{j}"] for _, j in pairs])
        sizes = np.array([a.arrays[f"values{i}"].size for i, _ in pairs])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        tensor = np.repeat(np.arange(len(pairs)), sizes)
        checked, violations = _mask_tests(x, y, starts, tensor)
        both = (x != 0) & (y != 0)  # pruning zeroes weights; a zero says nothing about copying
        steps = np.array(
            [max(float(a.arrays["absmax"][i]), float(b.arrays["absmax"][j])) / INT8_STEP * 1.001 for i, j in pairs],
            np.float32,  # as the float32 samples are compared with a Python float, one per tensor
        )
        x, y, rx, ry, tensor = x[both], y[both], rx[both], ry[both], tensor[both]
        compared = x.size
        if compared == 0:
            raise GeneNotApplicable("no sampled weight is nonzero in both models")
        near = int(np.count_nonzero(np.abs(x - y) <= steps[tensor]))
        exact = int(np.count_nonzero(x == y))
        rows = int(np.count_nonzero(np.abs(x / rx - y / ry) <= 1.001 / INT8_STEP))
        return GeneScore(
            near / compared,
            {"tensors": len(pairs), "values": compared, "exact": round(exact / compared, 4),
             "rows": round(rows / compared, 4), "mask_checked": checked, "mask_violations": violations},
        )


def _mask_tests(source: np.ndarray, target: np.ndarray, starts: np.ndarray, tensor: np.ndarray) -> tuple[int, int]:
    """How well the target's zeros fit magnitude pruning of the source, over sampled values of
    tensors laid side by side (``starts``: where each tensor begins; ``tensor``: each value's).

    Per tensor: the positions where the target is zero and the source is not (checked), and how
    many of them hold a source value larger in magnitude than the smallest the target kept
    (violations); a tensor with no kept or no zeroed value counts nothing. Summed over tensors.

    Pruning by magnitude zeroes the source's smallest weights, so a pruned child of the source,
    retrained afterwards with its mask or not, has no violations against it (nor against a copy
    of it pruned less: the same weights are the smallest). A relative changed by training moves
    weights across the pruning threshold.
    """
    kept = (target != 0) & (source != 0)
    zeroed = (target == 0) & (source != 0)
    magnitude = np.abs(source)
    smallest_kept = np.minimum.reduceat(np.where(kept, magnitude, np.inf), starts)
    counts = (np.add.reduceat(kept, starts) > 0) & (np.add.reduceat(zeroed, starts) > 0)
    zeroed &= counts[tensor]
    return int(zeroed.sum()), int(np.count_nonzero(zeroed & (magnitude > smallest_kept[tensor])))


def pair_by_shape(a: list[list[int]], b: list[list[int]]) -> list[tuple[int, int]]:
    """The k-th tensor of each shape in ``a`` with the k-th tensor of that shape in ``b``."""
    positions: dict[tuple[int, ...], list[int]] = {}
    for j, shape in enumerate(b):
        positions.setdefault(tuple(shape), []).append(j)
    seen: dict[tuple[int, ...], int] = {}
    pairs = []
    for i, shape in enumerate(a):
        key = tuple(shape)
        k = seen.get(key, 0)
        if k < len(positions.get(key, [])):
            pairs.append((i, positions[key][k]))
        seen[key] = k + 1
    return pairs
