"""Parent search: which registered models is a target most likely derived from?

Two stages:

1. **Retrieval**: up to ``exhaustive_up_to`` (2,000) registered models, every one is a candidate.
   Beyond, the ``candidates`` nearest weight keys (``progenitor.index.keys``: for white-box
   DNAs; 98.9% of detectable parents within the 50 nearest on the standard zoo) and the
   ``candidates`` nearest learned DNA vectors (76%; the union 99.5%), cosine, faiss ``IndexFlatIP`` or exact
   numpy (same results); the union is re-ranked. Without either, every model is a candidate.
2. **Re-ranking** with the full verdict: each candidate is compared with the target
   (``score_genes`` + ``decide`` with the shipped or given calibration); candidates are ordered
   by verdict (``derived`` first), then by the cost of the edge "candidate is the target's parent"
   (closeness and direction, see ``progenitor.index._relate``).

The answer is the ``top`` candidates with their verdicts. The likely parent is the best
*eligible* candidate (``progenitor.index._relate.parent_basis``): ``derived``, not placed
*below* the target by the direction signal (direction >= 0.45: ``DIRECTION_TOLERANCE``), and,
when the target looks made from it by a copying step (more pruned zeros, or float16/int8 values), holding the target's
sampled weight values (the ``weight_values`` gene: within rounding of each value's row after
float16/int8, so BatchNorm folded into a convolution on export does not count as a change;
exactly after pruning), otherwise with its hidden units in the target's order unless the two compute the
same function (a candidate permuted *and* changed relative to the target is a relative that meets
it at an ancestor, typically a permuted copy of the target's unregistered parent). The search
**abstains** ("no likely parent")
when there is none: no candidate is ``derived``, every related one looks derived from the target
rather than the other way, or the target is a pruned or converted copy of a model that is not
registered (its relatives do not hold its values). On the standard zoo's validation families the
copy rule took correct abstentions from 35% to 65% of the targets whose ancestors were hidden,
and cost 4.7 points of top-1 accuracy (0.629 -> 0.582: retrained prunes and BatchNorm-folded
int8 exports, whose values moved, lost their parent; judged relative to rows, the folded exports
have it back; retrained prunes have it back through the mask test of ``parent_basis``, named as
the answer's ``basis``).
When the target is itself registered, registration order nudges the direction as in the lineage
tree (``order_prior``), and near-ties among the best candidates (within ``tie_tolerance`` of the
best cost: near-identical copies of one model) go to the earliest registered, the search's
version of the tree's preference for ancestors.

**Lineage check** (``lineage_check``, default 8): the best candidates that could be the parent are
often the parent and its other children (a sibling one light fine-tune from the parent is as close
to the target as the parent is). The search therefore recovers the lineage tree of the target and
its ``lineage_check`` best related candidates, eligible or not (``progenitor.index.build_tree``,
with its centrality prior and alignment bonus), and answers the target's parent in that tree when
it is an eligible candidate, and abstains when that tree makes the target the root
(``SearchResult.rooted``: its relatives look derived from it, or are copies it cannot be told
from, like a permuted copy of an original). On the standard zoo's validation families the check
took top-1 parent accuracy from 0.55 to 0.61 (``lineage_check_parent``), and abstaining on a
rooted target took correct abstentions from 65.0% to 72.6% at no cost in top-1; it costs one
verdict per pair of those candidates. The tree sees the ineligible relatives too because they
place the parent: a parent's permuted copy or its children make it the family's centre.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from progenitor._memo import LRU
from progenitor.api import score_genes
from progenitor.calibration import Calibration, load_calibration
from progenitor.dna import DNA, load_dna
from progenitor.errors import ProgenitorError
from progenitor.index._dna import genome_hash
from progenitor.index._relate import (
    DIRECTION_TOLERANCE,
    MASKED,
    VERDICT_RANK,
    Relation,
    edge_cost,
    learned_bundle,
    logit,
    parent_basis,
    relate,
    related_either_way,
    sigmoid,
    strongest_bases,
)
from progenitor.index.direction import DirectionSignal, get_direction
from progenitor.index.keys import behaviour_key, retrieval_key
from progenitor.index.registry import Entry, Registry
from progenitor.index.vectors import Backend, VectorIndex
from progenitor.probes import list_presets
from progenitor.verdict import DEFAULT_ALPHA

LINEAGE_CHECK = 8  # chosen on the standard zoo's validation families (4: worse; 8 and more: equal)
# Decoded candidate DNAs kept between the queries of one ParentSearch (about 0.75 MB each with
# what comparisons derive from them, for the standard zoo's models), and verdicts between two
# registered models (the lineage check's), which do not depend on the query.
CACHED_DNAS = 256
CACHED_PAIRS = 8192

__all__ = ["Candidate", "ParentSearch", "SearchResult", "resolve_target", "search_parents"]


# Below this many registered models every one is re-ranked (exact); above, vector retrieval.
EXHAUSTIVE_UP_TO = 2000


@dataclass
class Candidate:
    """A registered model considered as the target's parent."""

    entry: Entry
    relation: Relation
    direction: float
    cost: float
    retrieval: float | None = None
    basis: str | None = None  # why it may be named the parent (``progenitor.index._relate.parent_basis``)

    @property
    def eligible(self) -> bool:
        """Whether it may be named the parent."""
        return self.basis is not None

    def to_json(self) -> dict[str, Any]:
        """JSON form: the registered model, the verdict and the ranking numbers."""
        comparison = self.relation.comparison
        return {
            "name": self.entry.name,
            "ref": self.entry.ref,
            "sha256": self.entry.sha256,
            **self.relation.to_json(),
            "direction": round(self.direction, 4),
            "eligible": self.eligible,
            "basis": self.basis,
            "cost": round(self.cost, 6),
            "retrieval_similarity": None if self.retrieval is None else round(float(self.retrieval), 6),
            "evidence": None if comparison is None else comparison.evidence,
        }


