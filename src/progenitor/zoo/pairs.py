"""Ground truth from the lineage graph: families, labelled (source, target) pairs and splits.

A *family* is every model descending from one root (a merge joins its first parent's family).
A pair ``(source, target)`` is *derived* when the target descends from the source through one or
more edges; otherwise it is labelled with the kind of negative it is:

``reverse``
    the target is an ancestor of the source (a child is not a source of its parent);
``sibling``
    same family, neither descends from the other, and they share a parent;
``cousin``
    same family, neither descends from the other, no shared parent;
``same-arch-same-data-other-seed``
    other family; the target has the source's architecture and its family's root trained on the
    same data as the source's root (the hardest independent negatives);
``same-arch-other-data``
    other family, same architecture, roots trained on other data;
``other-arch``
    other family, other architecture.

Pairs are generated for every root as source against every model of its modality, and for every
other model with children (an intermediate source) against its own family and every other root.

Splits (each pair carries its label under each split, or None when excluded):

``family``
    families are assigned to train/val/test (the root's ``split``, or round-robin by seed within
    each architecture-and-data group); a pair belongs to a split when both its models' families do,
    so test sources and all their relatives are unseen in training.
``arch``
    holds out whole architectures: a model *touches* a held-out architecture when it or its
    family's root has one. test: the source touches one; train: neither model touches one.
``kind``
    holds out whole derivation kinds: a model touches a held-out kind when any edge on its way
    from its root has that kind. test: either model touches one; train: neither does.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from progenitor.zoo.spec import SPLITS

NEGATIVE_KINDS = (
    "reverse",
    "sibling",
    "cousin",
    "same-arch-same-data-other-seed",
    "same-arch-other-data",
    "other-arch",
)


class Lineage:
    """The lineage graph of a zoo: parents, families, ancestor chains."""

    def __init__(self, models: list[dict[str, Any]], edges: list[dict[str, Any]]) -> None:
        self.models = {m["id"]: m for m in models}
        self.order = [m["id"] for m in models]
        self.parents: dict[str, list[str]] = defaultdict(list)
        self.children: dict[str, list[str]] = defaultdict(list)
        self.edge: dict[tuple[str, str], dict[str, Any]] = {}
        for e in edges:
            self.parents[e["child"]].append(e["parent"])
            self.children[e["parent"]].append(e["child"])
            self.edge[(e["parent"], e["child"])] = e
        self.family: dict[str, str] = {}
        for mid in self.order:  # models are listed parents first
            ps = self.parents.get(mid)
            self.family[mid] = self.family[ps[0]] if ps else mid
        self.ancestors: dict[str, dict[str, list[str]]] = {m: self._chains(m) for m in self.order}

    def _chains(self, target: str) -> dict[str, list[str]]:
        """For each ancestor, the shortest list of edge operations from it down to ``target``."""
        found: dict[str, list[str]] = {}
        queue: deque[tuple[str, list[str]]] = deque([(target, [])])
        while queue:
            node, chain = queue.popleft()
            for parent in self.parents.get(node, []):
                if parent not in found:
                    ops = [self.edge[(parent, node)]["operation"], *chain]
                    found[parent] = ops
                    queue.append((parent, ops))
        return found

    def kinds_from_root(self, mid: str) -> set[str]:
        """Derivation kinds of every edge on any path from the root down to ``mid``."""
        kinds: set[str] = set()
        stack = [mid]
        seen = set()
        while stack:
            node = stack.pop()
            for parent in self.parents.get(node, []):
                kinds.add(self.edge[(parent, node)]["kind"])
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return kinds

    def root_of(self, mid: str) -> dict[str, Any]:
        """The root model of ``mid``'s family."""
        return self.models[self.family[mid]]


def assign_family_splits(lineage: Lineage) -> dict[str, str]:
    """Family root id -> train/val/test: the root's own ``split``, else round-robin by seed."""
    out: dict[str, str] = {}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for root_id in dict.fromkeys(lineage.family.values()):
        root = lineage.models[root_id]
        if root.get("split"):
            out[root_id] = root["split"]
        else:
            groups[(root["modality"], root["architecture"], root["data"])].append(root)
    for members in groups.values():
        for i, root in enumerate(sorted(members, key=lambda r: (r["seed"], r["id"]))):
            out[root["id"]] = SPLITS[i % len(SPLITS)]
    return out


def _negative_kind(lineage: Lineage, source: str, target: str) -> str:
    if target in lineage.ancestors[source]:
        return "reverse"
    if lineage.family[source] == lineage.family[target]:
        shared = set(lineage.parents.get(source, [])) & set(lineage.parents.get(target, []))
        return "sibling" if shared else "cousin"
    s, t = lineage.models[source], lineage.models[target]
    if s["architecture"] != t["architecture"]:
        return "other-arch"
    same_data = lineage.root_of(source)["data"] == lineage.root_of(target)["data"]
    return "same-arch-same-data-other-seed" if same_data else "same-arch-other-data"


def make_pairs(
    lineage: Lineage, family_split: dict[str, str], held_out_archs: tuple[str, ...], held_out_kinds: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Labelled pairs with their split labels (see the module docstring)."""
    roots = [m for m in lineage.order if not lineage.parents.get(m)]
    touches_arch = {
        m: lineage.models[m]["architecture"] in held_out_archs or lineage.root_of(m)["architecture"] in held_out_archs
        for m in lineage.order
    }
    touches_kind = {m: bool(lineage.kinds_from_root(m) & set(held_out_kinds)) for m in lineage.order}
    pairs = []
    for source in lineage.order:
        modality = lineage.models[source]["modality"]
        if not lineage.parents.get(source):
            targets = lineage.order
        elif lineage.children.get(source):
            fam = lineage.family[source]
            targets = [m for m in lineage.order if lineage.family[m] == fam or m in roots]
        else:
            continue
        for target in targets:
            if target == source or lineage.models[target]["modality"] != modality:
                continue
            chain = lineage.ancestors[target].get(source)
            fs, ft = family_split[lineage.family[source]], family_split[lineage.family[target]]
            arch_split = "test" if touches_arch[source] else "train" if not touches_arch[target] else None
            either_kind = touches_kind[source] or touches_kind[target]
            pairs.append(
                {
                    "source": source,
                    "target": target,
                    "derived": chain is not None,
                    "kind": "derived" if chain is not None else _negative_kind(lineage, source, target),
                    "chain": chain,
                    "split": {
                        "family": fs if fs == ft else None,
                        "arch": arch_split if held_out_archs else None,
                        "kind": ("test" if either_kind else "train") if held_out_kinds else None,
                    },
                }
            )
    return pairs
