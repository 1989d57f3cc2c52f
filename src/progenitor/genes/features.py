"""Gray-box gene: representation similarity of hidden layers (linear CKA, as in REEF).

For up to ``MAX_LAYERS`` hidden layers spread over the depth, the gene keeps the normalised,
centred linear kernel (probe x probe Gram of the layer's activations). Linear CKA between two
layers is the inner product of their kernels; it is invariant to permutations and rotations of
units and to isotropic scaling. Two models score the mean, over the source's layers, of the best
CKA with any target layer, so models of different depth and width compare.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np

from progenitor._memo import per_object
from progenitor.genes._linalg import upper_triangle
from progenitor.genes._registry import Gene, GeneNotApplicable, GeneScore, GeneValue, register_gene
from progenitor.genes.observe import Observation

MAX_LAYERS = 12
MAX_PROBES = 128


def centred_kernel(x: np.ndarray) -> np.ndarray:
    """Unit-Frobenius-norm Gram of column-centred activations (probe x probe).

    The Gram is multiplied in float32 (the kernel is stored as float32; a float64 product agrees
    to about one unit in the last place and costs five times as long), the means and the norm are
    taken in float64.
    """
    x = x.astype(np.float32)
    x = x - x.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
    k = (x @ x.T).astype(np.float64)
    norm = np.linalg.norm(k)
    return k / norm if norm > 0 else k


def _kernel_inner_products(a: GeneValue, b: GeneValue) -> np.ndarray:
    """Frobenius inner products of the two genes' symmetric kernels, stored as upper triangles
    (with diagonal): source layers by target layers.

    Off-diagonal entries appear twice in the full matrix, so the triangles' dot product weighs
    them 2 and the diagonal 1: one matrix product instead of unpacking every kernel. The weights
    go on the target's side, which a search keeps for every candidate (a power of two scales
    exactly, so either side gives the same bits).
    """
    return _kernels(a) @ _weighted_kernels(b).T


@per_object
def _kernels(value: GeneValue) -> np.ndarray:
    """The gene's kernels stacked, float64 (kept while the value lives)."""
    return np.stack([value.arrays[f"kernel{i}"] for i in range(len(value.meta["layers"]))]).astype(np.float64)


@per_object
def _weighted_kernels(value: GeneValue) -> np.ndarray:
    """``_kernels`` with off-diagonal entries weighted 2 and diagonal ones 1."""
    return _kernels(value) * _triangle_weights(value.meta["n"])


@functools.cache
def _triangle_weights(n: int) -> np.ndarray:
    weight = np.full(n * (n + 1) // 2, 2.0)
    weight[np.cumsum(np.r_[0, np.arange(n, 1, -1)])] = 1.0  # row-major diagonal positions
    weight.setflags(write=False)
    return weight


@register_gene
class FeatureCKA(Gene):
    """Best-match linear CKA between the two models' hidden layers."""

    name: ClassVar[str] = "feature_cka"
    version: ClassVar[int] = 2  # v2: convolutional feature maps pooled to 4 x 4 by the loaders
    access = "gray"
    needs = "features"
    uses_probes: ClassVar[bool] = True
    description: ClassVar[str] = "linear CKA of hidden representations on the probes (REEF-like)"
    feature_rows: ClassVar[int | None] = MAX_PROBES

    @classmethod
    def select_features(cls, widths: list[tuple[str, int]]) -> list[str]:
        """Up to ``MAX_LAYERS`` features wider than one, evenly spread over the forward order (all
        of them when there are no more: so selecting from a selection gives it back)."""
        wide = [name for name, width in widths if width > 1]
        if not wide:
            return []
        picks = np.unique(np.linspace(0, len(wide) - 1, min(MAX_LAYERS, len(wide))).round().astype(int))
        return [wide[p] for p in picks]

    def extract(self, obs: Observation) -> GeneValue:
        feats = {k: v[:MAX_PROBES] for k, v in obs.features.items() if v.ndim == 2}
        names = self.select_features([(k, v.shape[1]) for k, v in feats.items()])
        if not names:
            raise GeneNotApplicable("no hidden features")
        arrays = {f"kernel{i}": upper_triangle(centred_kernel(feats[k]), diagonal=True) for i, k in enumerate(names)}
        return GeneValue(arrays, {"layers": names, "n": len(feats[names[0]])})

    def compare(self, a: GeneValue, b: GeneValue) -> GeneScore:
        if a.meta["n"] != b.meta["n"]:
            raise GeneNotApplicable("different numbers of probes")
        cka = _kernel_inner_products(a, b)
        best = cka.max(axis=1)
        return GeneScore(
            float(best.mean()),
            {
                "layers": [
                    {"source": a.meta["layers"][i], "target": b.meta["layers"][int(j)], "cka": round(float(best[i]), 4)}
                    for i, j in enumerate(cka.argmax(axis=1))
                ]
            },
        )
