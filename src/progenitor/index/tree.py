"""Lineage trees: who is whose parent across a whole collection, from pairwise verdicts.

1. **Candidate pairs**: every pair of models, or, for large collections with learned vectors,
   each model's ``neighbours`` nearest vectors.
2. **Verdicts**: each candidate pair gets the full verdict (``progenitor.index._relate``). Only
   *plausible* pairs (verdict ``derived``, or also ``inconclusive`` with
   ``min_verdict="inconclusive"``) become edges, in both directions.
3. **Costs**: the edge "u is the parent of v" costs
   ``-strength(u, v) - w * log direction(u, v) - ALIGNED_BONUS * aligned(u, v)
   - COPY_BONUS * copied(u, v)``
   (``progenitor.index._relate``), where ``direction`` is a direction signal
   (``progenitor.index.direction``, default ``weight_stats``) nudged by two priors: the
   **centrality** prior, ``centrality`` log-odds per unit of relative centrality in favour of the
   model closer to the rest of its family (``_centrality``: the original of a star-shaped family
   is one derivation from everyone, and closer to everyone than its noised or exported copies),
   the **permutation-parsimony** prior between two models whose hidden units are permuted
   relative to each other, ``PERMUTATION_PARSIMONY`` log-odds per unit difference in the share of
   relatives holding each one's unit order (``_in_order``: the original's other derivations keep
   its order, only a permuted copy's own descendants keep the copy's; on the standard zoo's
   validation families it took directed-edge accuracy from 143 to 145 of 213 edges),
   and the registration-**order** prior, ``order_prior`` log-odds in favour of the model
   registered first (0 turns it off). ``aligned`` is the share of hidden units two models hold
   in the same order, which tells the model a child was made from apart from its permuted copies;
   ``copied`` the share of sampled weight values they agree on, which tells the model a pruned or
   converted copy was made from apart from that model's other relatives. A model whose sampled
   weights are a weighted average of two of its relatives (``progenitor.index.merges``) is their
   child: the direction between it and each of them is fixed (``MERGE_DIRECTION``).
4. **Arborescence**: a virtual root is joined to every model. A model none of whose relatives
   looks like its parent (direction below ``root_direction``, 0.5) is a root: its edge from the
   virtual root is cheaper than any edge; every other model must take a parent: its edge from the
   virtual root is dearer than any. (A uniform cost for having no parent would make the most
   peripheral model of each family its root, since a root gives up its best incoming edge.)
   Chu-Liu/Edmonds (``networkx.minimum_spanning_arborescence``) picks the cheapest set of
   parent edges, one family (weakly connected component of plausible edges) at a time.
5. **Ties**: when a model's parent has an ancestor whose edge to the model costs at most
   ``tie_tolerance`` more (near-identical copies of a model: fp16, permuted, lightly noised), the
   ancestor becomes the parent. A prior, not evidence: derivations are more often made from an
   original than from its copies, and families come out as stars rather than arbitrary chains.
6. **Roots, orphans, flags**: a model whose parent is the virtual root is a family *root* when it
   has children and an *orphan* otherwise. Declared lineage is checked against the tree: a
   model that claims to be trained from scratch but has a likely parent, or whose declared
   parent is not related to it, is a ``contradiction``; a declared parent that is related but is
   not the recovered parent (a grandparent, a sibling, or the other direction) is a ``note``.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from progenitor.calibration import Calibration, load_calibration
from progenitor.dna import DNA
from progenitor.errors import ProgenitorError
from progenitor.index._relate import (
    Relation,
    edge_cost,
    learned_bundle,
    logit,
    relate,
    related_either_way,
    sigmoid,
)
from progenitor.index.direction import DirectionSignal, get_direction
from progenitor.index.keys import behaviour_key, retrieval_key
from progenitor.index.merges import find_merges
from progenitor.index.vectors import Backend, VectorIndex
from progenitor.verdict import DEFAULT_ALPHA

__all__ = ["Flag", "LineageTree", "Member", "TreeEdge", "build_tree", "members_of"]

_ROOT = -1
AUTO_NEIGHBOURS = 16
# Log-odds per unit of relative centrality; chosen with ALIGNED_BONUS on the standard zoo's
# validation families (directed-edge accuracy 0.43 without either, 0.62 with both).
# P(merge is the parent of one of the two models it averages), and the reverse.
MERGE_DIRECTION = (0.001, 0.999)
CENTRALITY = 30.0
# Log-odds per unit difference in the share of relatives in the same unit order, between two
# models whose units are permuted relative to each other (``_in_order``).
PERMUTATION_PARSIMONY = 8.0
ALL_PAIRS_UP_TO = 400


@dataclass
class Member:
    """A model of the collection as the tree sees it."""

    name: str
    dna: DNA
    order: int = 0
    ref: str = ""
    sha256: str | None = None
    declared_parent: str | None = None
    from_scratch: bool = False


@dataclass
class TreeEdge:
    """A recovered parent edge with the evidence behind it."""

    parent: str
    child: str
    relation: Relation
    direction: float
    cost: float

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "parent": self.parent,
            "child": self.child,
            **self.relation.to_json(),
            "direction": round(self.direction, 4),
            "cost": round(self.cost, 6),
        }


@dataclass
class Flag:
    """A disagreement between declared and recovered lineage."""

    model: str
    kind: str
    severity: str  # "contradiction" or "note"
    message: str

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "model": self.model,
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
        }


@dataclass
class LineageTree:
    """Recovered families: a parent (or None) per model, the edges, roots, orphans and flags."""

    members: list[Member]
    parent: dict[str, str | None]
    edges: list[TreeEdge]
    flags: list[Flag]
    method: dict[str, Any]
    seconds: float
    related: dict[str, int] = field(default_factory=dict)

    def children(self, name: str) -> list[str]:
        """Names of the recovered children of ``name``."""
        return [e.child for e in self.edges if e.parent == name]

    @property
    def roots(self) -> list[str]:
        """Models with no parent and at least one child."""
        with_children = {e.parent for e in self.edges}
        return [m.name for m in self.members if self.parent[m.name] is None and m.name in with_children]

    @property
    def orphans(self) -> list[str]:
        """Models with neither parent nor child in the collection."""
        with_children = {e.parent for e in self.edges}
        return [m.name for m in self.members if self.parent[m.name] is None and m.name not in with_children]

    def family_of(self, name: str) -> str:
        """The root of the family ``name`` belongs to (itself for roots and orphans)."""
        seen = set()
        while self.parent.get(name) is not None and name not in seen:
            seen.add(name)
            name = self.parent[name]  # type: ignore[assignment]
        return name

    def depth(self, name: str) -> int:
        """Number of parent edges from the family root."""
        depth, seen = 0, set()
        while self.parent.get(name) is not None and name not in seen:
            seen.add(name)
            name = self.parent[name]  # type: ignore[assignment]
            depth += 1
        return depth

    def to_json(self) -> dict[str, Any]:
        """What ``progenitor tree --json`` prints."""
        return {
            "nodes": [
                {
                    "name": m.name,
                    "ref": m.ref,
                    "sha256": m.sha256,
                    "parent": self.parent[m.name],
                    "family": self.family_of(m.name),
                    "depth": self.depth(m.name),
                    "declared_parent": m.declared_parent,
                    "from_scratch": m.from_scratch,
                }
                for m in self.members
            ],
            "edges": [e.to_json() for e in self.edges],
            "roots": self.roots,
            "orphans": self.orphans,
            "flags": [f.to_json() for f in self.flags],
            "method": self.method,
            "seconds": round(self.seconds, 4),
        }

    def to_dot(self) -> str:
        """Graphviz DOT: recovered edges solid, declared parents that differ dashed grey."""

        def q(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        flagged = {f.model for f in self.flags if f.severity == "contradiction"}
        orphans = set(self.orphans)
        lines = ["digraph lineage {", "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];']
        for m in self.members:
            style = ', color="red", penwidth=2' if m.name in flagged else ""
            shape = ", style=dashed" if m.name in orphans else ""
            lines.append(f"  {q(m.name)} [label={q(m.name)}{style}{shape}];")
        for e in self.edges:
            lines.append(
                f"  {q(e.parent)} -> {q(e.child)} [label={q(f'P={e.relation.probability:.2f} dir={e.direction:.2f}')}];"
            )
        names = {m.name for m in self.members}
        for m in self.members:
            declared = m.declared_parent
            if declared and declared in names and self.parent[m.name] != declared:
                lines.append(f'  {q(declared)} -> {q(m.name)} [style=dashed, color=gray, label="declared"];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """A self-contained HTML page: families as nested lists, orphans, flags, the DOT source."""
        esc = html.escape
        by_parent: dict[str, list[TreeEdge]] = {}
        for e in self.edges:
            by_parent.setdefault(e.parent, []).append(e)
        flags_of: dict[str, list[Flag]] = {}
        for f in self.flags:
            flags_of.setdefault(f.model, []).append(f)

        def badge(name: str) -> str:
            marks = "".join(
                f' <span class="{f.severity}" title="{esc(f.message)}">{esc(f.kind)}</span>'
                for f in flags_of.get(name, [])
            )
            return f"<b>{esc(name)}</b>{marks}"

        def subtree(name: str, seen: set[str]) -> str:
            if name in seen:
                return ""
            seen.add(name)
            items = []
            for e in sorted(by_parent.get(name, []), key=lambda x: x.child):
                info = (
                    f"P={e.relation.probability:.3f}, p={e.relation.p_value:.2g}, "
                    if e.relation.p_value is not None
                    else ""
                )
                items.append(
                    f"<li>{badge(e.child)} <small>({info}strength {e.relation.strength:.1f}, "
                    f"direction {e.direction:.2f})</small>{subtree(e.child, seen)}</li>"
                )
            return f"<ul>{''.join(items)}</ul>" if items else ""

        families = "".join(f"<li>{badge(r)}{subtree(r, set())}</li>" for r in self.roots)
        orphans = ", ".join(badge(o) for o in self.orphans) or "none"
        flag_rows = "".join(
            f"<tr><td>{esc(f.model)}</td><td class='{f.severity}'>{esc(f.severity)}</td>"
            f"<td>{esc(f.kind)}</td><td>{esc(f.message)}</td></tr>"
            for f in self.flags
        )
        method = esc(json.dumps(self.method, indent=1))
        return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>progenitor lineage</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }}
ul {{ list-style: none; border-left: 1px solid #bbb; padding-left: 1.2em; }}
li {{ margin: .3em 0; }} small {{ color: #555; }}
.contradiction {{ color: #b00; font-weight: bold; }} .note {{ color: #a60; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .2em .5em; }}
</style></head><body>
<h1>Lineage of {len(self.members)} models</h1>
<p>{len(self.roots)} families, {len(self.orphans)} orphans, {len(self.edges)} parent edges,
{sum(f.severity == "contradiction" for f in self.flags)} contradictions with declared lineage.</p>
<h2>Families</h2><ul>{families or "<li>none</li>"}</ul>
<h2>Orphans</h2><p>{orphans}</p>
<h2>Declared lineage</h2>
<table><tr><th>model</th><th>severity</th><th>kind</th><th>message</th></tr>{flag_rows}</table>
<h2>Method</h2><pre>{method}</pre>
<details><summary>Graphviz source</summary><pre>{esc(self.to_dot())}</pre></details>
</body></html>
"""


