"""Fuse gene scores into a calibrated verdict with evidence.

Each gene's similarity is turned into a one-sided p-value against the null of independently
trained models (from a Calibration, or from independent models the caller supplies); the genes'
p-values are combined with the Cauchy combination test, which stays valid when the genes are
dependent, once over every gene and once over the genes that read outputs only (a student's only
evidence); the smaller, doubled, is the combined p-value (``combine_p_values``). The verdict is

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

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from progenitor.calibration import Calibration
from progenitor.genes import GeneScore, get_gene
from progenitor.stats import NullModel, cauchy_combination, clustered_null, fisher_z, sigmoid

Verdict = Literal["derived", "unrelated", "inconclusive"]
DEFAULT_ALPHA = 0.01
INCONCLUSIVE_FACTOR = 5.0
REVERSED = 0.2
BEHAVIOUR_ACCESS = "black"  # genes of this access form the verdict's behavioural test


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


@functools.cache
def behavioural(gene: str) -> bool:
    """Whether a gene reads the model's outputs only (it joins the verdict's behavioural test)."""
    return get_gene(gene).access == BEHAVIOUR_ACCESS


def behaviour_recipe(recipe: str | None, target_recipe: str | None) -> str | None:
    """The recipe whose null the behavioural test reads: the source's own when the target is of
    that recipe (or its recipe is unknown), else none (the pooled null over every recipe).

    The source's own null holds independent models *of its recipe*, which share its architecture
    and with it some of its behaviour; a target of another architecture (a student) is not one of
    those, and the calibration has no null for that pairing. On the standard zoo's validation
    families, the pooled null there took distillation's AUC from 0.914 to 0.966 and extraction's
    from 0.844 to 0.900 (the source's own null everywhere; 0.894 and 0.851 with no behavioural
    test, 0.960 and 0.856 with the pooled null for every target). The test over every gene keeps
    the source's own null (the pooled null there too, for targets of another recipe: 0.965 and
    0.897). On the evasion zoo's far-distilled students, same-recipe targets, it is weaker than
    the pooled null for every target would be (BENCHMARKS.md section 5)."""
    return recipe if target_recipe is None or target_recipe == recipe else None


def behaviour_p_values(
    p_values: dict[str, float],
    recipe: str | None,
    target_recipe: str | None,
    p_under: Callable[[str, str | None], float | None],
) -> dict[str, float] | None:
    """The behavioural test's p-values where it reads another null than ``p_values`` do (the
    pooled one, ``behaviour_recipe``), else None; ``p_under(gene, recipe)`` gives a gene's p-value
    under a recipe's null (None without one)."""
    own = behaviour_recipe(recipe, target_recipe)
    if own == recipe:
        return None
    under = {name: p_under(name, own) for name in p_values if behavioural(name)}
    return {name: p for name, p in under.items() if p is not None}


def combine_p_values(
    p_values: dict[str, float], behaviour: dict[str, float] | None = None
) -> dict[str, float] | None:
    """The genes' p-values (gene name -> p) combined into the verdict's p-value, or None if empty.

    Two hypotheses are tested: that the target carries the source's genes at all (the Cauchy
    combination of every gene, ``all_genes``), and that it behaves like the source (of the
    behavioural genes, ``behaviour``: those of ``p_values``, or the p-values given, measured
    against the null ``behaviour_recipe`` picks). The verdict's p-value is the smaller, doubled
    (Bonferroni, valid whatever their dependence): ``combined``. A student distilled or extracted
    from the source shares none of its weights, so its only evidence is behavioural, and averaged
    with weight tests that see nothing it is diluted. On the standard zoo's validation families
    (with ``behaviour_recipe``'s nulls) the second test raised distillation's AUC from 0.894 to
    0.966, extraction's from 0.851 to 0.900 and TPR at 1% FPR from 0.907 to 0.930, removed the
    one same-architecture false positive, and cost two students decided at alpha = 0.01 (their
    test over every gene had p 0.005-0.0096). When every gene (or none) is behavioural, the two
    tests are one and ``combined`` is the Cauchy combination of ``p_values``.
    """
    if not p_values:
        return None
    everything = cauchy_combination(list(p_values.values()))
    if behaviour is None:
        behaviour = {name: p for name, p in p_values.items() if behavioural(name)}
    if not behaviour or all(behavioural(name) for name in p_values):
        return {"combined": everything}
    behaving = cauchy_combination(list(behaviour.values()))
    return {"combined": min(1.0, 2.0 * min(everything, behaving)), "all_genes": everything, "behaviour": behaving}


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
    target_recipe: str | None = None,
) -> Comparison:
    """Turn gene scores (and the learned classifier's output) into a Comparison.

    ``recipe`` is the source's recipe signature (``DNA.recipe()``): when the calibration holds
    independents of that recipe, their null is used instead of the pooled one. ``target_recipe``
    is the target's: the behavioural test reads the null ``behaviour_recipe`` picks.
    """
    evidence = gene_evidence(scores, calibration, custom_null, recipe)
    p_values = {n: e["p_value"] for n, e in evidence.items() if e.get("p_value") is not None}

    def p_under(name: str, null_recipe: str | None) -> float | None:
        null = gene_null(name, calibration, custom_null, null_recipe)[0]
        return None if null is None else float(f"{null.p_value(fisher_z(scores[name].similarity)):.6g}")

    tests = combine_p_values(p_values, behaviour_p_values(p_values, recipe, target_recipe, p_under))
    if tests is None:
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
    p = tests["combined"]
    both = {k: float(f"{v:.6g}") for k, v in tests.items() if k != "combined"}  # the two tests, when two
    how = ""
    if both:
        how = f" (= 2 x the smaller of: all genes {both['all_genes']:.3g}, outputs alone {both['behaviour']:.3g})"
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
        reason = f"combined p-value {p:.3g}{how} < alpha {alpha}"
    elif significant or p < INCONCLUSIVE_FACTOR * alpha:
        verdict = "inconclusive"
        reason = (
            f"genes disagree: {', '.join(significant)} below alpha alone, combined p {p:.3g}{how}"
            if significant
            else f"borderline: combined p {p:.3g}{how} < {INCONCLUSIVE_FACTOR * alpha:g}"
        )
    else:
        verdict = "unrelated"
        reason = f"combined p-value {p:.3g}{how} >= alpha {alpha}: like independently trained models"
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
            **({"tests": both} if both else {}),
            **({"behaviour_null": "pooled: the target is of another recipe"}
               if both and behaviour_recipe(recipe, target_recipe) != recipe else {}),
            "calibration": calibration.source,
            **({"learned_dna": learned} if learned is not None else {}),
        },
    )
