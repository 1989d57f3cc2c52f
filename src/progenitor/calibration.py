"""Calibration: what gene scores look like for independent models, and how p maps to probability.

A calibration holds, per gene, Fisher-z similarities measured between independently trained
models (the null: same recipe, other seed, the hardest negatives) and between derived pairs, and a
two-parameter logistic map from a combined p-value to P(derived). It is fitted from labelled pairs
(``fit_calibration``), stored as a small JSON file, and one made from the lineage zoo's training
split ships with the package.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from progenitor._io import write_atomic
from progenitor.errors import ProgenitorError
from progenitor.stats import NullModel, clustered_null, pooled_between_sd

CALIBRATION_VERSION = 2  # 2: null values carry cluster labels (1 is read: every value its own cluster)
MIN_GROUP = 8
DEFAULT_NAME = "default-calibration.json"


@dataclass
class GeneNull:
    """Null (independent) and derived Fisher-z similarities of one gene.

    Null values come with cluster labels: pairs drawn from the same two families (every
    derivative of one source against every derivative of another) share a cluster, and the
    p-value treats a cluster as one draw (``progenitor.stats.clustered_null``).
    """

    version: int
    null: list[float]
    derived: list[float] = field(default_factory=list)
    # The null split by the source's recipe (``DNA.recipe()``): independents of one recipe are
    # often far more alike than the pooled null says (e.g. two MLPs on the same data).
    groups: dict[str, list[float]] = field(default_factory=dict)
    null_clusters: list[int] | None = None
    group_clusters: dict[str, list[int]] = field(default_factory=dict)
    between_sd: float = 0.0  # spread between clusters, pooled over recipes (for recipes with < 3)
    # model_for's answers by recipe: a GeneNull is not changed once built, and a collection-wide
    # search or tree asks for the same few nulls thousands of times.
    _models: dict[str | None, tuple[NullModel, str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def null_for(self, recipe: str | None) -> tuple[list[float], str]:
        """The recipe's own null values when it has at least ``MIN_GROUP`` samples, else the pooled ones."""
        if recipe is not None and len(self.groups.get(recipe, [])) >= MIN_GROUP:
            return self.groups[recipe], f"recipe {recipe}"
        return self.null, "pooled"

    def model_for(self, recipe: str | None) -> tuple[NullModel, str]:
        """The predictive null model for a source of ``recipe`` and a description of it."""
        if recipe in self._models:
            return self._models[recipe]
        values, which = self.null_for(recipe)
        clusters = self.group_clusters.get(recipe) if which != "pooled" else self.null_clusters  # type: ignore[arg-type]
        if clusters is not None and len(clusters) != len(values):
            clusters = None
        model = clustered_null(values, clusters, self.between_sd)
        self._models[recipe] = (model, f"{which}, {model.clusters} clusters")
        return self._models[recipe]

    def p_value(self, z: float, recipe: str | None = None) -> float:
        """One-sided predictive p-value of a Fisher z under this gene's null for ``recipe``."""
        return self.model_for(recipe)[0].p_value(z)


@dataclass
class Calibration:
    """Per-gene nulls and the p -> probability map; ``source`` says what it was fitted on."""

    genes: dict[str, GeneNull]
    logistic: tuple[float, float] = (0.0, 1.0)  # P = sigmoid(a + b * log10(1/p))
    source: str = "unknown"

    def pooled_for(self, recipe: str | None) -> bool:
        """Whether every gene judges a source of ``recipe`` against its pooled null (no gene
        holds enough independents of that recipe for a null of its own)."""
        return all(g.null_for(recipe)[1] == "pooled" for g in self.genes.values())

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "calibration_version": CALIBRATION_VERSION,
            "source": self.source,
            "logistic": list(self.logistic),
            "genes": {
                n: {
                    "version": g.version,
                    "null": [round(v, 5) for v in g.null],
                    "derived": [round(v, 5) for v in g.derived],
                    "groups": {k: [round(v, 5) for v in vs] for k, vs in g.groups.items()},
                    "null_clusters": g.null_clusters,
                    "group_clusters": g.group_clusters,
                    "between_sd": round(g.between_sd, 6),
                }
                for n, g in self.genes.items()
            },
        }

    def save(self, path: str | Path) -> Path:
        """Write as JSON, atomically (a temporary file, then a rename)."""
        return write_atomic(path, (json.dumps(self.to_json(), indent=1) + "\n").encode())


def load_calibration(path: str | Path | None = None) -> Calibration:
    """Read a calibration file, or the one shipped with the package when ``path`` is None.

    The shipped one is read once per process and shared (treat it as read-only): every
    ``compare`` without a calibration asks for it, and parsing it and rebuilding its null models
    cost twice as much as the comparison itself.
    """
    if path is None:
        return _shipped_calibration()
    return _read_calibration(path)


