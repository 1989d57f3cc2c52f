"""Floors: the simplest signals a provenance method has to beat.

* ``weight_cosine`` (white): cosine similarity of the concatenated weights of explicitly paired,
  same-shape layers. No handling of permutations: permuting hidden units keeps the function but
  scrambles the weights, and this floor then scores a copy like an unrelated model (the tests
  assert that it breaks, to keep the limitation visible).
* ``output_agreement`` (black): the fraction of probes on which the two models' top-1 outputs
  agree (for a language model, the greedy next token).
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
from progenitor.baselines._outputs import run
from progenitor.baselines._weights import same_shape_pairs, weight_fingerprint, weight_layers
from progenitor.models.base import Model
from progenitor.probes import ProbeSet


@register_baseline
class WeightCosine(Baseline):
    """Cosine of the concatenated weights of paired layers (breaks under permutation)."""

    name: ClassVar[str] = "weight_cosine"
    access = "white"
    paper: ClassVar[str] = "floor: raw weight cosine similarity"
    uses_probes: ClassVar[bool] = False
    permutation_invariant: ClassVar[bool] = False

    def _extract(self, model: Model, probes: ProbeSet | None) -> Fingerprint:
        del probes
        return weight_fingerprint(model)

    def _score(self, fp_source: Fingerprint, fp_target: Fingerprint) -> BaselineScore:
        a, b = weight_layers(fp_source), weight_layers(fp_target)
        pairs, counts = same_shape_pairs(a, b)
        if not pairs:
            raise BaselineNotApplicable("no weight matrices of the same shape to pair")
        dot = sum(float((a[i].weight.astype(np.float64) * b[j].weight).sum()) for i, j in pairs)
        na = np.sqrt(sum(float((a[i].weight.astype(np.float64) ** 2).sum()) for i, _ in pairs))
        nb = np.sqrt(sum(float((b[j].weight.astype(np.float64) ** 2).sum()) for _, j in pairs))
        cosine = dot / (na * nb) if na > 0 and nb > 0 else 0.0
        return BaselineScore(float(cosine), None, counts)


@register_baseline
class OutputAgreement(Baseline):
    """Fraction of probes with the same top-1 output."""

    name: ClassVar[str] = "output_agreement"
    access = "black"
    paper: ClassVar[str] = "floor: top-1 output agreement"

    def _extract(self, model: Model, probes: ProbeSet | None) -> Fingerprint:
        assert probes is not None
        out = run(model, probes.batch())
        if out.shape[1] < 2:
            raise BaselineNotApplicable(f"{model.ref} has a single output: no top-1 to agree on")
        return {"top1": out.argmax(axis=1).astype(np.int64), "width": np.array(out.shape[1])}

    def _score(self, fp_source: Fingerprint, fp_target: Fingerprint) -> BaselineScore:
        a, b = fp_source["top1"], fp_target["top1"]
        if a.shape != b.shape:
            raise BaselineNotApplicable("source and target were probed with different probe counts")
        same_width = int(fp_source["width"]) == int(fp_target["width"])
        return BaselineScore(
            float((a == b).mean()), None, {"probes": len(a), "same_width": same_width}
        )
