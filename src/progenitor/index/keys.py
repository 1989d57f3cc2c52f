"""Retrieval keys: what parent search and large trees retrieve candidates by, besides learned vectors.

Beyond ``EXHAUSTIVE_UP_TO`` registered models, search re-ranks only retrieved candidates, so a
parent outside them is lost. The learned DNA vector is a weak key for that: on the standard zoo
it keeps 76% of the parents the verdict detects among the 50 nearest
(``benchmarks/retrieval_recall.py``). The **weight key** keeps 98.9% (99.5% together with the
learned vectors, as search retrieves): the learned generator's untrained ``weights`` input block
(the Grams of each layer's unit sketches, binned by depth: permutation-invariant,
width-independent; ``progenitor.learn.inputs``) under a fixed random projection to ``KEY_DIM``
dimensions, unit length. It exists for DNAs with the ``weight_sketch`` gene (white-box access).

A model known only by its outputs has no weight key, and its learned vector is a poor key into a
registry of white-box DNAs (the generator sees one block where it saw four: 38% of the parents
the verdict detects among the 50 nearest, ``benchmarks/retrieval_recall.py``). The **behaviour
key** serves it: the ``behaviour`` input block (a count sketch of the output geometry keyed by
probe content) under its own fixed projection, which every DNA with ``output_geometry`` has, at
any access, computed alike (100% of those parents among the 50 nearest).
"""

from __future__ import annotations

import functools

import numpy as np

from progenitor.dna import DNA
from progenitor.genes._linalg import seeded_gaussian

__all__ = ["KEY_DIM", "KEY_VERSION", "behaviour_key", "retrieval_key"]

KEY_DIM = 128
KEY_VERSION = 1


def retrieval_key(dna: DNA) -> np.ndarray | None:
    """The DNA's weight key (``KEY_DIM`` float32, unit length), or None without weight genes."""
    from progenitor.learn.inputs import weights_input

    return _projected(weights_input(dna), "retrieval-key")


def behaviour_key(dna: DNA) -> np.ndarray | None:
    """The DNA's behaviour key (``KEY_DIM`` float32, unit length), or None without the
    ``output_geometry`` gene."""
    from progenitor.learn.inputs import behaviour_input

    return _projected(behaviour_input(dna), "behaviour-key")


def _projected(block: np.ndarray | None, seed: str) -> np.ndarray | None:
    """An input block under its fixed projection, unit length (None without the block)."""
    if block is None:
        return None
    values = block.astype(np.float64)
    key = values @ _projection(values.size, seed)
    norm = float(np.linalg.norm(key))
    return (key / norm).astype(np.float32) if norm > 0 else None


@functools.lru_cache(maxsize=4)
def _projection(size: int, seed: str) -> np.ndarray:
    """The fixed projection of a ``size``-long input block (made once per process: drawing it took
    2 ms, as much as the retrieval itself). Read-only."""
    matrix = seeded_gaussian(size, KEY_DIM, f"{seed}-v{KEY_VERSION}").astype(np.float64)
    matrix.setflags(write=False)
    return matrix