@dataclass
class SearchResult:
    """The likely parents of one target (``parent`` None = abstention)."""

    target: str
    candidates: list[Candidate]
    method: str
    n_registered: int
    n_scored: int
    seconds: float
    excluded: list[str] = field(default_factory=list)
    rooted: bool = False  # the lineage check made the target the root of its related candidates

    @property
    def parent(self) -> Candidate | None:
        """The most likely parent, or None (abstention): see the module docstring."""
        if self.rooted:
            return None
        for candidate in self.candidates:
            if candidate.eligible:
                return candidate
        return None

    @property
    def reason(self) -> str:
        """Why the search named a parent or abstained, in one line."""
        best = self.parent
        if best is not None:
            if best.basis == MASKED:
                return (f"{best.entry.name} is derived-related, not below the target, and its smallest weights are "
                        "where the target has zeros (pruned, then retrained): a light fine-tune of the "
                        "actual parent would pass this test as well")
            return f"{best.entry.name} is derived-related and not below the target"
        related = [c for c in self.candidates if c.relation.verdict == "derived"]
        if self.rooted:
            names = ", ".join(c.entry.name for c in related)
            return (f"in the lineage tree of the target and its related candidates ({names}) the target "
                    "is the root: they look derived from it, or are copies it cannot be told from")
        above = [c for c in related if c.direction >= 0.5 - DIRECTION_TOLERANCE]
        unaligned = ", ".join(c.entry.name for c in above if c.relation.unaligned_change)
        copies = ", ".join(c.entry.name for c in above if not c.relation.unaligned_change)
        reasons = []
        if copies:
            reasons.append(f"the target looks pruned or converted; related models ({copies}) do not hold its values")
        if unaligned:
            reasons.append(f"related models ({unaligned}) would be its parent only by a permutation and a change")
        if reasons:
            return "; ".join(reasons)
        if related:
            names = ", ".join(c.entry.name for c in related)
            return f"related models ({names}) look derived from the target, not the other way"
        return "no registered model is derived-related to the target"

    def to_json(self) -> dict[str, Any]:
        """What ``progenitor search --json`` prints for the target."""
        best = self.parent
        return {
            "target": self.target,
            "parent": None if best is None else best.entry.name,
            "abstained": best is None,
            "rooted": self.rooted,
            "reason": self.reason,
            "candidates": [c.to_json() for c in self.candidates],
            "method": self.method,
            "registered": self.n_registered,
            "scored": self.n_scored,
            "excluded": self.excluded,
            "seconds": round(self.seconds, 4),
        }