def members_of(registry: Any) -> list[Member]:
    """Every registered model of a ``Registry`` as a Member (registration order kept)."""
    return [Member(e.name, dna, e.id, e.ref, e.sha256, e.declared_parent, e.from_scratch) for e, dna in registry.dnas()]


RelateFn = Callable[[Member, Member], Relation]


def _candidate_pairs(
    members: Sequence[Member], neighbours: int | None, backend: Backend
) -> tuple[list[tuple[int, int]], str]:
    """All pairs for small collections; else each model's ``k`` nearest by weight key (models with
    weight genes, ``progenitor.index.keys``), by behaviour key (when some model has no weight
    genes: every model with outputs read has one) and by learned vector (when all have one)."""
    n = len(members)
    have_vectors = n > 0 and all(m.dna.vector is not None for m in members)
    # Keys cost a pass over every DNA's genes: only when neighbours may prune.
    prune = n > ALL_PAIRS_UP_TO if neighbours is None else 0 < neighbours < n - 1
    keys = _keys(members, retrieval_key) if prune else {}
    behaviour = _keys(members, behaviour_key) if prune and len(keys) < n else {}
    k = neighbours
    if k is None:
        k = 0 if n <= ALL_PAIRS_UP_TO or not (have_vectors or keys or behaviour) else AUTO_NEIGHBOURS
    if k <= 0 or not (have_vectors or keys or behaviour) or k >= n - 1:
        how = "all pairs" if k <= 0 or k >= n - 1 else "all pairs (no learned vectors or keys to prune with)"
        return [(i, j) for i in range(n) for j in range(i + 1, n)], how
    pairs: set[tuple[int, int]] = set()
    how = []
    sources = [(label, sorted(found), [found[i] for i in sorted(found)])
               for label, found in (("weight keys", keys), ("behaviour keys", behaviour)) if found]
    if have_vectors:
        sources.append(("learned vectors", list(range(n)), [np.asarray(m.dna.vector, np.float32) for m in members]))
    for label, rows, data in sources:
        if len(rows) < 2:
            continue
        matrix = np.stack(data).astype(np.float32)
        index = VectorIndex(np.asarray(rows), matrix, backend)
        found = index.search_many(matrix, min(k + 1, len(rows)))
        for i, row in zip(rows, found, strict=True):
            pairs |= {(min(i, int(j)), max(i, int(j))) for j in row if int(j) != i}
        how.append(f"{label} ({index.backend})")
    return sorted(pairs), f"{k} nearest per model by " + " and ".join(how)


