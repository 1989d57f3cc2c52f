"""Nearest-neighbour retrieval over learned DNA vectors: faiss when installed, else exact numpy.

DNA vectors are L2-normalised, so inner product is cosine similarity. Both backends are exact
(faiss ``IndexFlatIP``, a brute-force scan in optimised code; numpy, one matrix-vector product and
a partial sort) and return the same top-k on the same vectors; ties are broken by row order in
numpy. Retrieval only proposes candidates: the verdict re-ranks them (``progenitor.index.search``).
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import numpy as np

from progenitor.errors import ProgenitorError

__all__ = ["VectorIndex", "faiss_available"]

Backend = Literal["auto", "faiss", "numpy"]


def faiss_available() -> bool:
    """Whether the faiss package can be imported."""
    return importlib.util.find_spec("faiss") is not None


class VectorIndex:
    """Exact maximum-inner-product search over a fixed set of vectors.

    Args:
        ids: one integer id per vector (registry row ids).
        vectors: ``(n, d)`` float32, rows L2-normalised.
        backend: ``faiss``, ``numpy``, or ``auto`` (faiss when installed).
    """

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, backend: Backend = "auto") -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ProgenitorError(
                f"vector index needs (n, d) vectors for n ids, got {vectors.shape} for {len(ids)} ids"
            )
        if backend == "auto":
            backend = "faiss" if faiss_available() else "numpy"
        if backend not in ("faiss", "numpy"):
            raise ProgenitorError(f"vector backend must be auto, faiss or numpy, not {backend!r}")
        self.backend = backend
        self.ids = np.asarray(ids, dtype=np.int64)
        self.dim = int(vectors.shape[1]) if vectors.size else 0
        self._vectors = vectors
        self._faiss = None
        if backend == "faiss":
            from progenitor._extras import require

            faiss = require("faiss", "index")
            self._faiss = faiss.IndexFlatIP(max(self.dim, 1))
            if len(vectors):
                self._faiss.add(vectors)

    def __len__(self) -> int:
        return len(self.ids)

    def nbytes(self) -> int:
        """Bytes held for the vectors (faiss keeps its own copy)."""
        return int(self._vectors.nbytes * (2 if self._faiss is not None else 1))

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest ids to ``query`` (d,) and their inner products, best first."""
        k = min(int(k), len(self.ids))
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
        if q.shape[1] != self.dim:
            raise ProgenitorError(f"query vector has {q.shape[1]} dimensions, the index {self.dim}")
        if self._faiss is not None:
            scores, rows = self._faiss.search(q, k)
            keep = rows[0] >= 0
            return self.ids[rows[0][keep]], scores[0][keep]
        scores = self._vectors @ q[0]
        part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        order = part[np.lexsort((part, -scores[part]))]
        return self.ids[order], scores[order]

    def search_many(self, queries: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
        """Ids of the ``k`` nearest vectors of every query row, best first: ``(m, k)``."""
        k = min(int(k), len(self.ids))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self._faiss is not None:
            _, rows = self._faiss.search(queries, k)
            return self.ids[rows]
        out = np.empty((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), block):
            scores = queries[start : start + block] @ self._vectors.T
            part = (
                np.argpartition(-scores, k - 1, axis=1)[:, :k]
                if k < scores.shape[1]
                else np.tile(np.arange(scores.shape[1]), (len(scores), 1))
            )
            top = np.take_along_axis(scores, part, axis=1)
            order = np.argsort(-top, axis=1, kind="stable")
            out[start : start + block] = self.ids[np.take_along_axis(part, order, axis=1)]
        return out
