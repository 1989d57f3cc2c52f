"""Every benchmarked method behind one adapter: ours (``progenitor``, ``progenitor-genes``) and
each registered baseline.

An adapter splits a method the way the benchmark measures it: ``fingerprint`` (timed per model,
its bytes counted), ``target_fingerprint`` for source-dependent methods (ModelDiff queries the
target on the source's searched inputs: a per-pair cost), ``score`` (timed per pair) and, where
the method has its own rules, ``pick_parent`` (Nikolić et al.'s Holm-Bonferroni parent test) and
the verdict it reaches at its operating point.

Our two rows share one DNA per model (extracted once, with the zoo's probe set and a sample of
the model's training data, exactly as ``progenitor.zoo.dna_dataset.ZooDNA`` extracts it):

* ``progenitor``: the full verdict of ``compare_many`` (genes + the learned Model DNA when one is
  given or ships); rank score ``-log10`` of the combined p-value; operating point: the verdict
  ``derived`` at ``alpha``;
* ``progenitor-genes``: the same with ``learned=False`` (training-free);
* ``progenitor-black``: ``progenitor-genes`` on what a black-box model gives (``DNA.at_access``:
  the genes that read outputs only; the recipe, read from the layers, unknown), the access the
  issue's distillation and extraction targets are set for.
"""

from __future__ import annotations

import functools
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from progenitor.api import compare_many, extract
from progenitor.baselines import (
    BaselineNotApplicable,
    fingerprint_nbytes,
    get_baseline,
    list_baselines,
    parent_test,
)
from progenitor.baselines._base import Baseline
from progenitor.calibration import Calibration
from progenitor.dna import DNA
from progenitor.errors import ProgenitorError
from progenitor.genes import GeneNotApplicable
from progenitor.index._relate import Relation, edge_cost, parent_basis, relate, relation_of, strongest_bases
from progenitor.models.base import Model
from progenitor.probes import ProbeSet
from progenitor.verdict import DEFAULT_ALPHA
from progenitor.zoo.dna_dataset import _data_sample  # the zoo's own sample of a model's training data

NOT_APPLICABLE = (BaselineNotApplicable, GeneNotApplicable, ProgenitorError, NotImplementedError)
P_FLOOR = 1e-300
OURS = ("progenitor", "progenitor-genes", "progenitor-black")


@dataclass
class PairResult:
    """A method's answer on one pair.

    ``score``: higher means more likely derived (``nan`` when the method could not score it);
    ``p_value`` where the method defines one; ``decided``: the method's own verdict at its
    operating point where it has one (ours: verdict ``derived``); ``tiebreak`` orders equal
    scores in parent search; ``extra``: numbers kept for trees and the per-pair file.
    """

    score: float
    p_value: float | None = None
    decided: bool | None = None
    tiebreak: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


MISSING = PairResult(float("nan"))


@dataclass
class BenchContext:
    """What every adapter may use: the probe set, ours' calibration and learned DNA, alpha."""

    probes: ProbeSet
    calibration: Calibration
    bundle: Any = None  # a LearnedDNA, or None
    alpha: float = DEFAULT_ALPHA
    dnas: dict[str, tuple[DNA, float]] = field(default_factory=dict)  # shared by our two rows


class Method(ABC):
    """One benchmarked method (see the module docstring)."""

    name: str
    access: str
    family: str  # "ours" or "baseline"
    source_dependent: bool = False
    own_parent_test: bool = False  # pick_parent replaces argmax + operating point
    min_candidates: int = 1
    paper: str = ""

    @abstractmethod
    def fingerprint(self, model: Model, entry: dict[str, Any]) -> tuple[Any, float]:
        """The method's fingerprint of ``model`` and the seconds it took (may raise NotApplicable)."""

    @abstractmethod
    def nbytes(self, fp: Any) -> int:
        """Bytes of a fingerprint (what a registry would store per model)."""

    def target_fingerprint(self, model: Model, entry: dict[str, Any], fp_source: Any) -> Any:
        """The target's fingerprint for one source (only source-dependent methods override)."""
        raise NotImplementedError

    @abstractmethod
    def score(self, fp_source: Any, fp_targets: Sequence[Any]) -> list[PairResult]:
        """Results for one source against several targets (MISSING where not applicable)."""

    def pick_parent(self, target: str, fp_target: Any, candidates: dict[str, Any],
                    results: dict[tuple[str, str], PairResult]) -> str | None:
        """The method's own parent rule (only where ``own_parent_test``); None means "no parent".

        ``candidates`` maps candidate names to fingerprints (at least ``min_candidates``);
        ``results`` holds the pair results already computed, keyed ``(source, target)``.
        """
        raise NotImplementedError

    @property
    def has_own_verdict(self) -> bool:
        """Whether ``PairResult.decided`` is set (the method decides by its own rule)."""
        return False