def _keys(members: Sequence[Member], key_of: Callable[[DNA], np.ndarray | None]) -> dict[int, np.ndarray]:
    out = {}
    for i, m in enumerate(members):
        key = key_of(m.dna)
        if key is not None:
            out[i] = key
    return out


def build_tree(
    members: Sequence[Member],
    calibration: Calibration | str | Path | None = None,
    alpha: float = DEFAULT_ALPHA,
    direction: str | DirectionSignal = "auto",
    direction_weight: float = 1.0,
    order_prior: float = 0.5,
    centrality: float = CENTRALITY,
    neighbours: int | None = None,
    min_verdict: str = "derived",
    root_direction: float = 0.5,
    tie_tolerance: float = 0.5,
    relate_fn: RelateFn | None = None,
    backend: Backend = "auto",
    progress: Callable[[str], None] | None = None,
    learned: Any = True,
) -> LineageTree:
    """Recover the lineage of ``members`` (see the module docstring for the method).

    Args:
        members: the models (``members_of(registry)`` for a registry).
        calibration: a Calibration or its JSON path for the verdicts (default: the shipped one).
        alpha: the verdict's accepted false-positive rate.
        direction: direction signal name or function (``auto``: the learned classifier's
            direction when a learned Model DNA is in use, else ``weight_stats``).
        direction_weight: ``w`` in the edge cost.
        order_prior: log-odds added in favour of the earlier-registered model being the parent.
        centrality: log-odds per unit of relative centrality (``_centrality``) in favour of the
            more central of two models being the parent.
        neighbours: candidate pairs per model by vector (0: all pairs; None: all pairs up to
            400 models or without vectors, else 16).
        min_verdict: ``derived`` (default) or ``inconclusive``: the weakest verdict kept as an edge.
        root_direction: a model with no relative whose direction (P of being its parent) reaches
            this is a root.
        tie_tolerance: a parent is replaced by one of its ancestors whose edge costs at most this
            much more (0: off); see the module docstring.
        relate_fn: replaces the verdict on a pair (benchmarks with synthetic models).
        backend: vector backend for candidate pairs.
        progress: called with a message now and then.
        learned: the learned Model DNA fused into the verdicts as in ``compare`` (True: the
            packaged default when one ships; False: none). Its classifier is directional (a
            parent is not derived from its child), so a pair is related when either
            orientation is.
    """
    import networkx as nx

    if min_verdict not in ("derived", "inconclusive"):
        raise ProgenitorError(f"min_verdict must be derived or inconclusive, not {min_verdict!r}")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ProgenitorError("lineage members need unique names")
    started = time.perf_counter()
    note = progress or (lambda _m: None)
    bundle = learned_bundle(learned)
    signal = get_direction(direction, bundle)
    if relate_fn is None:
        cal = calibration if isinstance(calibration, Calibration) else load_calibration(calibration)

        dna_of = {m.name: m.dna for m in members}

        def verdict(x: str, y: str) -> Relation:
            # Edges show no per-gene evidence: the classifier runs only where it can change one.
            return relate(dna_of[x], dna_of[y], cal, alpha, (x, y), bundle, learned_if_related=True)

        def relate_fn(a: Member, b: Member) -> Relation:
            return related_either_way(verdict, a.name, b.name, bundle is not None)

        cal_source = cal.source
    else:
        cal_source = "custom relate_fn"
    keep = {"derived"} if min_verdict == "derived" else {"derived", "inconclusive"}
    pairs, how = _candidate_pairs(members, neighbours, backend)
    note(f"scoring {len(pairs)} pairs ({how})")
    relations: dict[tuple[int, int], Relation] = {}
    plausible: dict[tuple[int, int], Relation] = {}
    for count, (i, j) in enumerate(pairs, 1):
        rel = relate_fn(members[i], members[j])
        relations[(i, j)] = rel
        if rel.verdict in keep:
            plausible[(i, j)] = rel
        if count % 1000 == 0:
            note(f"scored {count}/{len(pairs)} pairs")

    # A merge of two relatives is their child, whatever the direction signal says.
    relatives: dict[int, list[int]] = {}
    for (i, j), _rel in sorted(plausible.items(), key=lambda item: -item[1].strength):
        relatives.setdefault(i, []).append(j)
        relatives.setdefault(j, []).append(i)
    merged_from = find_merges([m.dna for m in members], relatives)

    def directed(i: int, j: int, rel: Relation) -> float:
        """P(i is the parent of j): the signal, made antisymmetric, plus the centrality,
        permutation-parsimony and order priors; near 0 or 1 when one of the two is a merge of the
        other and a third model."""
        if j in merged_from.get(i, ()):
            return MERGE_DIRECTION[0]
        if i in merged_from.get(j, ()):
            return MERGE_DIRECTION[1]
        a, b = signal(members[i].dna, members[j].dna), signal(members[j].dna, members[i].dna)
        p = a / (a + b) if a + b > 0 else 0.5
        order = np.sign(members[j].order - members[i].order)
        doubt = 1.0 - abs(2.0 * p - 1.0)  # the priors speak where the signal cannot tell
        prior = centrality * (central[i] - central[j])
        if rel.permuted:
            prior += PERMUTATION_PARSIMONY * (in_order[i] - in_order[j])
        return sigmoid(logit(p) + doubt * prior + order_prior * float(order))

    # Families: weakly connected components of plausible pairs (union-find).
    root_of = list(range(len(members)))

    def find(x: int) -> int:
        while root_of[x] != x:
            root_of[x] = root_of[root_of[x]]
            x = root_of[x]
        return x

    for i, j in plausible:
        root_of[find(i)] = find(j)
    components: dict[int, list[int]] = {}
    for i in range(len(members)):
        components.setdefault(find(i), []).append(i)
    central = _centrality([find(i) for i in range(len(members))], plausible)
    in_order = _in_order(len(members), plausible)

    pairs_of: dict[int, list[tuple[int, int, Relation]]] = {}
    for (i, j), rel in plausible.items():
        pairs_of.setdefault(find(i), []).append((i, j, rel))
    parent: dict[str, str | None] = dict.fromkeys(names)
    edges: list[TreeEdge] = []
    for key, comp in components.items():
        if len(comp) == 1:
            continue
        graph = nx.DiGraph()
        info: dict[tuple[int, int], tuple[float, float, Relation]] = {}
        for i, j, rel in pairs_of[key]:
            p_ij = directed(i, j, rel)
            for u, v, d in ((i, j, p_ij), (j, i, 1.0 - p_ij)):
                cost = edge_cost(rel, d, direction_weight)
                graph.add_edge(u, v, weight=cost)
                info[(u, v)] = (d, cost, rel)
        best: dict[int, float] = {}
        for (_, v), (_, _, rel) in info.items():
            best[v] = max(best.get(v, -math.inf), rel.strength)
        # ``high - best[v]`` is dearer than any edge into v, and offsets what a root gives up
        # (its best incoming edge), so the root of a family is not its most peripheral model.
        high = max(cost + best[v] for (_, v), (_, cost, _) in info.items()) + 1.0
        low = min(cost for _, cost, _ in info.values()) - 1.0
        parent_like = {v for (_, v), (d, _, _) in info.items() if d >= root_direction}
        for v in comp:
            # A model with a relative that looks like its parent must take a parent (which one
            # is the arborescence's choice); one whose relatives all look like its children is
            # a root.
            graph.add_edge(_ROOT, v, weight=high - best[v] if v in parent_like else low)
        tree = nx.minimum_spanning_arborescence(graph, attr="weight")
        chosen = {v: u for u, v in tree.edges() if u != _ROOT}
        if tie_tolerance > 0:
            _prefer_ancestors(chosen, info, tie_tolerance)
        for v, u in chosen.items():
            d, cost, rel = info[(u, v)]
            parent[names[v]] = names[u]
            edges.append(TreeEdge(names[u], names[v], rel, d, cost))
    position = {name: i for i, name in enumerate(names)}
    edges.sort(key=lambda e: (position[e.parent], position[e.child]))
    related = {names[i]: 0 for i in range(len(members))}
    for i, j in plausible:
        related[names[i]] += 1
        related[names[j]] += 1
    result = LineageTree(
        list(members),
        parent,
        edges,
        [],
        {
            "candidates": how,
            "pairs_scored": len(relations),
            "plausible_pairs": len(plausible),
            "min_verdict": min_verdict,
            "direction": direction if isinstance(direction, str) else getattr(direction, "__name__", "custom"),
            "direction_weight": direction_weight,
            "order_prior": order_prior,
            "centrality": centrality,
            "root_direction": root_direction,
            "tie_tolerance": tie_tolerance,
            "alpha": alpha,
            "calibration": cal_source,
        },
        0.0,
        related,
    )
    result.flags = _flags(result, members, relations, relate_fn, keep)
    result.seconds = time.perf_counter() - started
    return result


