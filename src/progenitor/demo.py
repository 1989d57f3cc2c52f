"""``progenitor demo``: build the smallest zoo, extract DNAs, compare, print a verdict table.

Each source of the ``smoke`` zoo is compared with the zoo's other models; the table shows the
truth from the zoo's lineage next to the verdict, so a reader sees at once where it is right.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from progenitor.api import compare_many
from progenitor.zoo import build_zoo
from progenitor.zoo.dna_dataset import ZooDNA


def default_dir() -> Path:
    """Where the demo keeps its zoo: ``$XDG_CACHE_HOME/progenitor/demo`` (or ~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "progenitor" / "demo"


def run_demo(out: Path | None = None, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Build the smoke zoo (cached) and compare its sources with every other model.

    Returns one row per pair: source, target, truth (``derived`` or the negative's kind), kind
    (the derivation kind of derived pairs), verdict, probability, p-value, and whether the
    verdict is right (derived iff truly derived).
    """
    root = out or default_dir()
    build_zoo("smoke", root, progress=progress is not None)
    zoo = ZooDNA(root)
    ids = zoo.model_ids()
    pairs = {(p.source, p.target): p for p in zoo.pairs_all()}
    rows = []
    for source in [i for i in ids if zoo.models[i].get("root")]:
        targets = [t for t in ids if (source, t) in pairs]
        results = compare_many(zoo.dna(source), [zoo.dna(t) for t in targets])
        for target, r in zip(targets, results, strict=True):
            pair = pairs[(source, target)]
            label = "derived" if pair.derived else pair.kind
            rows.append(
                {
                    "source": source,
                    "target": target,
                    "truth": label,
                    "kind": pair.kind,
                    "verdict": r.verdict,
                    "probability": r.probability,
                    "p_value": r.p_value,
                    "correct": (r.verdict == "derived") == (label == "derived"),
                }
            )
    return rows
