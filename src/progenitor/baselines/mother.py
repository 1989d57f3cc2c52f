"""MoTHer: model tree heritage recovery (Horwitz, Shul, Hoshen; "Unsupervised Model Tree Heritage
Recovery", ICLR 2025).

Models of one tree are close in weight space; which of two related models came first is read
from the kurtosis of their weights, which moves monotonically with training. The tree is the
directed minimum spanning tree (Edmonds' minimum spanning arborescence) of a graph whose edge costs
combine the two.

Choices made here, where the paper leaves room for small models:

* distance: root-mean-square difference of the weights of explicitly paired, same-shape matrix
  layers (a per-value scale, so models of different size compare on one scale);
* kurtosis: the mean over matrix layers of each layer's excess kurtosis (pooling all weights would
  mix layers of different scale and hide the trend);
* direction rule: a parent has lower kurtosis than its child (fine-tuning raises it). The edge
  ``u -> v`` (u parent of v) costs ``distance(u, v)``, multiplied by ``1 + direction_weight``
  when ``kurtosis(u) > kurtosis(v)``, i.e. when the edge points against the rule;
* several trees: models are first split into families by single linkage on the distance, cut at
  the largest gap between successive merge heights when that gap is a factor of at least
  ``GAP_RATIO`` (independent models are much further apart than relatives); each family gets its
  own arborescence, and its root is the model no edge points to.

As a pair scorer, score = -distance (not invariant to permuting hidden units, like the paper).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
from scipy import stats
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from progenitor.baselines._base import (
    Baseline,
    BaselineNotApplicable,
    BaselineScore,
    Fingerprint,
    as_fingerprints,
    get_baseline,
    register_baseline,
)
from progenitor.baselines._weights import same_shape_pairs, weight_fingerprint, weight_layers
from progenitor.models.base import Model
from progenitor.probes import ProbeSet

DIRECTION_WEIGHT = 1.0
GAP_RATIO = 3.0


def mean_kurtosis(fp: Fingerprint) -> float:
    """Mean excess kurtosis of the fingerprint's weight matrices (layers of one value excluded)."""
    values = [
        float(stats.kurtosis(wl.weight.ravel(), fisher=True))
        for wl in weight_layers(fp)
        if wl.weight.size > 1 and wl.weight.std() > 0
    ]
    return float(np.mean(values)) if values else 0.0


def weight_distance(fp_a: Fingerprint, fp_b: Fingerprint) -> float:
    """Root-mean-square weight difference over the same-shape paired layers."""
    a, b = weight_layers(fp_a), weight_layers(fp_b)
    pairs, _ = same_shape_pairs(a, b)
    if not pairs:
        raise BaselineNotApplicable("no weight matrices of the same shape to pair")
    total = sum(
        float(((a[i].weight.astype(np.float64) - b[j].weight) ** 2).sum()) for i, j in pairs
    )
    count = sum(a[i].weight.size for i, _ in pairs)
    return float(np.sqrt(total / count))


@register_baseline
class MoTHer(Baseline):
    """Weight distance between models (pair score), with kurtosis-directed tree recovery."""

    name: ClassVar[str] = "mother"
    access = "white"
    paper: ClassVar[str] = (
        "Horwitz, Shul, Hoshen, Unsupervised Model Tree Heritage Recovery, ICLR 2025"
    )
    uses_probes: ClassVar[bool] = False
    permutation_invariant: ClassVar[bool] = False

    def _extract(self, model: Model, probes: ProbeSet | None) -> Fingerprint:
        del probes
        fp = weight_fingerprint(model)
        fp["kurtosis"] = np.array(mean_kurtosis(fp))
        return fp

    def _score(self, fp_source: Fingerprint, fp_target: Fingerprint) -> BaselineScore:
        d = weight_distance(fp_source, fp_target)
        ks, kt = float(fp_source["kurtosis"]), float(fp_target["kurtosis"])
        return BaselineScore(
            -d,
            None,
            {
                "distance": d,
                "kurtosis_source": ks,
                "kurtosis_target": kt,
                "direction_agrees": ks <= kt,
            },
        )


def recover_tree(
    models: Mapping[str, Model | Fingerprint],
    *,
    direction_weight: float = DIRECTION_WEIGHT,
    cut: float | None = None,
) -> list[tuple[str, str]]:
    """Recover directed (parent, child) edges among named models or MoTHer fingerprints.

    Args:
        models: name -> Model (white-box) or fingerprint made by the ``mother`` baseline.
        direction_weight: extra relative cost of an edge from higher to lower kurtosis.
        cut: distance above which two models are never in one tree; default: the largest gap of
            the single-linkage merge heights if it is a factor ``GAP_RATIO`` wide, else none.

    Returns:
        Edges sorted by parent then child; a root (a model with no parent) appears only as parent.
    """
    import networkx as nx

    fps = as_fingerprints(dict(models), get_baseline("mother"))
    names = sorted(fps)
    if len(names) < 2:
        return []
    n = len(names)
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            dist[i, j] = dist[j, i] = weight_distance(fps[names[i]], fps[names[j]])
    kurt = np.array([float(fps[name]["kurtosis"]) for name in names])
    edges: list[tuple[str, str]] = []
    for family in _families(dist, cut):
        if len(family) < 2:
            continue
        graph = nx.DiGraph()
        for u in family:
            for v in family:
                if u != v:
                    against = kurt[u] > kurt[v]
                    graph.add_edge(u, v, weight=dist[u, v] * (1.0 + direction_weight * against))
        tree = nx.minimum_spanning_arborescence(graph, attr="weight")
        edges.extend((names[u], names[v]) for u, v in tree.edges())
    return sorted(edges)


def _families(dist: np.ndarray, cut: float | None) -> list[list[int]]:
    """Split models into families by single linkage, cut at ``cut`` or at the largest wide gap."""
    tree = linkage(squareform(dist, checks=False), method="single")
    heights = tree[:, 2]
    if cut is None:
        # Identical copies merge at height 0: only gaps between positive heights are measured.
        positive = np.sort(heights[heights > 0])
        ratios = positive[1:] / positive[:-1]
        if ratios.size and ratios.max() >= GAP_RATIO:
            k = int(ratios.argmax())
            cut = float(np.sqrt(positive[k] * positive[k + 1]))
        else:
            cut = float("inf")
    if cut >= heights.max():
        return [list(range(len(dist)))]
    labels = fcluster(tree, t=cut, criterion="distance")
    return [[int(i) for i in np.flatnonzero(labels == label)] for label in np.unique(labels)]
