"""Fuse gene scores into a calibrated verdict with evidence.

Each gene's similarity is turned into a one-sided p-value against the null of independently
trained models (from a Calibration, or from independent models the caller supplies); the genes'
p-values are combined with the Cauchy combination test, which stays valid when the genes are
dependent. The verdict is

* ``derived`` when the combined p-value is below ``alpha`` (the false-positive rate on
  independent models that the caller accepts),
* ``inconclusive`` when it is not, but some gene alone is below ``alpha`` or the combined p-value
  is below ``5 * alpha`` (the evidence disagrees or is borderline),
* ``unrelated`` otherwise.

When a learned Model DNA is available (``progenitor.learn``), its classifier's output joins the
evidence as ``learned_dna`` (relation, direction, P(derived), and a p-value of its logit against
independent pairs held out at training). It does not enter the combination: on held-out zoo
families it separates derived from independent pairs less well than the genes (see
BENCHMARKS.md), so it must not outvote them. It can only make the verdict ``inconclusive``: when
the genes say related but the learned direction head is confident that the *target* is the
ancestor (direction < ``REVERSED``), a reversed pair is not reported as derived.

The probability is a calibrated map of the combined p-value (``Calibration.logistic``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from progenitor.calibration import Calibration
from progenitor.genes import GeneScore, get_gene
from progenitor.stats import NullModel, cauchy_combination, clustered_null, fisher_z, sigmoid

Verdict = Literal["derived", "unrelated", "inconclusive"]
DEFAULT_ALPHA = 0.01
INCONCLUSIVE_FACTOR = 5.0
REVERSED = 0.2


@dataclass
class Comparison:
    """The answer to "is ``target`` derived from ``source``?" with its evidence."""

    source: str
    target: str
    verdict: Verdict
    probability: float
    p_value: float | None
    access: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The object ``progenitor compare --json`` prints for this target."""
        return {
            "source": self.source,
            "target": self.target,
            "verdict": self.verdict,
            "probability": round(self.probability, 6),
            "p_value": None if self.p_value is None else float(f"{self.p_value:.6g}"),
            "access": self.access,
            "evidence": self.evidence,
        }


def gene_null(
    name: str, calibration: Calibration, custom: dict[str, list[float]] | None, recipe: str | None
) -> tuple[NullModel | None, str]:
    """The null for a gene: supplied independents, else the calibration's (recipe's own if it has
    one), unless the calibration measured another version of the gene (its similarities may
    mean something else: then None, and the reason)."""
    if custom and name in custom and len(custom[name]) >= 3:
        return clustered_null(custom[name]), "supplied independent models"
    if name in calibration.genes:
        gene_null = calibration.genes[name]
        current = get_gene(name).version
        if gene_null.version != current:
            return None, f"the calibration's null is for version {gene_null.version}, not {current}: recalibrate"
        model, which = gene_null.model_for(recipe)
        return model, f"{calibration.source} ({which} null)"
    return None, "no calibrated null for this gene"


def gene_evidence(
    scores: dict[str, GeneScore],
    calibration: Calibration,
    custom_null: dict[str, list[float]] | None = None,
    recipe: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Per gene: similarity, Fisher z, null summary and one-sided p-value (None if no null)."""
    out: dict[str, dict[str, Any]] = {}
    for name, score in scores.items():
        z = fisher_z(score.similarity)
        null, where = gene_null(name, calibration, custom_null, recipe)
        entry: dict[str, Any] = {"similarity": round(score.similarity, 6), "z": round(z, 4)}
        if null is not None:
            entry.update(
                p_value=float(f"{null.p_value(z):.6g}"),
                null_mean_z=round(null.mean, 4),
                null_sd_z=round(null.sd, 4),
                null_n=null.n,
                null_from=where,
            )
            if score.exact_p_value is not None:
                # Two tests of one gene (the calibrated similarity and the gene's exact test, e.g.
                # weight_sketch's unit alignment): Bonferroni, valid whatever their dependence.
                entry["p_similarity"] = entry["p_value"]
                entry["p_value"] = float(f"{min(1.0, 2.0 * min(entry['p_value'], score.exact_p_value)):.6g}")
        else:
            entry["p_value"] = None
            entry["note"] = f"{where}: not used in the verdict"
        entry["details"] = score.details
        out[name] = entry
    return out


def combined_p_value(evidence: dict[str, dict[str, Any]]) -> float | None:
    """Cauchy combination of the genes' p-values, or None when no gene has one."""
    ps = [e["p_value"] for e in evidence.values() if e.get("p_value") is not None]
    return cauchy_combination(ps) if ps else None


def learned_evidence(learned: dict[str, Any], null: NullModel | None) -> dict[str, Any]:
    """The learned classifier's output as an evidence entry with a p-value against its null
    (``LearnedDNA.null_model()``: the Student-t predictive null of independent pairs' logits)."""
    entry = {k: round(float(v), 6) for k, v in learned.items()}
    if null is not None:
        entry["p_value"] = float(f"{null.p_value(learned['logit']):.6g}")
        entry["null_n"] = null.n
        entry["null_from"] = "learned DNA validation split (independent pairs)"
    else:
        entry["p_value"] = None
    return entry


def decide(
    source: str,
    target: str,
    access: str,
    scores: dict[str, GeneScore],
    calibration: Calibration,
    alpha: float = DEFAULT_ALPHA,
    custom_null: dict[str, list[float]] | None = None,
    learned: dict[str, Any] | None = None,
    recipe: str | None = None,
) -> Comparison:
    """Turn gene scores (and the learned classifier's output) into a Comparison.

    ``recipe`` is the source's recipe signature (``DNA.recipe()``): when the calibration holds
    independents of that recipe, their null is used instead of the pooled one.
    """
    evidence = gene_evidence(scores, calibration, custom_null, recipe)
    p = combined_p_value(evidence)
    if p is None:
        return Comparison(
            source,
            target,
            "inconclusive",
            0.5,
            None,
            access,
            {
                "genes": evidence,
                "decided_by": [],
                "alpha": alpha,
                "reason": "no gene with a calibrated null could be measured on both models",
            },
        )
    a, b = calibration.logistic
    probability = sigmoid(a + b * min(-math.log10(max(p, 1e-300)), 50.0))
    significant = sorted(
        (n for n, e in evidence.items() if (e.get("p_value") or 1.0) < alpha), key=lambda n: evidence[n]["p_value"]
    )
    if learned is not None and p < alpha and learned["direction"] < REVERSED:
        verdict: Verdict = "inconclusive"
        reason = (
            f"related (combined p-value {p:.3g}) but the learned direction says the target is the "
            f"ancestor (direction {learned['direction']:.2f} < {REVERSED})"
        )
    elif p < alpha:
        verdict = "derived"
        reason = f"combined p-value {p:.3g} < alpha {alpha}"
    elif significant or p < INCONCLUSIVE_FACTOR * alpha:
        verdict = "inconclusive"
        reason = (
            f"genes disagree: {', '.join(significant)} below alpha alone, combined p {p:.3g}"
            if significant
            else f"borderline: combined p {p:.3g} < {INCONCLUSIVE_FACTOR * alpha:g}"
        )
    else:
        verdict = "unrelated"
        reason = f"combined p-value {p:.3g} >= alpha {alpha}: like independently trained models"
    return Comparison(
        source,
        target,
        verdict,
        probability,
        p,
        access,
        {
            "genes": evidence,
            "decided_by": significant,
            "alpha": alpha,
            "reason": reason,
            "calibration": calibration.source,
            **({"learned_dna": learned} if learned is not None else {}),
        },
    )
