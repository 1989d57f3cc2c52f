"""Model provenance testing (Nikolić, Baluta, Saxena; "Model Provenance Testing for Large Language
Models", NeurIPS 2025).

Black-box: derived models keep producing the same greedy outputs as their parent. On random
prompts, the child's greedy output is compared with each candidate parent's; the candidate with the
most matches is accepted as the parent only if it beats *every* other candidate significantly,
the family of one-sided tests corrected with Holm-Bonferroni; otherwise the answer is "no parent".
The other candidates act as the baseline of unrelated models the paper compares against.

Choices made here:

* greedy output = argmax of the model's output vector: for a language model (whose handle returns
  the next-token distribution after each prompt) the first greedy token, for a classifier its top-1
  class. The paper compares longer greedy continuations token by token; the Model handle gives one
  token per prompt, so each prompt is one Bernoulli trial;
* the test of "best beats c": both match counts are on the same prompts, so it is McNemar's exact
  test on the discordant prompts (best matches and c does not, or the reverse), one-sided;
* as a pair scorer the method gives the match rate (no p-value: that needs the other candidates).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from progenitor.baselines._base import (
    Baseline,
    BaselineNotApplicable,
    BaselineScore,
    Fingerprint,
    as_fingerprints,
    get_baseline,
    register_baseline,
)
from progenitor.baselines._outputs import first, run
from progenitor.models.base import Model
from progenitor.probes import ProbeSet

MAX_PROBES = 1000
ALPHA = 0.05


@register_baseline
class Nikolic(Baseline):
    """Greedy-output match rate on the probes (the pair form of the provenance tester)."""

    name: ClassVar[str] = "nikolic"
    access = "black"
    paper: ClassVar[str] = (
        "Nikolić, Baluta, Saxena, Model Provenance Testing for Large Language Models, NeurIPS 2025"
    )

    def _extract(self, model: Model, probes: ProbeSet | None) -> Fingerprint:
        assert probes is not None
        out = run(model, first(probes, MAX_PROBES).batch())
        if out.shape[1] < 2:
            raise BaselineNotApplicable(f"{model.ref} has a single output: no greedy choice")
        return {"greedy": out.argmax(axis=1).astype(np.int64)}

    def _score(self, fp_source: Fingerprint, fp_target: Fingerprint) -> BaselineScore:
        matches = _matches(fp_target, fp_source)
        return BaselineScore(
            float(matches.mean()), None, {"matches": int(matches.sum()), "prompts": len(matches)}
        )


@dataclass
class ParentTest:
    """The outcome of testing a child against candidate parents.

    ``parent`` is the accepted candidate or None; ``best`` the candidate with most matches;
    ``p_values`` the Holm-adjusted p-values of "best beats c" for every other candidate c;
    ``p_value`` the largest of them (the family is rejected only if all are).
    """

    parent: str | None
    best: str
    matches: dict[str, int]
    prompts: int
    p_values: dict[str, float] = field(default_factory=dict)
    p_value: float = 1.0


def parent_test(
    child: Model | Fingerprint,
    candidates: Mapping[str, Model | Fingerprint],
    *,
    probes: ProbeSet | Any | None = None,
    alpha: float = ALPHA,
) -> ParentTest:
    """Test which candidate, if any, is the child's parent (see the module docstring).

    Args:
        child: the model under suspicion, or its ``nikolic`` fingerprint.
        candidates: name -> candidate parent (Model or fingerprint); at least two, since the
            other candidates are the baseline the best one must beat.
        probes: the prompts, when Models are given.
        alpha: family-wise error rate of the Holm-Bonferroni-corrected tests.
    """
    if len(candidates) < 2:
        raise ValueError(
            "the provenance test needs at least two candidates (the others are its baseline)"
        )
    method = get_baseline("nikolic")
    child_fp = method.check(child) if isinstance(child, dict) else method.fingerprint(child, probes)
    fps = as_fingerprints(dict(candidates), method, probes)
    hits = {name: _matches(child_fp, fp) for name, fp in fps.items()}
    counts = {name: int(h.sum()) for name, h in hits.items()}
    best = max(sorted(counts), key=lambda name: counts[name])
    raw = {}
    for name, h in hits.items():
        if name == best:
            continue
        wins = int((hits[best] & ~h).sum())  # prompts only the best candidate matches
        losses = int((h & ~hits[best]).sum())
        raw[name] = (
            1.0
            if wins + losses == 0
            else float(stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)
        )
    adjusted = holm(raw)
    worst = max(adjusted.values())
    return ParentTest(
        best if worst <= alpha else None, best, counts, len(hits[best]), adjusted, worst
    )


def best_parent(
    child: Model | Fingerprint,
    candidates: Mapping[str, Model | Fingerprint],
    *,
    probes: ProbeSet | Any | None = None,
    alpha: float = ALPHA,
) -> str | None:
    """The accepted parent's name, or None when no candidate beats all others significantly."""
    return parent_test(child, candidates, probes=probes, alpha=alpha).parent


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    order = sorted(p_values, key=lambda k: p_values[k])
    m = len(order)
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, key in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[key]))
        adjusted[key] = running
    return adjusted


def _matches(a: Fingerprint, b: Fingerprint) -> np.ndarray:
    if a["greedy"].shape != b["greedy"].shape:
        raise BaselineNotApplicable("the two models were prompted with different probe counts")
    return a["greedy"] == b["greedy"]