def _centrality(family: list[int], plausible: dict[tuple[int, int], Relation]) -> np.ndarray:
    """Per model: its mean strength to its plausible relatives, over the mean of that over its
    family (``family[i]``: the family key of model i).

    In a family shaped like a star (many derivations of one original, the common case on a
    model hub) the original is one derivation away from every member and the others two, so it is
    the most central; of two near-identical copies (an original and its noised or exported copy)
    the original is the closer to everyone else.
    """
    n = len(family)
    total, count = np.zeros(n), np.zeros(n)
    for (i, j), rel in plausible.items():
        for k in (i, j):
            total[k] += rel.strength
            count[k] += 1
    mean = np.divide(total, count, out=np.zeros(n), where=count > 0)
    keys = np.asarray(family)
    out = np.zeros(n)
    for key in set(family):
        members = (keys == key) & (count > 0)
        if members.any():
            out[members] = mean[members] / max(float(np.abs(mean[members]).mean()), 1e-9)
    return out


def _in_order(n: int, plausible: dict[tuple[int, int], Relation]) -> np.ndarray:
    """Per model: the share of its plausible relatives whose hidden units it holds in the same
    order (``Relation.permuted`` False), among those where that could be told; 0.5 where it
    never could.

    Of a model and its permuted copy, the original is the one whose unit order the rest of the
    family shares: its other derivations keep its order, and only the copy's own descendants
    keep the copy's. Naming the original the parent asks for one permutation; the reverse asks
    for the permutation to have happened before every other derivation of the family.
    """
    same, known = np.zeros(n), np.zeros(n)
    for (i, j), rel in plausible.items():
        if rel.permuted is not None:
            for k in (i, j):
                known[k] += 1
                same[k] += not rel.permuted
    return np.divide(same, known, out=np.full(n, 0.5), where=known > 0)


