"""Direction signals: of two related models, which one is the parent?

The verdict says whether two models are related; it is (nearly) symmetric. A direction signal
is a function ``signal(a, b) -> P(a is the parent of b)`` in [0, 1], 0.5 when it cannot tell.
Signals are registered by name (``@register_direction``) and chosen by the lineage tree and the
parent search (``direction=``). The shipped ones:

* ``weight_stats`` (default): the ``weight_stats`` gene's per-layer moments and the models'
  parameter counts, as votes in log-odds:

  - **sparsity**: derivations add exact zeros (magnitude pruning, int8 quantization rounding small
    weights to zero) and never remove them: the sparser model is the child
    (``4 tanh(Δsparsity / 0.004)``).
  - **size**: structured pruning and distillation into smaller students remove parameters: the
    larger model is the parent (``4 tanh(log(n_a / n_b) / 0.05)``).
  - **kurtosis**: fine-tuning raises the weights' kurtosis (MoTHer, Horwitz et al.): the model with
    the lower kurtosis is the parent. Weighted by how consistently the layers agree
    (``mean(sign Δk_layer) · tanh(|Δk| / 0.01)``), so that unrelated weight changes (a
    distilled student's own training) count little.

  - **precision**: lossy conversions only go one way: a copy cast to float16/bfloat16 has only
    float16-exact weights, a quantized copy repeats values on its grid (``layer_precision``): the
    lossier model is the child (``4 tanh(Δlossy / 0.05)``, ``lossy`` the mean over layers of the
    larger of the two fractions).
  - **accuracy**, between models of two architectures (other layer kinds) that both carry
    ``error_agreement`` on the same labelled probes: such a pair can only be a teacher and its
    student, whose size is the distiller's choice, so the size vote is dropped and the model with
    fewer mistakes is the parent (``4 tanh(Δerrors / 4)``). On the standard zoo's validation
    families the child was the less accurate in 26 of 30 such derived pairs (its students are five
    times *larger* than their teachers, so the size vote pointed the wrong way).

  Models with the same weights up to permutation or small noise (``permute``, ``noise``, an
  export to another format) have no direction under this signal: 0.5.
* ``params``: the size vote alone.
* ``none``: always 0.5 (undirected lineage).

* ``learned``: the direction head of the learned Model DNA's classifier
  (``LearnedDNA.assess(a, b)["direction"]``), trained on the zoo's derivations; needs a learned
  Model DNA (the packaged default, when one ships).

``auto`` (the default of the tree and the search) is ``weight_stats`` when both models have
weight moments, else ``learned`` when a learned Model DNA is in use, else ``weight_stats`` (which
then falls back on sizes). The explicit weight cues come first because on held-out zoo families
the packaged learned classifier is the weaker signal (BENCHMARKS.md).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from progenitor._memo import per_object
from progenitor.dna import DNA
from progenitor.errors import ProgenitorError

__all__ = ["DirectionSignal", "get_direction", "list_directions", "register_direction"]

DirectionSignal = Callable[[DNA, DNA], float]

_SIGNALS: dict[str, tuple[DirectionSignal, str]] = {}
MAX_LOGIT = 8.0


def register_direction(name: str, description: str) -> Callable[[DirectionSignal], DirectionSignal]:
    """Decorator registering ``signal(a, b) -> P(a is the parent of b)`` under ``name``."""

    def decorate(fn: DirectionSignal) -> DirectionSignal:
        _SIGNALS[name] = (fn, description)
        return fn

    return decorate


def get_direction(name_or_fn: str | DirectionSignal, bundle: Any = None) -> DirectionSignal:
    """The registered signal called ``name`` (a callable is returned as is).

    ``auto``: ``weight_stats`` when both DNAs hold weight moments, else the learned classifier's
    direction when ``bundle`` (a ``LearnedDNA``) is given, else ``weight_stats``.
    """
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn == "auto":
        if bundle is None:
            return weight_stats_direction

        def auto(a: DNA, b: DNA) -> float:
            if "weight_stats" in a.genes and "weight_stats" in b.genes:
                return weight_stats_direction(a, b)
            return float(bundle.assess(a, b)["direction"])

        return auto
    if name_or_fn not in _SIGNALS:
        raise ProgenitorError(f"unknown direction signal {name_or_fn!r}; known: {', '.join(sorted(_SIGNALS))}")
    return _SIGNALS[name_or_fn][0]


def list_directions() -> dict[str, str]:
    """Registered signal names and their descriptions."""
    return {n: d for n, (_, d) in sorted(_SIGNALS.items())}


def _sigmoid(x: float) -> float:
    x = max(-MAX_LOGIT, min(MAX_LOGIT, x))
    return 1.0 / (1.0 + math.exp(-x))


def _size_vote(a: DNA, b: DNA) -> float:
    na, nb = a.model.get("n_params"), b.model.get("n_params")
    if not (isinstance(na, int | float) and isinstance(nb, int | float)) or na <= 0 or nb <= 0:
        return 0.0
    return 4.0 * math.tanh(math.log(na / nb) / 0.05)


@dataclass(frozen=True)
class _Moments:
    """A DNA's per-layer weight moments (log-std, kurtosis, sparsity) and the means the votes read."""

    shape: tuple[int, ...]
    kurtosis: np.ndarray
    kurtosis_mean: float
    sparsity_mean: float