def resolve_target(
    registry: Registry,
    target: str | Path | DNA,
    probes: Any = None,
    access: str = "auto",
    **load_options: Any,
) -> tuple[DNA, str, Entry | None]:
    """The target's DNA (made with the registry's spec), a display name, its entry if registered.

    ``target`` is a DNA, a ``.dna`` file, a model reference (extracted with the registry's probe
    set), or the key of a registered model (when no such file exists).
    """
    from progenitor.api import extract

    if isinstance(target, DNA):
        dna, name = target, str(target.model.get("ref"))
    elif str(target).endswith(".dna") and Path(target).is_file():
        dna, name = load_dna(target), str(target)
    elif not Path(str(target)).exists() and registry.lookup(str(target)):
        entry = registry.get(str(target))
        return registry.dna(entry), entry.name, entry
    else:
        text = str(target)
        if not Path(text).exists() and not text.startswith(("http://", "https://")) and ":" not in text:
            raise ProgenitorError(f"{text}: not a file, and no registered model has that name, id or hash")
        spec = registry.spec
        chosen = probes if probes is not None else registry.probe_set()
        if chosen is None and spec is not None and spec.probes:
            chosen = spec.probes.get("name")  # a preset regenerates; a file must be given
            if str(chosen).partition(":")[0] not in list_presets() and not Path(str(chosen)).exists():
                raise ProgenitorError(
                    f"{registry.path} keeps no probe set and its models were probed with {chosen!r}: "
                    "pass --probes with that file"
                )
        genes = list(spec.genes) if spec is not None else None
        dna = extract(target, probes=chosen, access=access, genes=genes, **load_options)
        name = str(target)
    spec = registry.spec
    if spec is not None:
        spec.check(dna)
    return dna, name, registry.find_dna(dna)