def _prefer_ancestors(
    chosen: dict[int, int],
    info: dict[tuple[int, int], tuple[float, float, Relation]],
    tolerance: float,
) -> None:
    """Re-attach each model to its highest ancestor whose edge is within ``tolerance``."""
    for v in sorted(chosen):
        u = chosen[v]
        limit = info[(u, v)][1] + tolerance
        best, ancestor, seen = u, chosen.get(u), {v, u}
        while ancestor is not None and ancestor not in seen:
            seen.add(ancestor)
            if (ancestor, v) in info and info[(ancestor, v)][1] <= limit:
                best = ancestor
            ancestor = chosen.get(ancestor)
        chosen[v] = best


def _resolve(members: Sequence[Member], key: str) -> int | None:
    for i, m in enumerate(members):
        if key in (m.name, m.ref):
            return i
    if len(key) >= 6:
        hits = [i for i, m in enumerate(members) if m.sha256 and m.sha256.startswith(key.lower())]
        if len(hits) == 1:
            return hits[0]
    return None


def _flags(
    tree: LineageTree,
    members: Sequence[Member],
    relations: dict[tuple[int, int], Relation],
    relate_fn: RelateFn,
    keep: set[str],
) -> list[Flag]:
    flags = []
    for k, m in enumerate(members):
        found = tree.parent[m.name]
        if m.from_scratch and found is not None:
            flags.append(
                Flag(
                    m.name,
                    "claims_scratch_has_parent",
                    "contradiction",
                    f"{m.name} claims to be trained from scratch, but its likely parent is {found}",
                )
            )
        if not m.declared_parent:
            continue
        d = _resolve(members, m.declared_parent)
        if d is None:
            flags.append(
                Flag(
                    m.name,
                    "declared_parent_unknown",
                    "note",
                    f"{m.name} declares parent {m.declared_parent!r}, which is not registered",
                )
            )
            continue
        declared = members[d].name
        if declared == m.name:
            flags.append(
                Flag(
                    m.name,
                    "declared_parent_itself",
                    "contradiction",
                    f"{m.name} declares itself as its parent",
                )
            )
            continue
        pair = (min(d, k), max(d, k))
        rel = relations.get(pair)
        if rel is None:
            rel = relate_fn(members[pair[0]], members[pair[1]])
            relations[pair] = rel
        p_text = "" if rel.p_value is None else f", p={rel.p_value:.2g}"
        if rel.verdict not in keep:
            flags.append(
                Flag(
                    m.name,
                    "declared_parent_unrelated",
                    "contradiction",
                    f"{m.name} declares parent {declared}, but they look unrelated ({rel.verdict}{p_text})",
                )
            )
        elif tree.parent.get(declared) == m.name:
            flags.append(
                Flag(
                    m.name,
                    "declared_parent_reversed",
                    "note",
                    f"{m.name} declares parent {declared}, but the recovered direction is "
                    f"the other way ({declared} derived from {m.name})",
                )
            )
        elif found != declared:
            flags.append(
                Flag(
                    m.name,
                    "declared_parent_differs",
                    "note",
                    f"{m.name} declares parent {declared} (related{p_text}), but its closest "
                    f"likely parent is {found or 'none (family root)'}",
                )
            )
    return flags
