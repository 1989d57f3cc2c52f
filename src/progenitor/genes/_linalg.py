"""Small numeric helpers shared by genes."""

from __future__ import annotations

import functools

import numpy as np

from progenitor._memo import per_object


def normalize_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)


def upper_triangle(matrix: np.ndarray, diagonal: bool = False) -> np.ndarray:
    """Entries above the diagonal (and on it if ``diagonal``), row-major, float32."""
    rows, cols = _triangle_indices(matrix.shape[0], 0 if diagonal else 1)
    return matrix[rows, cols].astype(np.float32)


@functools.lru_cache(maxsize=64)
def _triangle_indices(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(n, k)``, made once per size (every kernel of every DNA asks for them),
    read-only."""
    rows, cols = np.triu_indices(n, k=k)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally long vectors; 0 when either is constant.

    The vectors are taken as unchanging (a DNA's arrays never change): each one's centred copy is
    kept while it lives, so a vector correlated with many others is centred once.
    """
    (a, aa), (b, bb) = _centred(a), _centred(b)
    denom = np.sqrt(aa * bb)
    return float((a * b).sum() / denom) if denom > 0 else 0.0


@per_object
def _centred(x: np.ndarray) -> tuple[np.ndarray, np.floating]:
    """``x`` less its mean, float64, and its sum of squares (kept while ``x`` lives: a search
    correlates one target's stored vectors with many candidates')."""
    centred = x.astype(np.float64) - x.mean()
    return centred, (centred * centred).sum()


@functools.lru_cache(maxsize=16)
def seeded_gaussian(rows: int, cols: int, tag: str) -> np.ndarray:
    """A fixed random matrix keyed by its shape and a tag: the same on every machine and run.

    Read-only and made once per process for each key: every extraction asks for the same few
    (a transformer's embedding table reads a vocabulary x 32 one, 9 ms to draw each time).
    """
    seed = int.from_bytes(f"{tag}:{rows}x{cols}".encode()[:32].ljust(32, b"\0")[:8], "little")
    seed ^= rows * 1_000_003 + cols
    matrix = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)
    matrix.setflags(write=False)
    return matrix


def seeded_signs(count: int, width: int, tag: str) -> np.ndarray:
    """Fixed random +-1 rows keyed by shape and tag."""
    return np.sign(seeded_gaussian(count, width, tag) + 1e-9).astype(np.float32)