class ParentSearch:
    """Search parents in a registry; loads the vector index once for many queries.

    Args:
        registry: the registry to search.
        calibration: a Calibration or its JSON path (default: the shipped one).
        alpha: the verdict's accepted false-positive rate.
        backend: vector backend (``auto``, ``faiss``, ``numpy``).
        direction: a direction signal name or function (``progenitor.index.direction``).
        direction_weight: weight of the direction's doubt in the ranking cost.
        order_prior: log-odds for an earlier-registered candidate being the parent of a
            registered target (0: off).
        tie_tolerance: among the best candidates whose costs lie within this of the best (and
            that are not below the target), the earliest registered comes first (needs the order
            prior; 0: off). The tree's tie rule, for a search.
        learned: the learned Model DNA fused into the verdicts as in ``compare`` (True: the
            packaged default when one ships; False: none).
        exhaustive_up_to: collections up to this size are re-ranked exhaustively.
        lineage_check: how many of the best related candidates the lineage check builds a tree
            over (see the module docstring; 0 or 1: off).
        cached_dnas: decoded candidate DNAs kept between queries (least recently used dropped;
            0: none). Queries about models of one family share most candidates, so a batch of
            searches decodes each once, and what comparisons derive from a DNA (float32 sketches,
            kernels, its learned embedding) is kept with it.
        cached_pairs: verdicts between two registered models (the lineage check's) kept between
            queries (0: none). Answers are the same with and without either cache.
    """

    def __init__(
        self,
        registry: Registry,
        calibration: Calibration | str | Path | None = None,
        alpha: float = DEFAULT_ALPHA,
        backend: Backend = "auto",
        direction: str | DirectionSignal = "auto",
        direction_weight: float = 1.0,
        order_prior: float = 0.5,
        tie_tolerance: float = 0.5,
        learned: Any = True,
        exhaustive_up_to: int = EXHAUSTIVE_UP_TO,
        lineage_check: int = LINEAGE_CHECK,
        cached_dnas: int = CACHED_DNAS,
        cached_pairs: int = CACHED_PAIRS,
    ) -> None:
        self.registry = registry
        self.exhaustive_up_to = exhaustive_up_to
        self.calibration = calibration if isinstance(calibration, Calibration) else load_calibration(calibration)
        self.alpha = alpha
        self.bundle = learned_bundle(learned)
        self.direction = get_direction(direction, self.bundle)
        self.direction_weight = direction_weight
        self.order_prior = order_prior
        self.tie_tolerance = tie_tolerance
        self.lineage_check = lineage_check
        self.dna_cache: LRU[tuple[int, str], DNA] = LRU(cached_dnas)
        self.pair_cache: LRU[tuple[str, str], Relation] = LRU(cached_pairs)
        self.entries = {e.id: e for e in registry.entries()}
        ids, vectors = registry.vectors()
        self.index = None
        if len(self.entries) and len(ids) == len(self.entries):
            self.index = VectorIndex(ids, vectors, backend)
        key_ids, keys = registry.keys()
        self.key_index = VectorIndex(key_ids, keys, backend) if len(key_ids) else None
        # Behaviour keys serve targets without weights (against every registered model) and
        # registered models without weights (for every target); read when such a query first
        # comes (a white-box registry and target never need them).
        self.backend = backend
        self.weight_keyed = key_ids
        self.keyless = len(key_ids) < len(self.entries)
        self._behaviour_indexes: dict[bool, VectorIndex | None] = {}
        if lineage_check > 1:
            import networkx  # noqa: F401 - the lineage check's solver: loaded here, not in a query (0.2 s)

    def candidates_for(self, target: DNA, k: int) -> tuple[list[int], dict[int, float], str]:
        """Registered ids to re-rank, their retrieval similarity, and how they were chosen.

        Collections up to ``exhaustive_up_to`` models are re-ranked exhaustively (exact, and fast
        enough): nothing can lose a parent there. Larger ones retrieve the ``k`` nearest weight
        keys (``progenitor.index.keys``, when the target has weight genes), the ``k`` nearest
        behaviour keys (of every model when the target has no weight genes, else of the models
        without: a black-box model's learned vector is a poor key among white-box ones) and the
        ``k`` nearest learned vectors (when every model has one), and re-rank the union; with none
        of them, all.
        """
        if len(self.entries) <= self.exhaustive_up_to:
            return sorted(self.entries), {}, "exhaustive"
        found: dict[int, float] = {}
        how = []
        key = retrieval_key(target)
        if self.key_index is not None and key is not None:
            ids, scores = self.key_index.search(key, k)
            found.update({int(i): float(s) for i, s in zip(ids, scores, strict=True)})
            how.append(f"key:{self.key_index.backend}")
        if key is None or self.keyless:
            behaviour = behaviour_key(target)
            # A target with a weight key finds registered models with one by it.
            index = self._behaviour_keys(keyless_only=key is not None)
            if index is not None and behaviour is not None:
                ids, scores = index.search(behaviour, k)
                for i, score in zip(ids, scores, strict=True):
                    found.setdefault(int(i), float(score))
                how.append(f"behaviour-key:{index.backend}")
        if self.index is not None and target.vector is not None:
            ids, scores = self.index.search(target.vector, k)
            for i, score in zip(ids, scores, strict=True):
                found.setdefault(int(i), float(score))
            how.append(f"vector:{self.index.backend}")
        if not how:
            return sorted(self.entries), {}, "exhaustive"
        return sorted(found), found, "+".join(how)

    def _behaviour_keys(self, keyless_only: bool) -> VectorIndex | None:
        """The behaviour keys of every registered model, or of those without a weight key, read
        from the registry on first use."""
        if keyless_only not in self._behaviour_indexes:
            ids, keys = self.registry.behaviour_keys()
            if keyless_only:
                keep = ~np.isin(ids, self.weight_keyed)
                ids, keys = ids[keep], keys[keep]
            self._behaviour_indexes[keyless_only] = VectorIndex(ids, keys, self.backend) if len(ids) else None
        return self._behaviour_indexes[keyless_only]

    def __call__(
        self,
        target: DNA,
        top: int = 5,
        candidates: int | None = None,
        name: str | None = None,
        order: int | None = None,
    ) -> SearchResult:
        """The ``top`` likely parents of ``target`` (a DNA made with the registry's spec).

        Args:
            target: the target's DNA.
            top: how many candidates to return.
            candidates: how many nearest vectors to re-rank (default ``max(10 top, 50)``).
            name: the target's display name.
            order: the target's registry id when it is registered (enables the order prior).
        """
        if top < 1:
            raise ProgenitorError(f"--top must be at least 1, not {top}")
        started = time.perf_counter()
        label = name or str(target.model.get("ref"))
        own = genome_hash(target)
        sha = target.model.get("sha256")
        k = candidates if candidates is not None else max(10 * top, 50)
        ids, retrieval, method = self.candidates_for(target, k + 1)
        ranked, excluded = [], []
        dnas: dict[int, DNA] = {}
        scores: dict[int, dict[str, Any]] = {}  # kept for the candidates shown (see below)
        for entry, dna in self._candidates(ids):
            if entry.dna_hash == own or (sha and entry.sha256 == sha):
                excluded.append(entry.name)  # the target itself
                continue
            scores[entry.id] = score_genes(dna, target)
            relation = relate(dna, target, self.calibration, self.alpha, (entry.name, label), self.bundle,
                              learned_if_related=True, scores=scores[entry.id])
            direction = self._direction(dna, target, entry.id, order)
            cost = edge_cost(relation, direction, self.direction_weight)
            basis = parent_basis(relation, direction, dna, target)
            ranked.append(Candidate(entry, relation, direction, cost, retrieval.get(entry.id), basis))
            dnas[entry.id] = dna
        bases = strongest_bases({c.entry.id: c.basis for c in ranked})
        for c in ranked:
            c.basis = bases[c.entry.id]
        ranked.sort(key=lambda c: (VERDICT_RANK[c.relation.verdict], c.cost, c.entry.id))
        if ranked and self.order_prior and self.tie_tolerance > 0:
            # Near-ties (copies of one model: fp16, permuted, noised) go to the earliest registered.
            head = ranked[0]
            ties = [
                c
                for c in ranked
                if c.relation.verdict == head.relation.verdict
                and c.cost <= head.cost + self.tie_tolerance
                and c.eligible
            ]
            if ties:
                first = min(ties, key=lambda c: c.entry.id)
                ranked.remove(first)
                ranked.insert(0, first)
        eligible = [c for c in ranked if c.eligible]
        # The tree sees every related candidate (a parent's permuted copy or child places the
        # parent at the family's centre), but only an eligible one may become the answer.
        chosen = [c for c in ranked if c.relation.verdict == "derived"][: self.lineage_check]
        rooted = False
        if self.lineage_check > 1 and eligible and len(chosen) > 1:
            pick = lineage_check_parent(
                [(c.entry.name, dnas[c.entry.id], c.relation, c.entry.id) for c in chosen],
                target,
                order,
                self.calibration,
                self.alpha,
                self.direction,
                self.order_prior,
                self.bundle,
                self._registered_pair({c.entry.name: (c.entry, dnas[c.entry.id]) for c in chosen}),
            )
            rooted = pick is None
            if pick in {c.entry.name for c in eligible} and pick != ranked[0].entry.name:
                best = next(c for c in chosen if c.entry.name == pick)
                ranked.remove(best)
                ranked.insert(0, best)
        if self.bundle is not None:
            # What is shown carries the classifier's evidence, as ``compare`` gives it; ranking
            # skipped it where it cannot change a verdict (``relate``'s ``learned_if_related``).
            for c in ranked[:top]:
                if c.relation.comparison is not None and "learned_dna" not in c.relation.comparison.evidence:
                    names = (c.entry.name, label)
                    c.relation = relate(dnas[c.entry.id], target, self.calibration, self.alpha, names, self.bundle,
                                        scores=scores[c.entry.id])
        return SearchResult(
            label,
            ranked[:top],
            method,
            len(self.entries),
            len(ranked),
            time.perf_counter() - started,
            excluded,
            rooted,
        )

    def _candidates(self, ids: list[int]) -> list[tuple[Entry, DNA]]:
        """(entry, DNA) of the registered ids in id order, decoded once while ``dna_cache`` keeps them."""
        found: dict[int, tuple[Entry, DNA]] = {}
        for i in ids:
            entry = self.entries.get(i)
            dna = None if entry is None else self.dna_cache.get((i, entry.dna_hash))
            if entry is not None and dna is not None:
                found[i] = (entry, dna)
        for entry, dna in self.registry.dnas([i for i in ids if i not in found]):
            found[entry.id] = (entry, self.dna_cache.put((entry.id, entry.dna_hash), dna))
        return [found[i] for i in sorted(found)]

    def _registered_pair(self, members: dict[str, tuple[Entry, DNA]]) -> Callable[[str, str], Relation]:
        """The lineage check's verdict between two registered candidates (by name), kept in
        ``pair_cache``: it depends on the two models only."""

        def pair(x: str, y: str) -> Relation:
            (source, a), (target, b) = members[x], members[y]
            key = (source.dna_hash, target.dna_hash)
            relation = self.pair_cache.get(key)
            if relation is None:
                relation = relate(a, b, self.calibration, self.alpha, (x, y), self.bundle, learned_if_related=True)
                self.pair_cache.put(key, relation)
            return relation

        return pair

    def _direction(self, source: DNA, target: DNA, source_order: int, order: int | None) -> float:
        a, b = self.direction(source, target), self.direction(target, source)
        p = a / (a + b) if a + b > 0 else 0.5
        if order is None or not self.order_prior:
            return p
        return sigmoid(logit(p) + self.order_prior * (1.0 if source_order < order else -1.0))


