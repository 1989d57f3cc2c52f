"""Collections of models: a DNA registry, parent search, lineage trees, distributed extraction.

* ``Registry`` (``registry.py``): one SQLite file of DNAs with their metadata and the extractor
  spec they were made with (``spec.py``); numbered schema migrations, de-duplication by content.
* ``ParentSearch`` / ``search_parents`` (``search.py``): candidate retrieval over learned DNA
  vectors (faiss or numpy, ``vectors.py``), re-ranked by the full verdict, with abstention.
* ``build_tree`` (``tree.py``): lineage trees as a minimum arborescence over pairwise verdicts
  and a direction signal (``direction.py``), checked against declared parents.
* ``add_models`` (``engines.py``): extraction on a local process pool or a Ray cluster, written
  to the registry exactly once.

See ``docs/COLLECTIONS.md``.
"""

from __future__ import annotations

from progenitor.index._dna import dna_from_bytes, dna_to_bytes, genome_hash
from progenitor.index.direction import get_direction, list_directions, register_direction
from progenitor.index.engines import AddReport, add_models
from progenitor.index.registry import (
    SCHEMA_VERSION,
    AddOutcome,
    Entry,
    Registry,
    RegistryError,
    default_db_path,
)
from progenitor.index.search import (
    Candidate,
    ParentSearch,
    SearchResult,
    resolve_target,
    search_parents,
)
from progenitor.index.spec import ExtractorSpec, SpecMismatchError
from progenitor.index.tree import LineageTree, Member, build_tree, members_of
from progenitor.index.vectors import VectorIndex, faiss_available

__all__ = [
    "SCHEMA_VERSION",
    "AddOutcome",
    "AddReport",
    "Candidate",
    "Entry",
    "ExtractorSpec",
    "LineageTree",
    "Member",
    "ParentSearch",
    "Registry",
    "RegistryError",
    "SearchResult",
    "SpecMismatchError",
    "VectorIndex",
    "add_models",
    "build_tree",
    "default_db_path",
    "dna_from_bytes",
    "dna_to_bytes",
    "faiss_available",
    "genome_hash",
    "get_direction",
    "list_directions",
    "members_of",
    "register_direction",
    "resolve_target",
    "search_parents",
]
