"""Black-box genes: a model's outputs on the probe set.

* ``output_geometry``: for each probe the output vector is centred (so logits that differ by a
  constant, which give the same softmax, agree) and normalised; the gene is the n x n matrix of
  cosines between probes (the idea of SAC, Guan et al. 2022). It does not depend on the output
  size, so models with different heads or vocabularies compare; two models are similar when
  their matrices correlate.
* ``output_logits``: the centred logits themselves, compared entry by entry (probe x output) when
  two models share an output space. First-order where the geometry is second-order: a student
  copies its teacher's scores for each class on each probe, including the small "dark knowledge"
  ones that independently trained models of the same task do not share. On the standard zoo's
  validation families its raw correlation separated distilled students from independents with
  AUC 0.945 (geometry 0.905) and extracted ones 0.815 (0.737).
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np

from progenitor._memo import per_object
from progenitor.genes._linalg import correlation, normalize_rows, seeded_gaussian, upper_triangle
from progenitor.genes._registry import Gene, GeneNotApplicable, GeneScore, GeneValue, register_gene
from progenitor.genes.observe import Observation
from progenitor.probes import ProbeSet

MAX_PROBES = 256
LOGIT_SKETCH = 128  # outputs wider than this are stored as a fixed random projection


def output_geometry(outputs: np.ndarray) -> np.ndarray:
    """Upper triangle of the probe x probe cosine matrix of centred outputs."""
    y = outputs[:MAX_PROBES].astype(np.float64)
    # Centre each output vector (softmax ignores a constant shift); a single output (a score)
    # is centred across probes instead.
    y = y - y.mean(axis=1, keepdims=True) if y.shape[1] > 1 else y - y.mean()
    z = normalize_rows(y)
    return upper_triangle(z @ z.T)


def finite_outputs(obs: Observation) -> np.ndarray:
    """The observation's outputs; GeneNotApplicable when any is NaN or infinite."""
    outputs = obs.outputs
    if not np.isfinite(outputs).all():
        raise GeneNotApplicable("outputs contain NaN or infinite values")
    return outputs


def class_scores(obs: Observation) -> np.ndarray:
    """The observation's outputs as a vector of class scores per probe (``finite_outputs``);
    GeneNotApplicable for any other shape."""
    if obs.outputs.ndim != 2 or obs.outputs.shape[1] < 2:
        raise GeneNotApplicable("needs a vector of class scores per probe")
    return finite_outputs(obs)


@per_object
def probe_keys(probes: ProbeSet) -> np.ndarray:
    """A 63-bit key per probe from its content (sha256), the same whatever the probes' order.

    Kept per probe set while it lives: every model extracted on it asks for the same keys."""
    keys = []
    for item in probes.data:
        raw = item.encode() if isinstance(item, str) else np.ascontiguousarray(item).tobytes()
        keys.append(int.from_bytes(hashlib.sha256(raw).digest()[:8], "little") >> 1)
    array = np.array(keys, dtype=np.int64)
    array.setflags(write=False)  # shared by every DNA of the probe set
    return array


@register_gene
class OutputGeometry(Gene):
    """Correlation of two models' probe x probe output-cosine matrices."""

    name: ClassVar[str] = "output_geometry"
    version: ClassVar[int] = 1
    access = "black"
    needs = "forward"
    uses_probes: ClassVar[bool] = True
    description: ClassVar[str] = "probe-by-probe cosine matrix of centred outputs (SAC-like)"

    def extract(self, obs: Observation) -> GeneValue:
        outputs = finite_outputs(obs)
        top = outputs.argmax(axis=1).astype(np.int32) if outputs.shape[1] > 1 else None
        arrays = {"cosines": output_geometry(outputs)}
        if obs.probes is not None:  # content keys let learned encoders ignore the probes' order
            arrays["probe_keys"] = probe_keys(obs.probes)[:MAX_PROBES].copy()
        if top is not None:
            arrays["top1"] = top[:MAX_PROBES]
        return GeneValue(arrays, {"n": int(min(len(outputs), MAX_PROBES)), "width": int(outputs.shape[1])})

    def compare(self, a: GeneValue, b: GeneValue) -> GeneScore:
        if a.meta["n"] != b.meta["n"]:
            raise GeneNotApplicable("different numbers of probes")
        details: dict[str, object] = {"probes": a.meta["n"]}
        if "top1" in a.arrays and "top1" in b.arrays and a.meta["width"] == b.meta["width"]:
            details["top1_agreement"] = round(float((a.arrays["top1"] == b.arrays["top1"]).mean()), 4)
        return GeneScore(correlation(a.arrays["cosines"], b.arrays["cosines"]), details)


def centred_logits(outputs: np.ndarray) -> np.ndarray:
    """Each probe's outputs as logits less their mean (a softmax's shift freedom removed).

    Outputs that are already probabilities (non-negative rows summing to one, as a probability
    API returns) are taken to their logarithm first, so that the API and the model agree.
    """
    y = outputs[:MAX_PROBES].astype(np.float64)
    if y.min() >= 0 and np.allclose(y.sum(axis=1), 1.0, atol=1e-3):
        y = np.log(np.clip(y, 1e-7, None))
    return y - y.mean(axis=1, keepdims=True)


@register_gene
class OutputLogits(Gene):
    """Correlation of two models' centred logits, probe by probe and output by output."""

    name: ClassVar[str] = "output_logits"
    version: ClassVar[int] = 1
    access = "black"
    needs = "forward"
    uses_probes: ClassVar[bool] = True
    description: ClassVar[str] = "centred logits per probe and output, correlated (same output space only)"

    def extract(self, obs: Observation) -> GeneValue:
        outputs = class_scores(obs)
        logits = centred_logits(outputs)
        width = outputs.shape[1]
        if width > LOGIT_SKETCH:
            # A seeded Gaussian projection keeps inner products (and so the correlation) in
            # expectation while a vocabulary-sized output stays a few hundred KB.
            logits = logits @ seeded_gaussian(width, LOGIT_SKETCH, "output_logits").astype(np.float64)
        return GeneValue({"logits": logits.astype(np.float32)}, {"n": len(logits), "width": int(width)})

    def compare(self, a: GeneValue, b: GeneValue) -> GeneScore:
        if a.meta["width"] != b.meta["width"]:
            raise GeneNotApplicable("different output sizes")
        if a.meta["n"] != b.meta["n"]:
            raise GeneNotApplicable("different numbers of probes")
        x, y = a.arrays["logits"], b.arrays["logits"]
        return GeneScore(correlation(x.ravel(), y.ravel()), {"probes": a.meta["n"], "outputs": a.meta["width"]})
