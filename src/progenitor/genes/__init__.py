"""Genes: raw, named, versioned measurements of a model, each with its own comparison."""

from progenitor.genes import data, errors, features, outputs, values, weights  # noqa: F401  (register the genes)
from progenitor.genes._registry import (
    Gene,
    GeneNotApplicable,
    GeneScore,
    GeneValue,
    get_gene,
    list_genes,
    register_gene,
)
from progenitor.genes.observe import Observation

__all__ = [
    "Gene",
    "GeneNotApplicable",
    "GeneScore",
    "GeneValue",
    "Observation",
    "get_gene",
    "list_genes",
    "register_gene",
]
