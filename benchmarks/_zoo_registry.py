"""A temporary registry holding a built zoo's cached DNAs (shared by the collection benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from progenitor.api import default_learned
from progenitor.index.registry import Registry
from progenitor.zoo.dna_dataset import ZooDNA


def register_zoo(zoo: ZooDNA, path: Path, order: Sequence[str] | None = None) -> Registry:
    """A registry at ``path`` with every model of ``zoo`` (in ``order`` when given), each DNA
    carrying the packaged learned vector, as ``progenitor index add`` would store it."""
    ids = list(order) if order is not None else zoo.model_ids()
    bundle = default_learned()
    registry = Registry(path)
    dnas = [zoo.dna(m) for m in ids]
    for model_id, dna, vector in zip(ids, dnas, bundle.embed(dnas), strict=True):
        dna.vector, dna.vector_spec = vector, bundle.spec
        registry.add(dna, name=model_id)
    return registry
