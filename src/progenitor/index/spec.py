"""The extractor spec of an index: how every DNA it holds was made.

A registry is created with one spec and refuses DNAs made another way, naming the difference
(the datasketch / TLSH habit: fingerprints made differently are never compared silently). The
spec has three parts:

* ``genes``: gene name -> extractor version. A DNA may hold fewer genes than the spec (a
  black-box endpoint has no weight genes), never another version of one. A gene the spec does
  not list is accepted when this release registers it at the DNA's version (a gene added by a
  later release than the one that created the index), and the index adopts it: its older DNAs
  lack it, and pairs are compared on the genes both hold, as for a black-box DNA. A gene this
  release does not know is refused.
* ``probes``: the probe set (name, hash, kind, shape, n). DNAs whose genes used no probes
  (weights only) fit any spec; the first DNA that used probes fixes them when the spec had none.
* ``vector``: the generator of the learned DNA vectors (name, version, hash), or None when the
  index holds no vectors. Every DNA must agree: all have vectors from the same generator, or none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from progenitor.dna import DNA
from progenitor.errors import IncomparableError, ProgenitorError

__all__ = ["ExtractorSpec", "SpecMismatchError", "current_gene_versions"]


class SpecMismatchError(IncomparableError):
    """A DNA was made with another extractor spec than the index's (the message names how)."""


def current_gene_versions() -> dict[str, int]:
    """Gene name -> version of every gene this release registers."""
    from progenitor.genes import list_genes

    return {g.name: int(g.version) for g in list_genes()}


def _vector_label(spec: dict[str, Any] | None) -> str:
    if not spec:
        return "no learned vector"
    parts = [str(spec.get("name") or spec.get("generator") or "?")]
    if "version" in spec:
        parts.append(f"v{spec['version']}")
    if spec.get("hash"):
        parts.append(f"({str(spec['hash'])[:12]})")
    return "generator " + " ".join(parts)


def _probe_label(probes: dict[str, Any]) -> str:
    return f"{probes.get('name')!r} ({str(probes.get('hash'))[:12]})"


@dataclass(frozen=True)
class ExtractorSpec:
    """How an index's DNAs were made: gene versions, probe set and vector generator."""

    genes: dict[str, int]
    probes: dict[str, Any] | None = None
    vector: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_dna(cls, dna: DNA) -> ExtractorSpec:
        """The spec an empty index adopts for its first DNA.

        Genes are this release's versions overridden by the DNA's own, so later DNAs of this
        release fit unless the DNA came from another release.
        """
        genes = {**current_gene_versions(), **{n: int(v) for n, v in dna.versions.items()}}
        return cls(genes, _probe_info(dna.probes), dna.vector_spec)

    def problems(self, dna: DNA) -> list[str]:
        """Every way ``dna`` differs from this spec (empty when it fits)."""
        ref = dna.model.get("ref", "this DNA")
        out = []
        installed = current_gene_versions()
        for name, version in sorted(dna.versions.items()):
            if name not in self.genes:
                if installed.get(name) == int(version):
                    continue  # a gene added after the index was created: adopted on add
                known = ", ".join(sorted(self.genes)) or "none"
                out.append(f"{ref} has gene {name} v{version}, which the index does not know (index genes: {known})")
            elif int(version) != int(self.genes[name]):
                out.append(f"{ref} has gene {name} v{version}, the index uses v{self.genes[name]}")
        if dna.probes and self.probes and dna.probes.get("hash") != self.probes.get("hash"):
            out.append(
                f"{ref} was extracted with probe set {_probe_label(dna.probes)}, the index "
                f"with {_probe_label(self.probes)}"
            )
        if (dna.vector_spec or None) != (self.vector or None):
            out.append(f"{ref} has {_vector_label(dna.vector_spec)}, the index has {_vector_label(self.vector)}")
        return out

    def check(self, dna: DNA) -> None:
        """Raise SpecMismatchError naming every difference when ``dna`` does not fit."""
        problems = self.problems(dna)
        if problems:
            raise SpecMismatchError(
                "DNA made with another extractor spec than the index: "
                + "; ".join(problems)
                + ". Re-extract it with this index's settings (progenitor index add MODEL) "
                "or use another --db"
            )

    def adopting(self, dna: DNA) -> ExtractorSpec:
        """This spec, with the probe set fixed by ``dna`` when the spec had none yet, and the genes
        ``dna`` holds that the spec does not list (``problems`` accepts only genes this release
        registers at the DNA's version)."""
        spec = self
        if spec.probes is None and dna.probes:
            spec = replace(spec, probes=_probe_info(dna.probes))
        added = {n: int(v) for n, v in dna.versions.items() if n not in spec.genes}
        if added:
            spec = replace(spec, genes={**spec.genes, **added})
        return spec

    def differences(self, other: ExtractorSpec) -> list[str]:
        """Every way ``other`` (say, an export's spec) differs from this one."""
        out = []
        for name in sorted(set(self.genes) | set(other.genes)):
            mine, theirs = self.genes.get(name), other.genes.get(name)
            if mine is not None and theirs is not None and mine != theirs:
                out.append(f"gene {name}: v{theirs} there, v{mine} here")
        if self.probes and other.probes and self.probes.get("hash") != other.probes.get("hash"):
            out.append(f"probe set {_probe_label(other.probes)} there, {_probe_label(self.probes)} here")
        if (self.vector or None) != (other.vector or None):
            out.append(f"{_vector_label(other.vector)} there, {_vector_label(self.vector)} here")
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (stored in the registry's meta table and in exports)."""
        return {
            "genes": dict(sorted(self.genes.items())),
            "probes": self.probes,
            "vector": self.vector,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any] | str) -> ExtractorSpec:
        """Inverse of ``to_json`` (also accepts the JSON text); ProgenitorError if malformed."""
        try:
            data = json.loads(raw) if isinstance(raw, str) else raw
            return cls(
                {k: int(v) for k, v in data["genes"].items()},
                data.get("probes"),
                data.get("vector"),
                data.get("extra") or {},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProgenitorError(f"an extractor spec is malformed ({type(exc).__name__}: {exc})") from exc

    def describe(self) -> str:
        """One line for humans."""
        genes = ", ".join(f"{n} v{v}" for n, v in sorted(self.genes.items()))
        probes = _probe_label(self.probes) if self.probes else "not fixed yet"
        return f"genes: {genes}; probes: {probes}; vectors: {_vector_label(self.vector)}"


def _probe_info(probes: dict[str, Any] | None) -> dict[str, Any] | None:
    if not probes:
        return None
    keep = ("name", "hash", "kind", "shape", "n")
    return {k: probes.get(k) for k in keep}
