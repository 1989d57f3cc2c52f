"""REEF-style representation similarity (Zhang et al., "REEF: Representation Encoding
Fingerprints for Large Language Models", ICLR 2025).

Each model's hidden representations on the same ~200 probes are compared with linear CKA, which
is invariant to orthogonal transforms (so to permutations) of the units and to isotropic scaling.
REEF compares the same layers of two models of one architecture; to also cover models of another
depth or width, the layers are matched one-to-one (Hungarian, maximising total CKA) and the score is
the mean CKA of the matched pairs.

The fingerprint keeps, per layer, the centred probe x probe kernel scaled to unit Frobenius norm
(upper triangle), so linear CKA of two layers is the inner product of their kernels. Every named
feature the model exposes with more than one unit is a layer (for torch modules: every leaf module).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.optimize import linear_sum_assignment

from progenitor.baselines._base import (
    Baseline,
    BaselineNotApplicable,
    BaselineScore,
    Fingerprint,
    register_baseline,
)
from progenitor.baselines._outputs import first
from progenitor.genes._linalg import upper_triangle
from progenitor.genes.features import centred_kernel
from progenitor.models.base import Model
from progenitor.probes import ProbeSet

MAX_PROBES = 200


@register_baseline
class ReefCKA(Baseline):
    """Mean linear CKA of one-to-one matched hidden layers."""

    name: ClassVar[str] = "reef_cka"
    access = "gray"
    paper: ClassVar[str] = (
        "Zhang et al., REEF: Representation Encoding Fingerprints for LLMs, ICLR 2025"
    )

    def _extract(self, model: Model, probes: ProbeSet | None) -> Fingerprint:
        assert probes is not None
        feats = [
            (k, v)
            for k, v in model.features(first(probes, MAX_PROBES).batch()).items()
            if v.ndim == 2 and v.shape[1] > 1 and np.isfinite(v).all()
        ]
        if not feats:
            raise BaselineNotApplicable(f"{model.ref} exposes no hidden features")
        out: Fingerprint = {"layers": np.array([k for k, _ in feats])}
        for i, (_, v) in enumerate(feats):
            out[f"kernel{i}"] = upper_triangle(centred_kernel(v), diagonal=True)
        return out

    def _score(self, fp_source: Fingerprint, fp_target: Fingerprint) -> BaselineScore:
        ka, kb = _kernels(fp_source), _kernels(fp_target)
        if ka.shape[1] != kb.shape[1]:
            raise BaselineNotApplicable("source and target were probed with different probe counts")
        # Off-diagonal entries appear twice in the full kernel: weight them so <a, b> is exact.
        n = _probe_count(ka.shape[1])
        weights = np.where(np.triu_indices(n)[0] == np.triu_indices(n)[1], 1.0, 2.0)
        cka = (ka * weights) @ kb.T
        rows, cols = linear_sum_assignment(-cka)
        matched = cka[rows, cols]
        names_a, names_b = fp_source["layers"], fp_target["layers"]
        pairs = [
            {"source": str(names_a[i]), "target": str(names_b[j]), "cka": round(float(c), 4)}
            for i, j, c in zip(rows, cols, matched, strict=True)
        ]
        return BaselineScore(float(matched.mean()), None, {"layers": pairs})


def _kernels(fp: Fingerprint) -> np.ndarray:
    return np.stack([fp[f"kernel{i}"].astype(np.float64) for i in range(len(fp["layers"]))])


def _probe_count(tri_size: int) -> int:
    """n such that n (n + 1) / 2 == tri_size."""
    return round((np.sqrt(8 * tri_size + 1) - 1) / 2)
