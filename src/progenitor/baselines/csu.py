"""Weight-matching independence tests (Zhu, Ahmed, Kuditipudi, Liang; "Independence Tests for
Language Models", ICML 2025).

The null hypothesis is that the target was trained from a random initialisation independent of the
source. Training is equivariant to permuting hidden units, so under the null the labels of the
target's hidden units are exchangeable: a matching of the source's units to the target's is then
a uniformly random permutation, whatever data either model saw.

Per paired layer, hidden units are matched by the cosine of their weight vectors (Hungarian,
``scipy.optimize.linear_sum_assignment``). Layers are processed in forward order, and each
target layer's input columns are first put in the source's order with the matching of the layer
that feeds it (for a dense layer reading a flattened convolution map, whole channel groups move).
Each layer's Spearman correlation gives a one-sided p-value; the layers' p-values are combined
with Fisher's method; score = -log10(p), capped at 300.

Two statistics, two registered baselines:

* ``csu_independence`` (the paper's constrained setting): Spearman correlation of each layer's
  matching with the identity. Exact under the null, but a permuted copy (same function, shuffled
  units) looks independent, since its matching is that permutation.
* ``csu_match`` (the paper's unconstrained MATCH idea, which correlates two matchings of the same
  hidden units obtained from two different views of them, so that a permutation moves both): for
  each hidden layer, the matching by incoming weights (the forward chain above) against the
  matching by outgoing weights (a backward chain that starts at the output layer, whose rows are
  classes and need no matching, and aligns each layer's rows before matching its columns). Robust
  to permutation; the p-values are no longer exact (units that independent models learn alike can
  match alike in both views), as the paper says of its own robust test.

The output layer is never tested: its units (classes, tokens) are fixed by the task, not
exchangeable, and an independent model trained on the same task matches them one-to-one. Layers
are paired explicitly (``genes.weights.pair_layers``, same shape required); layers of
different shape are left out and counted in the details. Choices where the paper leaves room for
these architectures: biases are not used; a layer's inputs are the units of the most recent
earlier layer of that width (which fits chains and residual streams alike).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import stats
from scipy.optimize import linear_sum_assignment

from progenitor.baselines._base import (
    Baseline,
    BaselineNotApplicable,
    BaselineScore,
    Fingerprint,
    register_baseline,
)
from progenitor.baselines._weights import (
    WeightLayer,
    same_shape_pairs,
    weight_fingerprint,
    weight_layers,
)
from progenitor.genes._linalg import normalize_rows
from progenitor.models.base import Model
from progenitor.probes import ProbeSet

MIN_UNITS = 3  # Spearman correlation of fewer units carries no evidence
MAX_SCORE = 300.0
_PAPER = "Zhu, Ahmed, Kuditipudi, Liang, Independence Tests for Language Models, ICML 2025"


@dataclass(frozen=True)
class Feed:
    """Which earlier layer a layer reads: its index, and positions per input unit."""

    provider: int
    positions: int


def feeds(layers: list[WeightLayer]) -> list[Feed | None]:
    """For each layer, the most recent earlier layer whose units are its input channels.

    A dense layer whose fan-in is a multiple of an earlier layer's width reads that layer's
    flattened map (channel-major, as ``torch.flatten`` lays it out). None: the inputs are the
    model's own (pixels, token ids), which need no alignment.
    """
    recent: dict[int, int] = {}  # width -> index of the most recent layer of that width
    out: list[Feed | None] = []
    for i, wl in enumerate(layers):
        layer = wl.layer
        channels, positions = layer.fan_in
        found: Feed | None = None
        if layer.kind != "embedding":
            if channels in recent:
                found = Feed(recent[channels], positions)
            elif layer.kind == "dense" and positions == 1:
                for width in reversed(list(recent)):
                    if channels % width == 0 and channels // width > 1:
                        found = Feed(recent[width], channels // width)
                        break
        out.append(found)
        recent.pop(layer.units, None)  # re-insert so iteration order is recency
        recent[layer.units] = i
    return out


def _view(wl: WeightLayer, feed: Feed | None, layers: list[WeightLayer]) -> np.ndarray:
    """The weight as (units, input units, positions), regrouped when it reads a flattened map."""
    if feed is None:
        return wl.weight
    width = layers[feed.provider].layer.units
    return wl.weight.reshape(wl.layer.units, width, feed.positions)


def match_units(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hungarian matching of rows by cosine: ``perm[i]`` is the row of ``b`` matched to ``a[i]``."""
    cos = (
        normalize_rows(a.reshape(len(a), -1).astype(np.float64))
        @ normalize_rows(b.reshape(len(b), -1).astype(np.float64)).T
    )
    _, perm = linear_sum_assignment(-cos)
    return perm


