"""The benchmark's questions, drawn from a built zoo's ground truth.

Every method answers the same questions:

* **pairs**: the zoo's labelled (source, target) pairs of one split under one scheme. A derived
  pair carries its derivation kind (one edge's kind, or ``chain``); a negative pair its negative
  kind. *Independent* negatives are the kinds of ``INDEPENDENT_KINDS`` (other families:
  trained from their own initialisation, same or other architecture and data); *lineage*
  negatives are related but not derived (``reverse``, ``sibling``, ``cousin``).
* **threshold pairs**: independent negatives of another split (``val``; ``train`` when the scheme
  has no validation split), on which each method's operating threshold is set. To bound the cost
  they are the pairs among that split's roots and a seeded sample of its other models.
* **parent queries**: for each target of the split, its candidate parents are the sources the
  split pairs it with (every root of the split and the intermediate sources of its own family).
  The answer is the target's true parent, or "no parent" for a root; each derived target is asked
  a second time with all of its ancestors removed from the candidates (the answer is then "no
  parent").
* **families**: each family of the split, for tree recovery.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from progenitor.bench.metrics import Query
from progenitor.errors import ProgenitorError
from progenitor.zoo.dna_dataset import ZooDNA

SAME_ARCH_INDEPENDENT = ("same-arch-same-data-other-seed", "same-arch-other-data")
INDEPENDENT_KINDS = (*SAME_ARCH_INDEPENDENT, "other-arch")
MIN_THRESHOLD_PAIRS = 10


@dataclass(frozen=True)
class BenchPair:
    """One labelled pair: ``kind`` is the derivation kind or the negative kind."""

    source: str
    target: str
    derived: bool
    kind: str

    @property
    def independent(self) -> bool:
        """A negative of independently trained models."""
        return not self.derived and self.kind in INDEPENDENT_KINDS

    @property
    def same_arch_independent(self) -> bool:
        """An independent negative whose two models share an architecture."""
        return not self.derived and self.kind in SAME_ARCH_INDEPENDENT


@dataclass
class Tasks:
    """Everything the methods are asked, and the ground truth to grade them."""

    zoo: ZooDNA
    split: str
    scheme: str
    pairs: list[BenchPair]
    threshold_pairs: list[BenchPair]
    threshold_split: str
    queries: list[Query]
    families: dict[str, list[str]]
    parents: dict[str, set[str]]
    roots: set[str] = field(default_factory=set)

    @property
    def derivation_kinds(self) -> list[str]:
        """Derivation kinds present among the split's derived pairs (``chain`` last)."""
        kinds = sorted({p.kind for p in self.pairs if p.derived} - {"chain"})
        return kinds + (["chain"] if any(p.kind == "chain" for p in self.pairs if p.derived) else [])

    def all_pairs(self) -> list[tuple[str, str]]:
        """Every ordered pair a method must score (split pairs, then threshold pairs)."""
        return list(dict.fromkeys([(p.source, p.target) for p in (*self.pairs, *self.threshold_pairs)]))

    def models(self) -> list[str]:
        """Every model some pair or family uses, in manifest order."""
        used = {m for pair in self.all_pairs() for m in pair}
        used |= {m for members in self.families.values() for m in members}
        return [m for m in self.zoo.models if m in used]

    def sources(self) -> set[str]:
        """Models that appear as the source of some pair."""
        return {s for s, _ in self.all_pairs()}

    def summary(self) -> dict[str, Any]:
        """Counts for the results file."""
        derived = [p for p in self.pairs if p.derived]
        negatives = [p for p in self.pairs if not p.derived]
        return {
            "split": self.split,
            "scheme": self.scheme,
            "modality": self.zoo.probes.get("modality", "image"),
            "probe_set": self.zoo.probes["id"],
            "models": len(self.models()),
            "pairs": len(self.pairs),
            "derived_pairs": len(derived),
            "derived_by_kind": _count(p.kind for p in derived),
            "negative_pairs": len(negatives),
            "negatives_by_kind": _count(p.kind for p in negatives),
            "threshold_split": self.threshold_split,
            "threshold_pairs": len(self.threshold_pairs),
            "queries": _count(q.kind for q in self.queries),
            "families": len(self.families),
        }


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return dict(sorted(out.items()))