# Per DNA, kept while it lives: a search orients one target against every candidate.
@per_object
def _moments(dna: DNA) -> _Moments | None:
    gene = dna.genes.get("weight_stats")
    if gene is None or "moments" not in gene.arrays:
        return None
    m = np.asarray(gene.arrays["moments"], dtype=np.float64)
    if not (m.ndim == 2 and m.shape[1] >= 3 and len(m)):
        return None
    return _Moments(m.shape, m[:, 1], m[:, 1].mean(), m[:, 2].mean())


@per_object
def _lossy(dna: DNA) -> float | None:
    gene = dna.genes.get("weight_stats")
    if gene is None or "precision" not in gene.arrays or not len(gene.arrays["precision"]):
        return None
    return float(np.asarray(gene.arrays["precision"], dtype=np.float64).max(axis=1).mean())


COPY_STEP_SPARSITY = 0.01  # more exact zeros (mean share over layers) than this: a pruning step
COPY_STEP_LOSSY = 0.1  # lossier precision (mean fp16-exact / repeated share) than this: a conversion


def copy_step(a: DNA, b: DNA) -> str | None:
    """How ``b`` looks made from ``a`` by a copying step: ``"lossy"`` (lossier values: float16,
    int8), ``"pruned"`` (more exact zeros), or None. Such a child holds its parent's values,
    within rounding or exactly (``weight_values``); thresholds chosen on the standard zoo's
    validation families."""
    la, lb = _lossy(a), _lossy(b)
    if la is not None and lb is not None and lb > la + COPY_STEP_LOSSY:
        return "lossy"
    ma, mb = _moments(a), _moments(b)
    if ma is not None and mb is not None and float(mb.sparsity_mean) > float(ma.sparsity_mean) + COPY_STEP_SPARSITY:
        return "pruned"
    return None


@per_object
def _layer_kinds(dna: DNA) -> tuple[str, ...] | None:
    gene = dna.genes.get("weight_sketch")
    return None if gene is None else tuple(str(layer[1]) for layer in gene.meta["layers"])


@per_object
def _errors(dna: DNA) -> tuple[str, int] | None:
    gene = dna.genes.get("error_agreement")
    return None if gene is None else (str(gene.meta["labels"]), int(gene.arrays["wrong"].sum()))


def _accuracy_vote(a: DNA, b: DNA) -> float | None:
    """Between models of two architectures (other layer kinds), the more accurate on the labelled
    probes is the parent (``4 tanh(Δerrors / 4)``); None when either lacks ``error_agreement`` on
    the same labels, or the architectures are one (structured pruning keeps the layer kinds)."""
    kinds_a, kinds_b, errors_a, errors_b = _layer_kinds(a), _layer_kinds(b), _errors(a), _errors(b)
    if kinds_a is None or kinds_b is None or kinds_a == kinds_b:
        return None
    if errors_a is None or errors_b is None or errors_a[0] != errors_b[0]:
        return None
    return 4.0 * math.tanh((errors_b[1] - errors_a[1]) / 4.0)


def weight_stats_votes(a: DNA, b: DNA) -> dict[str, float]:
    """The log-odds votes (sparsity, size, kurtosis, precision, accuracy) that ``a`` is the parent
    of ``b``."""
    votes = {"size": _size_vote(a, b), "sparsity": 0.0, "kurtosis": 0.0, "precision": 0.0, "accuracy": 0.0}
    accuracy = _accuracy_vote(a, b)
    if accuracy is not None:
        # A student of another architecture is the distiller's choice of size, larger or smaller.
        votes["size"], votes["accuracy"] = 0.0, accuracy
    la, lb = _lossy(a), _lossy(b)
    if la is not None and lb is not None:
        votes["precision"] = 4.0 * math.tanh((lb - la) / 0.05)
    ma, mb = _moments(a), _moments(b)
    if ma is None or mb is None:
        return votes
    votes["sparsity"] = 4.0 * math.tanh((mb.sparsity_mean - ma.sparsity_mean) / 0.004)
    if ma.shape == mb.shape:
        dk = mb.kurtosis - ma.kurtosis
        consistency = float(np.sign(np.round(dk, 4)).mean())
    else:  # other layer counts (channel pruning keeps them; other architectures do not)
        dk = np.array([mb.kurtosis_mean - ma.kurtosis_mean])
        consistency = 0.5 * float(np.sign(round(float(dk[0]), 4)))
    votes["kurtosis"] = 1.0 * consistency * math.tanh(abs(float(dk.mean())) / 0.01)
    return votes


@register_direction("weight_stats", "sparsity, size, kurtosis and precision votes (weight_stats gene, n_params)")
def weight_stats_direction(a: DNA, b: DNA) -> float:
    """P(a is the parent of b) from the sparsity, size, kurtosis and precision votes."""
    return _sigmoid(sum(weight_stats_votes(a, b).values()))


@register_direction("learned", "the learned Model DNA classifier's direction head")
def learned_direction(a: DNA, b: DNA) -> float:
    """P(a is the parent of b) from the packaged learned Model DNA."""
    bundle = _packaged_bundle()
    if bundle is None:
        raise ProgenitorError("no learned Model DNA ships with this installation; use --direction weight_stats")
    return float(bundle.assess(a, b)["direction"])


@functools.cache
def _packaged_bundle() -> Any:
    from progenitor.api import default_learned

    return default_learned()


@register_direction("params", "the larger model is the parent")
def params_direction(a: DNA, b: DNA) -> float:
    """P(a is the parent of b) from parameter counts alone."""
    return _sigmoid(_size_vote(a, b))


@register_direction("none", "no direction: every related pair is 50/50")
def no_direction(_a: DNA, _b: DNA) -> float:
    """Always 0.5."""
    return 0.5
