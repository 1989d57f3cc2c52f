"""SAC: sample correlation of outputs (Guan, Liang, He; "Are You Stealing My Model? Sample
Correlation for Fingerprinting Deep Neural Networks", NeurIPS 2022).

A model's fingerprint is the N x N matrix of (1 - cosine) / 2 between its output vectors on N
probes; the distance of two models is the mean absolute difference of their matrices (off the
diagonal, which is zero for both); score = -distance. Permuting hidden units, or changing the
number of classes, leaves the matrix's meaning intact, and no training is needed.

The two published variants differ only in the probes:

* ``sac_m``: CutMix probes, each with a patch of 20% of its area pasted from another probe
  (seeded, so every model sees the same mixed probes).
* ``sac_w``: the paper uses samples the source model misclassifies. No labels exist at scoring
  time here, so the choice made is: the quarter of the probes (at least 8) on which the *source*
  is least confident (lowest maximum softmax probability). These are the inputs near the source's
  decision boundaries, the property that made misclassified samples useful. The selection depends
  only on the source, so each fingerprint keeps the full matrix and its per-probe confidence, and
  the sub-matrices are taken at scoring time.

Output vectors are centred per input (logits, or a language model's log-probabilities, minus their
mean), which makes the logits and log-probabilities of one model the same vector; a single-output
model is compared on its raw value. Centred logits were chosen over softmax probabilities because
probabilities saturate: on the test family a fine-tuned child was no closer to its parent than
independent models were with softmax, and clearly closer with centred logits.
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
from progenitor.baselines._outputs import centred, cutmix, dissimilarity, first, run, softmax
from progenitor.models.base import Model
from progenitor.probes import ProbeSet

MAX_PROBES = 200
CUTMIX_FRACTION = 0.2
CUTMIX_SEED = 2022
WRONG_FRACTION = 0.25
WRONG_MIN = 8
_PAPER = (
    "Guan et al., Are You Stealing My Model? Sample Correlation for Fingerprinting DNNs, "
    "NeurIPS 2022"
)


def sac_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two SAC matrices over their off-diagonal entries."""
    if a.shape != b.shape:
        raise BaselineNotApplicable(f"SAC matrices of different sizes {a.shape} and {b.shape}")
    n = a.shape[0]
    mask = ~np.eye(n, dtype=bool)
    return float(np.abs(a.astype(np.float64) - b)[mask].mean())


class _SAC(Baseline):
    access = "black"
    paper: ClassVar[str] = _PAPER

    def _outputs(self, model: Model, probes: ProbeSet | None) -> np.ndarray:
        assert probes is not None
        return run(model, first(probes, MAX_PROBES).batch())


@register_baseline
class SACm(_SAC):
    """SAC-m: the SAC matrix on CutMix probes."""

    name: ClassVar[str] = "sac_m"

    def _extract(self, model: Model, probes: ProbeSet | None) -> Fingerprint:
        assert probes is not None
        mixed = cutmix(first(probes, MAX_PROBES), CUTMIX_FRACTION, CUTMIX_SEED)
        return {"matrix": dissimilarity(centred(self._outputs(model, mixed)))}

    def _score(self, fp_source: Fingerprint, fp_target: Fingerprint) -> BaselineScore:
        d = sac_distance(fp_source["matrix"], fp_target["matrix"])
        return BaselineScore(-d, None, {"distance": d, "probes": int(fp_source["matrix"].shape[0])})


@register_baseline
class SACw(_SAC):
    """SAC-w: the SAC matrix on the probes the source is least confident about."""

    name: ClassVar[str] = "sac_w"

    def _extract(self, model: Model, probes: ProbeSet | None) -> Fingerprint:
        outputs = self._outputs(model, probes)
        confidence = (
            softmax(outputs).max(axis=1) if outputs.shape[1] > 1 else np.zeros(len(outputs))
        )
        return {
            "matrix": dissimilarity(centred(outputs)),
            "confidence": confidence.astype(np.float32),
        }

    def _score(self, fp_source: Fingerprint, fp_target: Fingerprint) -> BaselineScore:
        conf = fp_source["confidence"]
        k = min(len(conf), max(WRONG_MIN, round(WRONG_FRACTION * len(conf))))
        # Stable sort: ties (e.g. a single-output model) keep probe order, so the choice is fixed.
        picked = np.sort(np.argsort(conf, kind="stable")[:k])
        if fp_target["matrix"].shape != fp_source["matrix"].shape:
            raise BaselineNotApplicable("source and target were probed with different probe counts")
        sub = np.ix_(picked, picked)
        d = sac_distance(fp_source["matrix"][sub], fp_target["matrix"][sub])
        return BaselineScore(
            -d,
            None,
            {"distance": d, "probes": int(k), "max_source_confidence": float(conf[picked].max())},
        )