def lineage_check_parent(
    candidates: list[tuple[str, DNA, Relation, int]],
    target: DNA,
    target_order: int | None,
    calibration: Calibration,
    alpha: float,
    direction: DirectionSignal,
    order_prior: float,
    bundle: Any = None,
    relate_pair: Callable[[str, str], Relation] | None = None,
) -> str | None:
    """The target's parent in the lineage tree of the target and its best candidates, or None.

    ``candidates``: (name, DNA, relation of candidate -> target, registration order) of the
    related candidates, best first (the caller checks that the answer is eligible). Pairs of
    candidates get the full verdict (``relate_pair`` replaces it, e.g. with cached verdicts); a
    pair counts as related when either orientation is, as in the tree. None when the tree makes
    the target a root: the search then abstains.
    """
    from progenitor.index.tree import Member, build_tree

    sentinel = "\0target"
    names = {name: i for i, (name, *_rest) in enumerate(candidates)}
    last = max((o for *_rest, o in candidates), default=0) + 1
    members = [Member(name, dna, order=o) for name, dna, _, o in candidates]
    members.append(Member(sentinel, target, order=last if target_order is None else target_order))

    dna_of = {name: dna for name, dna, _, _ in candidates}

    def verdict(x: str, y: str) -> Relation:
        if relate_pair is not None:
            return relate_pair(x, y)
        return relate(dna_of[x], dna_of[y], calibration, alpha, (x, y), bundle, learned_if_related=True)

    def between(a: Member, b: Member) -> Relation:
        if sentinel in (a.name, b.name):
            return candidates[names[b.name if a.name == sentinel else a.name]][2]
        return related_either_way(verdict, a.name, b.name, bundle is not None)

    tree = build_tree(members, calibration=calibration, alpha=alpha, direction=direction,
                      order_prior=order_prior, relate_fn=between, learned=False)
    parent = tree.parent[sentinel]
    return parent if parent in names else None


def search_parents(
    registry: Registry, target: DNA, top: int = 5, candidates: int | None = None, **options: Any
) -> SearchResult:
    """One parent search (``options`` go to ``ParentSearch``); see the module docstring."""
    return ParentSearch(registry, **options)(target, top=top, candidates=candidates)
