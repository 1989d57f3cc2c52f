"""Data-driven gene: a fixed encoding of a sample of the model's training data.

The user passes a sample of the data the model was trained on (``extract(..., data=...)``); the
gene encodes every item with a fixed, seeded encoder (random ReLU features of the pixels for
tensors, signed hashing of words and word pairs for texts) and keeps the mean and spread of the
features. Without a sample the gene is absent, never guessed. Training data does not show lineage
on its own (independent models are often trained on the same data), so the gene is not used by
the training-free verdict; the learned DNA combines it with behaviour.
"""

from __future__ import annotations

import itertools
import zlib
from typing import ClassVar

import numpy as np

from progenitor.genes._linalg import correlation, normalize_rows, seeded_gaussian
from progenitor.genes._registry import Gene, GeneNotApplicable, GeneScore, GeneValue, register_gene
from progenitor.genes.observe import Observation

FEATURES = 128
HASH_BUCKETS = 4096
MAX_ITEMS = 2048


def encode_tensors(x: np.ndarray) -> np.ndarray:
    """Random ReLU features of standardised, flattened inputs (items x FEATURES)."""
    flat = x.reshape(len(x), -1).astype(np.float32)
    flat = (flat - flat.mean(axis=1, keepdims=True)) / (flat.std(axis=1, keepdims=True) + 1e-6)
    proj = seeded_gaussian(flat.shape[1], FEATURES, "data-tensor") / np.sqrt(flat.shape[1])
    return np.maximum(flat @ proj, 0.0)


def encode_texts(texts: list[str] | tuple[str, ...]) -> np.ndarray:
    """Signed hashing of lower-cased words and word pairs, projected to FEATURES (items x FEATURES)."""
    counts = np.zeros((len(texts), HASH_BUCKETS), dtype=np.float32)
    for row, text in enumerate(texts):
        words = text.lower().split()
        for token in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
            h = zlib.crc32(token.encode())
            counts[row, h % HASH_BUCKETS] += 1.0 if (h >> 31) & 1 else -1.0
    proj = seeded_gaussian(HASH_BUCKETS, FEATURES, "data-text") / np.sqrt(HASH_BUCKETS)
    return np.maximum(normalize_rows(counts) @ proj * 8.0, 0.0)


@register_gene
class TrainingData(Gene):
    """Mean and spread of fixed features of a training-data sample."""

    name: ClassVar[str] = "training_data"
    version: ClassVar[int] = 1
    access = "black"
    needs = "data"
    uses_probes: ClassVar[bool] = False
    role: ClassVar[str] = "data"
    description: ClassVar[str] = "fixed-encoder profile of a training-data sample (user supplied)"

    def extract(self, obs: Observation) -> GeneValue:
        if obs.data is None:
            raise GeneNotApplicable("no training-data sample given")
        items = obs.data.data[:MAX_ITEMS]
        feats = encode_tensors(items) if isinstance(items, np.ndarray) else encode_texts(items)
        return GeneValue(
            {"mean": feats.mean(axis=0).astype(np.float32), "std": feats.std(axis=0).astype(np.float32)},
            {"items": len(items), "kind": obs.data.kind, "sample_hash": obs.data.hash},
        )

    def compare(self, a: GeneValue, b: GeneValue) -> GeneScore:
        if a.meta["kind"] != b.meta["kind"]:
            return GeneScore(0.0, {"note": "one sample is text, the other tensors"})
        va = np.concatenate([a.arrays["mean"], a.arrays["std"]])
        vb = np.concatenate([b.arrays["mean"], b.arrays["std"]])
        return GeneScore(correlation(va, vb), {"same_sample": a.meta["sample_hash"] == b.meta["sample_hash"]})
