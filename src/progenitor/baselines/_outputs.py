"""Helpers shared by the black-box baselines: outputs as distributions, probe subsets, CutMix."""

from __future__ import annotations

import math

import numpy as np

from progenitor.baselines._base import BaselineNotApplicable
from progenitor.genes._linalg import normalize_rows
from progenitor.models.base import Batch, Model
from progenitor.probes import ProbeSet


def first(probes: ProbeSet, n: int) -> ProbeSet:
    """The first ``n`` probes (all of them if fewer) as a probe set of the same kind."""
    if len(probes) <= n:
        return probes
    return ProbeSet(f"{probes.name}[:{n}]", probes.kind, probes.data[:n])


def run(model: Model, batch: Batch) -> np.ndarray:
    """The model's outputs ``(n, k)`` as float64, refusing NaN or infinite values."""
    out = np.asarray(model.forward(batch), dtype=np.float64)
    if out.shape[0] != len(batch):
        raise BaselineNotApplicable(
            f"{model.ref} gave {out.shape[0]} outputs for {len(batch)} inputs"
        )
    if not np.isfinite(out).all():
        raise BaselineNotApplicable(f"{model.ref} gave NaN or infinite outputs")
    return out


def softmax(outputs: np.ndarray) -> np.ndarray:
    """Row-wise softmax (classifier logits or LM log-probabilities -> probabilities).

    A single output column is returned as it is: there is no distribution to form.
    """
    if outputs.shape[1] == 1:
        return outputs
    z = outputs - outputs.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def centred(outputs: np.ndarray) -> np.ndarray:
    """Each output row minus its mean; a single output column is returned as it is.

    Logits that differ by a constant per input give the same softmax, and a language model's
    log-probabilities are its logits shifted per input: centring makes all three the same vector.
    """
    if outputs.shape[1] == 1:
        return outputs
    return outputs - outputs.mean(axis=1, keepdims=True)


def dissimilarity(outputs: np.ndarray) -> np.ndarray:
    """SAC's probe x probe matrix: (1 - cosine) / 2 between output vectors, in [0, 1]."""
    z = normalize_rows(outputs.astype(np.float64))
    return ((1.0 - np.clip(z @ z.T, -1.0, 1.0)) / 2.0).astype(np.float32)


def cutmix(probes: ProbeSet, fraction: float = 0.2, seed: int = 0) -> ProbeSet:
    """Each probe with a patch covering ``fraction`` of it pasted from another probe (seeded).

    Images (``(n, c, h, w)`` or ``(n, h, w)``) get a rectangle of about ``fraction`` of the area
    at a random place, over all channels; flat vectors a contiguous run of coordinates; texts a run
    of ``fraction`` of their words replaced by a run of words of the other text. The partner of each
    probe is a random other probe (a derangement), so no probe is mixed with itself.
    """
    rng = np.random.default_rng(seed)
    n = len(probes)
    if n < 2:
        raise BaselineNotApplicable("CutMix needs at least two probes")
    partner = (np.arange(n) + rng.integers(1, n, size=n)) % n
    if isinstance(probes.data, np.ndarray):
        mixed = probes.data.copy()
        spatial = probes.data.shape[-2:] if probes.data.ndim >= 3 else None
        for i, j in enumerate(partner):
            if spatial is not None:
                h, w = spatial
                ph, pw = (
                    max(1, round(h * math.sqrt(fraction))),
                    max(1, round(w * math.sqrt(fraction))),
                )
                top, left = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)
                mixed[i, ..., top : top + ph, left : left + pw] = probes.data[
                    j, ..., top : top + ph, left : left + pw
                ]
            else:
                flat_i, flat_j = mixed[i].reshape(-1), probes.data[j].reshape(-1)
                span = max(1, round(fraction * flat_i.size))
                start = rng.integers(0, flat_i.size - span + 1)
                flat_i[start : start + span] = flat_j[start : start + span]
        return ProbeSet(f"{probes.name}+cutmix", "tensor", mixed)
    texts = []
    for i, j in enumerate(partner):
        words, other = probes.data[i].split(), probes.data[int(j)].split()
        span = max(1, round(fraction * len(words)))
        start = int(rng.integers(0, max(1, len(words) - span + 1)))
        src = int(rng.integers(0, max(1, len(other) - span + 1)))
        texts.append(" ".join(words[:start] + other[src : src + span] + words[start + span :]))
    return ProbeSet(f"{probes.name}+cutmix", "text", tuple(texts))
