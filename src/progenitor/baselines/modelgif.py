"""ModelGiF: model gradient fields (Song, Xu, Wu, Chen, Song; "ModelGiF: Gradient Fields for Model
Functional Distance", ICCV 2023).

A model's fingerprint is its gradient field at reference points: for each reference input ``x``
and each point ``alpha * x`` on the straight path from a black input to it, the integrated-gradients
attribution accumulated up to that point, ``x * (1/S) * sum_{j <= k} grad f_c(alpha_j x)``, where
``f_c`` is the output of the class the model itself predicts for ``x`` (the paper's setting for
intellectual-property protection). Two models' distance is the mean, over reference inputs and path
points, of one minus the cosine of their fields; score = mean cosine (higher = derived).

Choices the paper leaves open or that are made here: the reference inputs are the first 64 probes
(the paper's best results came from a reference set chosen with the independent and attacking
models in hand, which a provenance check does not have); the path has 8 points at the midpoints
of equal steps (the published code uses 50 Gauss-Legendre points); fields are kept as float16.
Gradients need a differentiable model (torch modules); other formats cannot be scored, and inputs
must be tensors (for text the gradient would be taken in each model's own embedding space).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from progenitor.baselines._base import (
    Baseline,
    BaselineNotApplicable,
    BaselineScore,
    Fingerprint,
    register_baseline,
)
from progenitor.baselines._outputs import first, run
from progenitor.models.base import Model
from progenitor.probes import ProbeSet

REFERENCE_INPUTS = 64
PATH_POINTS = 8


def gradient_field(model: Model, inputs: np.ndarray, points: int = PATH_POINTS) -> np.ndarray:
    """The model's gradient field ``(n, points, d)`` at ``inputs`` (module docstring), float32."""
    classes = run(model, inputs).argmax(axis=1)
    alphas = (np.arange(points) + 0.5) / points
    path = np.concatenate([inputs * np.float32(a) for a in alphas]).astype(np.float32)
    grads = model.input_gradients(path, np.tile(classes, points))
    if not np.isfinite(grads).all():
        raise BaselineNotApplicable(f"{model.ref} gave NaN or infinite input gradients")
    n = len(inputs)
    accumulated = np.cumsum(grads.reshape(points, n, -1), axis=0) / points
    return (accumulated * inputs.reshape(1, n, -1)).transpose(1, 0, 2)


def field_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine of two gradient fields over reference inputs and path points."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    dots = np.einsum("ijk,ijk->ij", a64, b64)
    norms = np.linalg.norm(a64, axis=2) * np.linalg.norm(b64, axis=2)
    # A field that is zero at a point (a black pixel path start, a dead model) has no direction.
    return float(np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0).mean())


@register_baseline
class ModelGiF(Baseline):
    """Mean cosine of integrated-gradient fields along paths to the reference inputs."""

    name: ClassVar[str] = "modelgif"
    access = "white"
    paper: ClassVar[str] = "Song et al., ModelGiF: Gradient Fields for Model Functional Distance, ICCV 2023"

    def _extract(self, model: Model, probes: ProbeSet | None) -> Fingerprint:
        assert probes is not None
        if not isinstance(probes.data, np.ndarray):
            raise BaselineNotApplicable("gradient fields need tensor inputs, not text")
        if not model.can("gradients"):
            raise BaselineNotApplicable(f"{model.ref}: the {model.format} format gives no input gradients")
        inputs = np.asarray(first(probes, REFERENCE_INPUTS).data, dtype=np.float32)
        return {"field": gradient_field(model, inputs).astype(np.float16)}

    def _score(self, fp_source: Fingerprint, fp_target: Fingerprint) -> BaselineScore:
        a, b = fp_source["field"], fp_target["field"]
        if a.shape != b.shape:
            raise BaselineNotApplicable(f"gradient fields of different shapes {a.shape} and {b.shape}")
        return BaselineScore(field_similarity(a, b))
