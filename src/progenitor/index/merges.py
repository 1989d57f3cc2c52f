"""Weight-space merges: a model whose weights are a weighted average of two others is their child.

A merge (a model soup, task arithmetic's interpolation) sits between its two parents: every
similarity gene finds it close to both, and its weight statistics (averaging lowers kurtosis)
make it look *earlier* than them, so a lineage tree tends to make it their parent. Its values
give it away: on the positions the ``weight_values`` gene samples, ``m - b`` is a multiple
``alpha`` of ``a - b`` with ``0 < alpha < 1``, up to a small residual. A parent of two
fine-tunes is not (their two updates are unrelated directions, so the residual is large).
"""

from __future__ import annotations

import numpy as np

from progenitor._memo import per_object
from progenitor.dna import DNA
from progenitor.genes import GeneValue
from progenitor.genes.values import pair_by_shape

MERGE_RESIDUAL = 0.2  # residual of the fit relative to m's distance to the nearer of a, b
MIN_WEIGHT, MAX_WEIGHT = 0.1, 0.9


def merge_weight(m: DNA, a: DNA, b: DNA) -> float | None:
    """``alpha`` when ``m``'s sampled weights are ``alpha * a + (1 - alpha) * b`` (the residual
    within ``MERGE_RESIDUAL`` of ``m``'s distance to the nearer of the two, ``alpha`` between
    ``MIN_WEIGHT`` and ``MAX_WEIGHT``), else None."""
    gm, ga, gb = (d.genes.get("weight_values") for d in (m, a, b))
    if gm is None or ga is None or gb is None:
        return None
    to_a = dict(pair_by_shape(gm.meta["shapes"], ga.meta["shapes"]))
    to_b = dict(pair_by_shape(gm.meta["shapes"], gb.meta["shapes"]))
    xs, ys = [], []
    for i in sorted(to_a.keys() & to_b.keys()):
        vm, va, vb = (_values64(g)[k] for g, k in ((gm, i), (ga, to_a[i]), (gb, to_b[i])))
        xs.append(vm - vb)
        ys.append(va - vb)
    if not xs:
        return None
    x, y = np.concatenate(xs), np.concatenate(ys)
    yy = float(y @ y)
    if yy <= 0:
        return None  # a and b agree: nothing to interpolate between
    alpha = float(x @ y) / yy
    residual = float(np.linalg.norm(x - alpha * y))
    # Against m's distance to the nearer parent: a model close to one of two far-apart models is
    # near the line between them without being between them.
    nearer = min(float(np.linalg.norm(x - y)), float(np.linalg.norm(x)))
    if nearer <= 0:
        return None  # m is a copy of a or b
    return alpha if MIN_WEIGHT < alpha < MAX_WEIGHT and residual < MERGE_RESIDUAL * nearer else None


@per_object
def _values64(gene: GeneValue) -> list[np.ndarray]:
    """The gene's sampled values per tensor, float64 (kept while it lives: a tree tries each
    model in many triples)."""
    return [gene.arrays[f"values{i}"].astype(np.float64) for i in range(len(gene.meta["shapes"]))]


def find_merges(dnas: list[DNA], relatives: dict[int, list[int]], per_model: int = 6) -> dict[int, set[int]]:
    """For each model that is a merge of two of its relatives, those two (``relatives``: each
    model's related models by index, closest first; the first ``per_model`` are tried in pairs)."""
    found: dict[int, set[int]] = {}
    for m, near in relatives.items():
        near = near[:per_model]
        for x, a in enumerate(near):
            for b in near[x + 1 :]:
                if merge_weight(dnas[m], dnas[a], dnas[b]) is not None:
                    found.setdefault(m, set()).update((a, b))
    return found
