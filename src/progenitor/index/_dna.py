"""DNA bytes in and out of the registry, and the content hash that de-duplicates them."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from progenitor.dna import DNA, dna_from_bytes, dna_to_bytes

__all__ = ["dna_from_bytes", "dna_to_bytes", "genome_hash"]


def genome_hash(dna: DNA) -> str:
    """sha256 of what a DNA measured, not of when or where: genes, versions, probes, vector.

    The creation time and the model's reference and metadata are left out, so the same model
    extracted twice (by two engines, under two paths) has the same genome hash.
    """
    digest = hashlib.sha256(b"progenitor-genome-v1\0")
    head = {
        "access": dna.access,
        "versions": dna.versions,
        "probes": None if dna.probes is None else dna.probes.get("hash"),
        "vector_spec": dna.vector_spec,
        "gene_meta": {n: g.meta for n, g in dna.genes.items()},
    }
    digest.update(json.dumps(head, sort_keys=True, default=str).encode() + b"\0")
    for gene in sorted(dna.genes):
        for key in sorted(dna.genes[gene].arrays):
            _update(digest, f"{gene}/{key}", dna.genes[gene].arrays[key])
    if dna.vector is not None:
        _update(digest, "vector", np.asarray(dna.vector, dtype=np.float32))
    return digest.hexdigest()


def _update(digest: hashlib._Hash, key: str, array: np.ndarray) -> None:
    arr = np.ascontiguousarray(array)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    digest.update(f"{key}|{arr.dtype.str}|{arr.shape}\0".encode())
    digest.update(arr.tobytes())
