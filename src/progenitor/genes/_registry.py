"""Registry of genes: named, versioned measurements of a model and how to compare two of them.

Each gene declares the access it needs (``white``, ``gray`` or ``black``), whether it uses the
probe set, ``extract`` (Observation -> GeneValue) and ``compare`` (GeneValue, GeneValue ->
GeneScore). A gene's similarity is a correlation-like number in [-1, 1]; the verdict layer turns
it into evidence against a calibrated null. Bump ``version`` whenever extraction changes: DNAs
made with different versions are never compared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from progenitor.genes.observe import Observation
from progenitor.models.base import Access


class GeneNotApplicable(Exception):  # noqa: N818 - a signal, not an error shown to users
    """This gene cannot be measured on this model (or compared on this pair); it is skipped."""


@dataclass
class GeneValue:
    """A gene measured on one model: named arrays plus small JSON-able metadata."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def nbytes(self) -> int:
        """Bytes the arrays take."""
        return int(sum(a.nbytes for a in self.arrays.values()))


@dataclass
class GeneScore:
    """The similarity of two GeneValues and the details that explain it.

    ``exact_p_value``: a p-value the gene computes itself from a null it knows exactly (needs no
    calibration), e.g. ``weight_sketch``'s unit-alignment test; the verdict merges it with the
    calibrated p-value of ``similarity`` (``progenitor.verdict.gene_evidence``).
    """

    similarity: float
    details: dict[str, Any] = field(default_factory=dict)
    exact_p_value: float | None = None


class Gene(ABC):
    """Base class of genes; register subclasses with ``@register_gene``."""

    name: ClassVar[str]
    version: ClassVar[int]
    access: ClassVar[Access]
    needs: ClassVar[str]  # a Model capability, or "data" for a user-given training sample
    uses_probes: ClassVar[bool]
    description: ClassVar[str] = ""
    # "lineage" genes tell related from independent models and enter the verdict; "direction"
    # genes only tell which of two related models is the parent (learned DNA, lineage trees).
    role: ClassVar[str] = "lineage"
    # Whether the gene's similarity also orders related models (which relative is closest, in
    # search and trees), or only tells related from independent (``error_agreement``).
    orders_relatives: ClassVar[bool] = True
    # Genes that read hidden features from only the first so many probes say so, and features
    # are then recorded for those probes only (None: all).
    feature_rows: ClassVar[int | None] = None
    # Whether a copy with its hidden units permuted (the same function) scores as the original.
    permutation_invariant: ClassVar[bool] = True

    @classmethod
    def select_features(cls, widths: list[tuple[str, int]]) -> list[str] | None:  # noqa: ARG003 - for overrides
        """Of the hidden features a model records, in forward order with their widths, the names
        this gene reads (None: all). Models that can record only some of them (hooked torch
        modules) then record no others. Selecting again from the selection must give it back."""
        return None

    @abstractmethod
    def extract(self, obs: Observation) -> GeneValue:
        """Measure the gene; raise GeneNotApplicable when the model has nothing to measure."""

    @abstractmethod
    def compare(self, a: GeneValue, b: GeneValue) -> GeneScore:
        """Similarity in [-1, 1] of the same gene on two models (``a`` is the source)."""


_GENES: dict[str, Gene] = {}


def register_gene(cls: type[Gene]) -> type[Gene]:
    """Class decorator adding a gene (one shared instance) to the registry."""
    if cls.name in _GENES:
        raise ValueError(f"gene {cls.name!r} registered twice")
    _GENES[cls.name] = cls()
    return cls


def get_gene(name: str) -> Gene:
    """The registered gene called ``name`` (KeyError if none)."""
    return _GENES[name]


def list_genes(access: Access | None = None) -> list[Gene]:
    """Registered genes, optionally only those usable with ``access``, by name."""
    from progenitor.models.base import ACCESS_LEVELS

    genes = sorted(_GENES.values(), key=lambda g: g.name)
    if access is None:
        return genes
    level = ACCESS_LEVELS.index(access)
    return [g for g in genes if ACCESS_LEVELS.index(g.access) <= level]
