"""Fit a Calibration from labelled pairs of models (e.g. the lineage zoo's training split)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from progenitor.api import ModelLike, as_dna, score_genes
from progenitor.calibration import Calibration, fit_calibration
from progenitor.dna import DNA
from progenitor.genes import get_gene
from progenitor.stats import fisher_z
from progenitor.verdict import behaviour_p_values, combine_p_values


def combined_p(
    similarities: dict[str, float],
    calibration: Calibration,
    recipe: str | None = None,
    target_recipe: str | None = None,
) -> float | None:
    """The verdict's combined p-value for raw gene similarities under ``calibration``."""
    zs = {n: fisher_z(s) for n, s in similarities.items() if n in calibration.genes}

    def p_under(name: str, null_recipe: str | None) -> float:
        return calibration.genes[name].p_value(zs[name], null_recipe)

    p_values = {n: p_under(n, recipe) for n in zs}
    tests = combine_p_values(p_values, behaviour_p_values(p_values, recipe, target_recipe, p_under))
    return None if tests is None else tests["combined"]


def score_pairs(
    pairs: Iterable[tuple[Hashable, Hashable, bool]],
    resolve: Callable[[Hashable], ModelLike],
    probes: Any = None,
    progress: Callable[[str], None] | None = None,
) -> list[tuple[dict[str, float], bool]]:
    """Gene similarities of labelled pairs; each model's DNA is extracted once.

    Args:
        pairs: ``(source id, target id, derived?)``.
        resolve: maps an id to something ``progenitor.extract`` accepts (a path, a Model, ...).
        probes: the probe set used for every model.
        progress: called with a message per extracted model.
    """
    cache: dict[Hashable, DNA] = {}

    def dna(key: Hashable) -> DNA:
        if key not in cache:
            if progress:
                progress(f"extracting {key}")
            cache[key] = as_dna(resolve(key), probes=probes)
        return cache[key]

    records = []
    for source, target, derived in pairs:
        scores = score_genes(dna(source), dna(target))
        records.append(({n: s.similarity for n, s in scores.items()}, derived))
    return records


def calibrate(
    records: list[tuple[dict[str, float], bool]],
    source: str,
    recipes: list[str | None] | None = None,
    clusters: list[str | None] | None = None,
    target_recipes: list[str | None] | None = None,
) -> Calibration:
    """A Calibration (gene nulls, per-recipe nulls, p -> probability map) from scored, labelled pairs.

    ``clusters`` labels dependent pairs (see ``progenitor.calibration.fit_calibration``);
    ``recipes`` and ``target_recipes`` are each pair's source and target recipe signatures.
    """
    names = {n for sims, _ in records for n in sims}
    versions = {n: get_gene(n).version for n in sorted(names)}
    return fit_calibration(records, versions, source, combine=combined_p, recipes=recipes, clusters=clusters,
                           target_recipes=target_recipes)
