"""The learned Model DNA: generator, DNA similarity loss, provenance classifier, training."""

from progenitor.learn.bundle import LearnedDNA, load_learned
from progenitor.learn.classifier import ProvenanceClassifier
from progenitor.learn.generator import DNAGenerator
from progenitor.learn.losses import dna_similarity_loss

__all__ = ["DNAGenerator", "LearnedDNA", "ProvenanceClassifier", "dna_similarity_loss", "load_learned"]
