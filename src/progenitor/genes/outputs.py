"""Black-box gene: the geometry of a model's outputs on the probe set.

For each probe the output vector is centred (so logits that differ by a constant, which give the
same softmax, agree) and normalised; the gene is the n x n matrix of cosines between probes
(the idea of SAC, Guan et al. 2022). It does not depend on the output size, so models with
different heads or vocabularies compare; two models are similar when their matrices correlate.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np

from progenitor.genes._linalg import correlation, normalize_rows, upper_triangle
from progenitor.genes._registry import Gene, GeneNotApplicable, GeneScore, GeneValue, register_gene
from progenitor.genes.observe import Observation
from progenitor.probes import ProbeSet

MAX_PROBES = 256


def output_geometry(outputs: np.ndarray) -> np.ndarray:
    """Upper triangle of the probe x probe cosine matrix of centred outputs."""
    y = outputs[:MAX_PROBES].astype(np.float64)
    # Centre each output vector (softmax ignores a constant shift); a single output (a score)
    # is centred across probes instead.
    y = y - y.mean(axis=1, keepdims=True) if y.shape[1] > 1 else y - y.mean()
    z = normalize_rows(y)
    return upper_triangle(z @ z.T)


def probe_keys(probes: ProbeSet) -> np.ndarray:
    """A 63-bit key per probe from its content (sha256), the same whatever the probes' order."""
    keys = []
    for item in probes.data:
        raw = item.encode() if isinstance(item, str) else np.ascontiguousarray(item).tobytes()
        keys.append(int.from_bytes(hashlib.sha256(raw).digest()[:8], "little") >> 1)
    return np.array(keys, dtype=np.int64)


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
        outputs = obs.outputs
        if not np.isfinite(outputs).all():
            raise GeneNotApplicable("outputs contain NaN or infinite values")
        top = outputs.argmax(axis=1).astype(np.int32) if outputs.shape[1] > 1 else None
        arrays = {"cosines": output_geometry(outputs)}
        if obs.probes is not None:  # content keys let learned encoders ignore the probes' order
            arrays["probe_keys"] = probe_keys(obs.probes)[:MAX_PROBES]
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