@functools.cache
def _shipped_calibration() -> Calibration:
    return _read_calibration(None)


def _read_calibration(path: str | Path | None) -> Calibration:
    try:
        if path is None:
            text = resources.files("progenitor.data").joinpath(DEFAULT_NAME).read_text()
            where = f"package {DEFAULT_NAME}"
        else:
            text = Path(path).read_text()
            where = str(path)
        raw = json.loads(text)
    except (OSError, ValueError, ModuleNotFoundError) as exc:
        raise ProgenitorError(f"calibration {path or DEFAULT_NAME} cannot be read ({exc})") from exc
    if not isinstance(raw, dict):
        raise ProgenitorError(f"{where}: not a calibration (a JSON object is expected)")
    if raw.get("calibration_version") not in (1, CALIBRATION_VERSION):
        raise ProgenitorError(f"{where}: calibration version {raw.get('calibration_version')} unknown")
    try:
        genes = {
            n: GeneNull(
                int(g["version"]),
                list(g["null"]),
                list(g.get("derived", [])),
                dict(g.get("groups", {})),
                g.get("null_clusters"),
                dict(g.get("group_clusters", {})),
                float(g.get("between_sd", 0.0)),
            )
            for n, g in raw["genes"].items()
        }
        a, b = raw.get("logistic", [0.0, 1.0])
        return Calibration(genes, (float(a), float(b)), raw.get("source", where))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProgenitorError(f"{where}: calibration is malformed ({type(exc).__name__}: {exc})") from exc


def fit_logistic(log_p: np.ndarray, labels: np.ndarray, l2: float = 1e-3) -> tuple[float, float]:
    """Fit P(derived) = sigmoid(a + b x) by Newton's method with a small ridge (no sklearn)."""
    x = np.column_stack([np.ones_like(log_p), log_p])
    w = np.zeros(2)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - labels) + l2 * w
        hess = x.T @ (x * (p * (1 - p))[:, None]) + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[0]), float(w[1])


def fit_calibration(
    records: Iterable[tuple[dict[str, float], bool]],
    versions: dict[str, int],
    source: str,
    combine: Any = None,
    recipes: list[str | None] | None = None,
    clusters: list[str | None] | None = None,
    target_recipes: list[str | None] | None = None,
) -> Calibration:
    """Fit a calibration from ``(gene similarities, derived?)`` records of labelled pairs.

    Args:
        records: per pair, gene name -> raw similarity, and whether the target is derived.
            Negatives should be independently trained models (other seeds of the same recipe).
        versions: gene name -> extractor version the similarities were measured with.
        source: a description of the pairs (e.g. the zoo hash and split).
        combine: function(similarities, Calibration, recipe, target recipe) -> combined p-value,
            used to fit the logistic map; when None only the nulls are fitted.
        recipes: per record, the source's recipe signature (``DNA.recipe()``); the null is then
            also kept per recipe.
        clusters: per record, a label shared by dependent pairs (e.g. the two families the
            models come from); None: every pair is its own cluster.
        target_recipes: per record, the target's recipe signature (for ``combine``).
    """
    from progenitor.stats import fisher_z

    records = list(records)
    keys = recipes if recipes is not None else [None] * len(records)
    labels = clusters if clusters is not None else [f"pair {i}" for i in range(len(records))]
    cluster_id = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    genes: dict[str, GeneNull] = {}
    for name, version in versions.items():
        null, null_clusters = [], []
        pos = [fisher_z(s[name]) for s, derived in records if derived and name in s]
        groups: dict[str, list[float]] = {}
        group_clusters: dict[str, list[int]] = {}
        for (s, derived), key, label in zip(records, keys, labels, strict=True):
            if derived or name not in s:
                continue
            z = fisher_z(s[name])
            null.append(z)
            null_clusters.append(cluster_id[label])
            if key is not None:
                groups.setdefault(key, []).append(z)
                group_clusters.setdefault(key, []).append(cluster_id[label])
        if len(null) >= 3:
            between = pooled_between_sd([(groups[k], group_clusters[k]) for k in groups])
            genes[name] = GeneNull(version, null, pos, groups, null_clusters, group_clusters, between)
    cal = Calibration(genes, (0.0, 1.0), source)
    if combine is not None:
        xs, ys = [], []
        targets = target_recipes if target_recipes is not None else [None] * len(records)
        for (sims, derived), key, target_key in zip(records, keys, targets, strict=True):
            p = combine(sims, cal, key, target_key)
            if p is not None:
                xs.append(min(-math.log10(max(p, 1e-300)), 50.0))
                ys.append(1.0 if derived else 0.0)
        if len(set(ys)) == 2:
            cal.logistic = fit_logistic(np.array(xs), np.array(ys))
    return cal