def _pairs(zoo: ZooDNA, split: str, scheme: str) -> list[BenchPair]:
    return [BenchPair(p.source, p.target, p.derived, p.kind) for p in zoo.pairs(split, scheme, modality=None)]


def _ancestors(parents: dict[str, set[str]], model: str) -> dict[str, int]:
    """Every ancestor of ``model`` with its distance in edges."""
    found: dict[str, int] = {}
    queue = deque([(model, 0)])
    while queue:
        node, d = queue.popleft()
        for parent in sorted(parents.get(node, ())):
            if parent not in found:
                found[parent] = d + 1
                queue.append((parent, d + 1))
    return found


def make_queries(pairs: list[BenchPair], parents: dict[str, set[str]], roots: set[str]) -> list[Query]:
    """Parent-search queries over the sources each target is paired with (see module docstring)."""
    candidates: dict[str, set[str]] = {}
    for p in pairs:
        candidates.setdefault(p.target, set()).add(p.source)
    queries = []
    for target in sorted(candidates):
        cands = candidates[target] - {target}
        if not cands:
            continue
        ancestors = _ancestors(parents, target)
        expected = parents.get(target, set()) & cands
        if not expected and ancestors.keys() & cands:
            nearest = min(d for a, d in ancestors.items() if a in cands)
            expected = {a for a, d in ancestors.items() if a in cands and d == nearest}
        kind = "parent-present" if expected else ("root" if target in roots else "orphan")
        queries.append(Query(target, tuple(sorted(cands)), frozenset(expected), kind))
        hidden = cands - ancestors.keys()
        if ancestors and hidden:
            queries.append(Query(target, tuple(sorted(hidden)), frozenset(), "hidden-ancestors"))
    return queries


def _threshold_pairs(
    zoo: ZooDNA, split: str, scheme: str, max_models: int, seed: int
) -> tuple[list[BenchPair], str]:
    """Independent negatives of ``split`` (or ``train``) among a seeded sample of its models."""
    for name in dict.fromkeys((split, "train")):
        pool = [p for p in _pairs(zoo, name, scheme) if p.independent]
        if len(pool) < MIN_THRESHOLD_PAIRS:
            continue
        models = {m for p in pool for m in (p.source, p.target)}
        roots = sorted(m for m in models if zoo.models[m].get("root"))
        others = sorted(models - set(roots))
        keep_n = min(max(0, max_models - len(roots)), len(others))
        picked = set(roots) | set(np.random.default_rng(seed).choice(others, size=keep_n, replace=False).tolist())
        chosen = [p for p in pool if p.source in picked and p.target in picked]
        if len(chosen) >= MIN_THRESHOLD_PAIRS:
            return chosen, name
        return pool, name
    raise ProgenitorError(
        f"no split of scheme {scheme!r} has {MIN_THRESHOLD_PAIRS} independent negatives to set thresholds on"
    )


def make_tasks(
    zoo: ZooDNA,
    split: str = "test",
    scheme: str = "family",
    threshold_split: str = "val",
    max_threshold_models: int = 60,
    seed: int = 0,
) -> Tasks:
    """The benchmark's tasks on one split of a zoo (see the module docstring)."""
    pairs = _pairs(zoo, split, scheme)
    if not any(p.derived for p in pairs):
        raise ProgenitorError(f"{zoo.root}: the {split!r} split of scheme {scheme!r} has no derived pairs")
    if not any(not p.derived for p in pairs):
        raise ProgenitorError(f"{zoo.root}: the {split!r} split of scheme {scheme!r} has no negative pairs")
    parents: dict[str, set[str]] = {}
    for edge in zoo.manifest["edges"]:
        parents.setdefault(edge["child"], set()).add(edge["parent"])
    roots = {m for m, entry in zoo.models.items() if entry.get("root") or m not in parents}
    threshold_pairs, threshold_split = _threshold_pairs(zoo, threshold_split, scheme, max_threshold_models, seed)
    used = {m for p in pairs for m in (p.source, p.target)}
    families: dict[str, list[str]] = {}
    for m in zoo.models:
        if m in used:
            families.setdefault(zoo.models[m]["family"], []).append(m)
    return Tasks(zoo, split, scheme, pairs, threshold_pairs, threshold_split,
                 make_queries(pairs, parents, roots), families, parents, roots)