class ProgenitorMethod(Method):
    """Our verdict through ``compare_many`` (learned or training-free, see the module docstring)."""

    family = "ours"
    paper = "this project: Model DNA (Mu et al., ECAI 2024) with calibrated training-free genes"

    def __init__(self, name: str, context: BenchContext, learned: bool, access: str = "white") -> None:
        self.name = name
        self.context = context
        self.bundle = context.bundle if learned else None
        self.access = access

    own_parent_test = True

    @property
    def has_own_verdict(self) -> bool:
        return True

    def direction(self, a: DNA, b: DNA) -> float:
        """P(a is the parent of b), antisymmetrised, with ``progenitor search``'s default signal
        (``auto``: ``weight_stats`` between models with weights, else the learned head)."""
        from progenitor.index.direction import get_direction

        signal = get_direction("auto", self.bundle)
        forward, backward = signal(a, b), signal(b, a)
        return forward / (forward + backward) if forward + backward > 0 else 0.5

    def pick_parent(self, target: str, fp_target: Any, candidates: dict[str, Any],
                    results: dict[tuple[str, str], PairResult]) -> str | None:
        """The rule of ``progenitor search`` (``progenitor.index.search``): among the candidates
        that may be the parent (``progenitor.index._relate.parent_basis``: ``derived``, not placed
        below the target, holding the values of a pruned or converted target or, retrained after
        pruning, its mask, unless another holds its values (``strongest_bases``), not permuted
        and changed in one step), the cheapest parent edge (``progenitor.index._relate.edge_cost``),
        unless the search's lineage check over the best eight related candidates names another
        eligible one; none when no candidate is eligible."""
        from progenitor.index.direction import get_direction
        from progenitor.index.search import LINEAGE_CHECK, lineage_check_parent

        def result(a: str, b: str) -> PairResult:
            if (a, b) not in results:
                dna_a = fp_target if a == target else candidates[a]
                dna_b = fp_target if b == target else candidates[b]
                results[(a, b)] = self.score(dna_a, [dna_b])[0]
            return results[(a, b)]

        related, bases = [], {}
        for name, dna in candidates.items():
            rel = self.relation(result(name, target))
            if rel.verdict != "derived":
                continue
            d = self.direction(dna, fp_target)
            related.append((edge_cost(rel, d, 1.0), name))
            bases[name] = parent_basis(rel, d, dna, fp_target)
        eligible = {name for name, basis in strongest_bases(bases).items() if basis is not None}
        ranked = [name for _, name in sorted(related) if name in eligible]
        if not ranked:
            return None
        context = [name for _, name in sorted(related)[: max(LINEAGE_CHECK, 1)]]
        if len(context) > 1:
            # Registration order is no evidence here (the zoo's order would leak the lineage).
            pick = lineage_check_parent(
                [(n, candidates[n], self.relation(result(n, target)), 0) for n in context], fp_target, 0,
                self.context.calibration, self.context.alpha, get_direction("auto", self.bundle), 0.0,
                self.bundle, relate_pair=lambda a, b: self.relation(result(a, b)))
            if pick is None:  # the tree roots the target: the search abstains
                return None
            if pick in eligible:
                return pick
        return ranked[0]

    @staticmethod
    def relation(result: PairResult) -> Relation:
        """The index's Relation for a cached pair result (verdict, probability, strength, alignment),
        as search and trees judge the pair (``progenitor.index._relate.relate``: ``compare``'s
        verdict, the strength on the pooled null)."""
        if "relation" not in result.extra and "lineage" in result.extra:
            result.extra["relation"] = result.extra.pop("lineage")()  # judged when first needed
        relation = result.extra.get("relation")
        return relation if relation is not None else Relation(result.extra.get("verdict", "unrelated"), 0.0, None, 0.0)

    def _dna(self, model: Model, entry: dict[str, Any]) -> tuple[DNA, float]:
        key = entry["id"]
        if key not in self.context.dnas:
            started = time.perf_counter()
            dna = extract(model, probes=self.context.probes, data=_data_sample(entry.get("data")), learned=False)
            dna.model["ref"] = key
            self.context.dnas[key] = (dna, time.perf_counter() - started)
        return self.context.dnas[key]

    def fingerprint(self, model: Model, entry: dict[str, Any]) -> tuple[Any, float]:
        dna, seconds = self._dna(model, entry)  # the time of the whole DNA, also for a narrower view
        dna = dna.at_access(self.access)
        if self.bundle is not None:  # the learned DNA vector costs one generator pass more
            started = time.perf_counter()
            self.bundle.embed([dna])
            seconds += time.perf_counter() - started
        return dna, seconds

    def nbytes(self, fp: Any) -> int:
        vector = 4 * int(self.bundle.generator.dim) if self.bundle is not None else 0
        return int(fp.nbytes()) + vector

    def score(self, fp_source: Any, fp_targets: Sequence[Any]) -> list[PairResult]:
        """``compare``'s verdict on each pair (the detection metrics), and the index's relation of
        it (parent queries and trees), as ``progenitor compare`` and ``progenitor search`` give them."""
        results = compare_many(fp_source, list(fp_targets), calibration=self.context.calibration,
                               alpha=self.context.alpha, learned=self.bundle if self.bundle is not None else False)
        return [
            _ours(relation_of(c, fp_source, t), functools.partial(_lineage, fp_source, t, self.context, self.bundle))
            for c, t in zip(results, fp_targets, strict=True)
        ]


