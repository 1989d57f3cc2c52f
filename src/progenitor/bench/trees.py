"""Family-tree recovery for the methods that build trees: ours and MoTHer.

Each family of the split is given to the method as an unordered set of models (the members are
shuffled with a fixed seed, and ours gets no registration-order prior, so neither the zoo's order
nor its names leak the lineage); the method returns directed (parent, child) edges.

* ours: ``progenitor.index.build_tree`` (maximum-probability arborescence over the pairwise
  verdicts) with the benchmark's cached verdicts as ``relate_fn`` and its default direction
  (``auto``: the ``weight_stats`` cues between models with weights, else the learned head);
* MoTHer: ``progenitor.baselines.recover_tree`` on its own fingerprints (weight distance, kurtosis
  direction, Edmonds), one arborescence per group of members whose weights it can pair. Its
  clustering step is skipped (``cut=inf``): the family is given, as in the paper's evaluation of
  tree recovery within a cluster, and on one family the largest-gap cut would only split
  near-identical copies (fp16, int8) from the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from progenitor.baselines import BaselineNotApplicable, recover_tree
from progenitor.baselines.mother import weight_distance
from progenitor.bench.methods import Method, PairResult, ProgenitorMethod
from progenitor.dna import DNA

Edges = list[tuple[str, str]]
PairLookup = Callable[[str, str], PairResult]


def has_tree(method: Method) -> bool:
    """Whether the benchmark recovers trees with this method."""
    return isinstance(method, ProgenitorMethod) or method.name == "mother"


def recover_family(
    method: Method, members: list[str], fps: dict[str, Any], pair: PairLookup, seed: int = 0
) -> Edges:
    """Directed edges the method recovers over one family's ``members``."""
    order = [members[i] for i in np.random.default_rng(seed).permutation(len(members))]
    usable = [m for m in order if fps.get(m) is not None]
    if len(usable) < 2:
        return []
    if isinstance(method, ProgenitorMethod):
        return _ours(method, usable, fps, pair)
    edges: Edges = []
    for group in _pairable_groups(usable, fps):
        if len(group) >= 2:
            edges.extend(recover_tree({m: fps[m] for m in group}, cut=math.inf))
    return edges


def _pairable_groups(members: list[str], fps: dict[str, Any]) -> list[list[str]]:
    """Split members into groups whose weights MoTHer can pair (one architecture and width each).

    MoTHer compares weights of the same shape; a distilled student of another architecture or a
    channel-pruned copy cannot be placed in its parent's tree, so it forms its own group (and gets
    no parent, which counts against the method).
    """
    groups: list[list[str]] = []
    for m in members:
        for group in groups:
            if all(_pairable(fps[m], fps[g]) for g in group):
                group.append(m)
                break
        else:
            groups.append([m])
    return groups


def _pairable(a: Any, b: Any) -> bool:
    try:
        weight_distance(a, b)
    except BaselineNotApplicable:
        return False
    return True


def _ours(method: ProgenitorMethod, members: list[str], fps: dict[str, DNA], pair: PairLookup) -> Edges:
    from progenitor.index import Member, build_tree
    from progenitor.index._relate import Relation, related_either_way
    from progenitor.index.direction import get_direction

    relation = method.relation

    def relate_fn(a: Member, b: Member) -> Relation:
        # As build_tree's own: with a learned (directional) classifier in the verdict, a pair is
        # related when either orientation is.
        return related_either_way(lambda x, y: relation(pair(x, y)), a.name, b.name, method.bundle is not None)

    # The direction `progenitor tree` uses by default: weight cues when both models have weights,
    # else the learned classifier's head when a learned Model DNA is in use.
    direction = get_direction("auto", method.bundle)
    tree = build_tree([Member(m, fps[m], order=i) for i, m in enumerate(members)],
                      calibration=method.context.calibration, alpha=method.context.alpha,
                      direction=direction, order_prior=0.0, relate_fn=relate_fn)
    return [(e.parent, e.child) for e in tree.edges]
