"""progenitor: is this model derived from that one?

Model provenance with Model DNA: genes measured on a model's weights, hidden features or outputs,
compared against a calibrated null of independently trained models, fused into a verdict with
evidence. Nothing heavy runs at import.

    import progenitor as pg
    result = pg.compare("parent.pt", "suspect.onnx", probes="probes.npy")
    result.verdict, result.probability, result.p_value, result.evidence
"""

from __future__ import annotations

from progenitor.api import as_dna, compare, compare_many, extract, score_genes
from progenitor.calibration import Calibration, load_calibration
from progenitor.dna import DNA, load_dna, save_dna
from progenitor.errors import (
    AccessError,
    DNAFormatError,
    EndpointError,
    IncomparableError,
    ModelLoadError,
    ProbeError,
    ProgenitorError,
    UnsafeFileError,
)
from progenitor.genes import list_genes
from progenitor.models import Model, list_formats, load
from progenitor.probes import ProbeSet, load_probes
from progenitor.verdict import Comparison

__version__ = "0.1.0"

__all__ = [
    "DNA",
    "AccessError",
    "Calibration",
    "Comparison",
    "DNAFormatError",
    "EndpointError",
    "IncomparableError",
    "Model",
    "ModelLoadError",
    "ProbeError",
    "ProbeSet",
    "ProgenitorError",
    "UnsafeFileError",
    "__version__",
    "as_dna",
    "compare",
    "compare_many",
    "extract",
    "list_formats",
    "list_genes",
    "load",
    "load_calibration",
    "load_dna",
    "load_probes",
    "save_dna",
    "score_genes",
]