def _lineage(source: DNA, target: DNA, context: BenchContext, bundle: Any) -> Relation:
    """The relation search and trees judge for a pair, without its evidence (the bench keeps
    every pair: the numbers, not the evidence)."""
    relation = relate(source, target, context.calibration, context.alpha, bundle=bundle, learned_if_related=True)
    relation.comparison = None
    return relation


def _ours(verdict: Relation, lineage: Callable[[], Relation]) -> PairResult:
    """A pair's result: ``compare``'s verdict now, the index's relation when ``relation`` asks
    (only the parent queries' and trees' pairs need it; the compare timing leaves it out)."""
    p = verdict.p_value
    if p is None:
        return PairResult(float("nan"), None, False, 0.0, {"verdict": verdict.verdict, "lineage": lineage})
    return PairResult(-math.log10(max(p, P_FLOOR)), p, verdict.verdict == "derived", verdict.strength,
                      {"lineage": lineage})


class BaselineMethod(Method):
    """A registered baseline (``progenitor.baselines``) behind the adapter."""

    family = "baseline"

    def __init__(self, baseline: Baseline, context: BenchContext) -> None:
        self.baseline = baseline
        self.context = context
        self.name = baseline.name
        self.access = baseline.access
        self.source_dependent = baseline.source_dependent
        self.paper = baseline.paper

    def fingerprint(self, model: Model, entry: dict[str, Any]) -> tuple[Any, float]:
        del entry
        started = time.perf_counter()
        fp = self.baseline.fingerprint(model, self.context.probes)
        return fp, time.perf_counter() - started

    def nbytes(self, fp: Any) -> int:
        return fingerprint_nbytes(fp)

    def target_fingerprint(self, model: Model, entry: dict[str, Any], fp_source: Any) -> Any:
        del entry
        return self.baseline.fingerprint_target(model, self.context.probes, fp_source)

    def score(self, fp_source: Any, fp_targets: Sequence[Any]) -> list[PairResult]:
        out = []
        for fp_target in fp_targets:
            try:
                r = self.baseline.score(fp_source, fp_target)
            except NOT_APPLICABLE:
                out.append(MISSING)
                continue
            out.append(PairResult(float(r.score), r.p_value, None, 0.0))
        return out


class NikolicMethod(BaselineMethod):
    """Nikolić et al.: argmax parent accepted only if it beats every other candidate (Holm)."""

    own_parent_test = True
    min_candidates = 2  # the other candidates are the baseline the best one must beat

    def pick_parent(self, target: str, fp_target: Any, candidates: dict[str, Any],
                    results: dict[tuple[str, str], PairResult]) -> str | None:
        del target, results
        try:
            return parent_test(fp_target, candidates, alpha=self.context.alpha).parent
        except NOT_APPLICABLE:
            return None


_SPECIAL: dict[str, type[BaselineMethod]] = {"nikolic": NikolicMethod}


def list_methods() -> list[str]:
    """Every method name the benchmark knows: ours first, then the registered baselines."""
    return [*OURS, *list_baselines()]


def make_method(name: str, context: BenchContext) -> Method:
    """The adapter for method ``name`` (see ``list_methods``)."""
    if name in OURS:
        return ProgenitorMethod(name, context, learned=name == "progenitor",
                                access="black" if name == "progenitor-black" else "white")
    try:
        baseline = get_baseline(name)
    except KeyError:
        raise ProgenitorError(f"unknown method {name!r}; known: {', '.join(list_methods())}") from None
    return _SPECIAL.get(name, BaselineMethod)(baseline, context)