def spearman_p(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman rho and its one-sided (positive) p-value, floored at the exact minimum 1/n!."""
    n = len(x)
    rho, p = stats.spearmanr(x, y, alternative="greater")
    if not np.isfinite(rho):
        return 0.0, 1.0
    # Only the identity pairing reaches rho = 1, so no p-value is below 1/n!.
    floor = 10 ** -min(MAX_SCORE, math.lgamma(n + 1) / math.log(10))
    return float(rho), float(max(p, floor))


def fisher(p_values: list[float]) -> float:
    """Fisher's combination of independent p-values, floored at 1e-300."""
    return float(max(stats.combine_pvalues(p_values, method="fisher").pvalue, 10**-MAX_SCORE))


class _CSU(Baseline):
    access = "white"
    paper: ClassVar[str] = _PAPER
    uses_probes: ClassVar[bool] = False

    def _extract(self, model: Model, probes: ProbeSet | None) -> Fingerprint:
        del probes
        return weight_fingerprint(model)

    @abstractmethod
    def _statistics(
        self,
        a: list[WeightLayer],
        b: list[WeightLayer],
        pair: dict[int, int],
        forward: dict[int, np.ndarray],
        feed: list[Feed | None],
    ) -> dict[int, tuple[float, float]]:
        """(rho, p) per tested source layer, given the forward (incoming-weight) matchings."""

    def _score(self, fp_source: Fingerprint, fp_target: Fingerprint) -> BaselineScore:
        a, b = weight_layers(fp_source), weight_layers(fp_target)
        pairs, counts = same_shape_pairs(a, b)
        pair = dict(pairs)
        feed = feeds(a)
        # source layer -> matching of its units to the target's, by incoming weights
        forward: dict[int, np.ndarray] = {}
        unaligned = 0
        for i in sorted(pair):
            wa, wb = _view(a[i], feed[i], a), _view(b[pair[i]], feed[i], a)
            if feed[i] is not None and feed[i].provider in forward:
                wb = wb[:, forward[feed[i].provider]]  # target inputs in the source's unit order
            elif feed[i] is not None:
                unaligned += 1  # the layer feeding it was not paired: inputs left as they are
            forward[i] = match_units(wa, wb)
        tested = self._statistics(a, b, pair, forward, feed)
        if not tested:
            raise BaselineNotApplicable("no paired hidden layer with enough units to test")
        p = fisher([p for _, p in tested.values()])
        layers = [
            {
                "layer": a[i].layer.name,
                "units": a[i].layer.units,
                "rho": round(rho, 4),
                "p_value": pv,
            }
            for i, (rho, pv) in sorted(tested.items())
        ]
        return BaselineScore(
            min(MAX_SCORE, -math.log10(p)),
            p,
            {**counts, "unaligned_inputs": unaligned, "tested": len(tested), "layers": layers},
        )


def _hidden(a: list[WeightLayer], pair: dict[int, int]) -> list[int]:
    """Paired layers whose units are exchangeable: all but the output layer, with enough units."""
    last = len(a) - 1
    return [i for i in sorted(pair) if i != last and a[i].layer.units >= MIN_UNITS]


@register_baseline
class CSUIndependence(_CSU):
    """Per layer, Spearman of the chained weight matching with the identity; Fisher-combined."""

    name: ClassVar[str] = "csu_independence"
    permutation_invariant: ClassVar[bool] = False

    def _statistics(
        self,
        a: list[WeightLayer],
        b: list[WeightLayer],
        pair: dict[int, int],
        forward: dict[int, np.ndarray],
        feed: list[Feed | None],
    ) -> dict[int, tuple[float, float]]:
        del b, feed
        return {i: spearman_p(np.arange(len(forward[i])), forward[i]) for i in _hidden(a, pair)}


@register_baseline
class CSUMatch(_CSU):
    """Per hidden layer, Spearman of the incoming-weight and outgoing-weight matchings."""

    name: ClassVar[str] = "csu_match"

    def _statistics(
        self,
        a: list[WeightLayer],
        b: list[WeightLayer],
        pair: dict[int, int],
        forward: dict[int, np.ndarray],
        feed: list[Feed | None],
    ) -> dict[int, tuple[float, float]]:
        last = len(a) - 1
        if last not in pair:
            return {}  # no anchored output layer to start the backward chain from
        backward: dict[int, np.ndarray] = {last: np.arange(a[last].layer.units)}
        for i in range(last, -1, -1):
            f = feed[i]
            if i not in backward or f is None or f.provider not in pair or f.provider in backward:
                continue  # the latest consumer of a layer's units decides its outgoing matching
            wa = _view(a[i], f, a)
            wb = _view(b[pair[i]], f, a)[backward[i]]  # target rows in the source's order
            # A unit's outgoing weights: its input column across the consumer's units.
            backward[f.provider] = match_units(wa.transpose(1, 0, 2), wb.transpose(1, 0, 2))
        return {i: spearman_p(forward[i], backward[i]) for i in _hidden(a, pair) if i in backward}
