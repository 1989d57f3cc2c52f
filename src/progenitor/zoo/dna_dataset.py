"""The zoo as a dataset of DNAs and labelled pairs (for training, calibration and benchmarks).

Every model's DNA is extracted once on the zoo's probe set (with a sample of the data it was
trained on, for the data-driven gene) and cached in ``ZOO/dna/`` by model hash, probe hash and
gene versions, so a rerun re-extracts only what changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from progenitor.api import extract, score_genes
from progenitor.calibrate import calibrate
from progenitor.calibration import Calibration
from progenitor.dna import DNA, load_dna, save_dna
from progenitor.errors import DNAFormatError, ProgenitorError
from progenitor.genes import list_genes
from progenitor.learn.train import Pairs, TrainingSet
from progenitor.zoo.build import load_manifest
from progenitor.zoo.data import get_part

DATA_SAMPLE = 256


@dataclass
class LabelledPair:
    """One evaluation pair of the manifest, with the derivation kind of derived pairs."""

    source: str
    target: str
    derived: bool
    kind: str  # the derivation kind ("finetune", ..., "chain") or the negative kind
    split: dict[str, str | None]
    related: bool


def _gene_versions() -> str:
    return ",".join(f"{g.name}{g.version}" for g in list_genes())


def _data_sample(data: str | None) -> Any:
    if not data or ":" not in data:
        return None
    name, part = data.split(":", 1)
    try:
        ds = get_part(name, part, limit=DATA_SAMPLE)
    except (ProgenitorError, KeyError, ValueError):
        return None
    return ds.x if ds.x is not None else list(ds.texts)


class ZooDNA:
    """DNAs of a built zoo's models and its labelled pairs."""

    def __init__(self, zoo_dir: str | Path, probes_id: str | None = None, with_data: bool = True) -> None:
        self.root = Path(zoo_dir)
        self.manifest = load_manifest(zoo_dir)
        self.models = {m["id"]: m for m in self.manifest["models"]}
        probe_sets = self.manifest["probes"]
        chosen = [p for p in probe_sets if probes_id in (None, p["id"])]
        if not chosen:
            raise ProgenitorError(f"{zoo_dir}: no probe set {probes_id!r}")
        self.probes = chosen[0]
        self.with_data = with_data
        self._cache: dict[str, DNA] = {}
        self.edges_kind = {(e["parent"], e["child"]): e["kind"] for e in self.manifest["edges"]}

    @property
    def zoo_hash(self) -> str:
        """sha256 of the manifest's model hashes and pairs (identifies the zoo's content)."""
        digest = hashlib.sha256()
        for m in self.manifest["models"]:
            digest.update(f"{m['id']}:{m['sha256']}\n".encode())
        digest.update(json.dumps(self.manifest["pairs"], sort_keys=True).encode())
        return digest.hexdigest()

    def model_ids(self, modality: str | None = "image") -> list[str]:
        """Models whose inputs the chosen probe set fits."""
        wanted = modality or self.probes.get("modality")
        return [i for i, m in self.models.items() if m.get("modality", "image") == wanted]

    def dna(self, model_id: str) -> DNA:
        """The model's DNA, extracted once and cached on disk."""
        if model_id in self._cache:
            return self._cache[model_id]
        entry = self.models[model_id]
        key = hashlib.sha256(
            f"{entry['sha256']}|{self.probes['sha256']}|{_gene_versions()}|{self.with_data}".encode()
        ).hexdigest()[:24]
        path = self.root / "dna" / f"{key}.dna"
        try:
            dna = load_dna(path)
        except DNAFormatError:
            dna = extract(
                str(self.root / entry["path"]),
                probes=str(self.root / self.probes["path"]),
                data=_data_sample(entry.get("data")) if self.with_data else None,
                **entry["load"],
            )
            dna.model["ref"] = model_id  # zoo ids, not temporary paths, in stored DNAs
            save_dna(dna, path)
        self._cache[model_id] = dna
        return dna

    def dnas(self, ids: list[str], progress: Callable[[str], None] | None = None) -> dict[str, DNA]:
        """DNAs of several models."""
        out = {}
        for i, model_id in enumerate(ids, 1):
            if progress:
                progress(f"[{i}/{len(ids)}] {model_id}")
            out[model_id] = self.dna(model_id)
        return out

    def kind_of(self, pair: dict[str, Any]) -> str:
        """A derived pair's derivation kind (one edge) or ``chain``; a negative pair's kind."""
        if not pair["derived"]:
            return pair["kind"]
        chain = pair.get("chain") or []
        if len(chain) == 1:
            return self.edges_kind.get((pair["source"], pair["target"]), chain[0])
        return "chain"

    def pairs(self, split: str, scheme: str = "family", modality: str | None = "image") -> list[LabelledPair]:
        """Labelled pairs of one split under a scheme (``family``, ``arch`` or ``kind``)."""
        return [p for p in self.pairs_all(modality) if p.split.get(scheme) == split]

    def pairs_unsplit(self, modality: str | None = "image") -> list[LabelledPair]:
        """Pairs that belong to no split of the family scheme (across families of two splits)."""
        return [p for p in self.pairs_all(modality) if p.split.get("family") is None]

    def pairs_all(self, modality: str | None = "image") -> list[LabelledPair]:
        """Every labelled pair among models of one modality."""
        ids = set(self.model_ids(modality))
        return [
            LabelledPair(
                p["source"],
                p["target"],
                bool(p["derived"]),
                self.kind_of(p),
                p["split"],
                self.models[p["source"]]["family"] == self.models[p["target"]]["family"],
            )
            for p in self.manifest["pairs"]
            if p["source"] in ids and p["target"] in ids
        ]

    def training_set(self, scheme: str = "family", progress: Callable[[str], None] | None = None) -> TrainingSet:
        """DNAs and train/val pairs in the form ``progenitor.learn.train.fit`` takes."""
        ids = self.model_ids()
        dnas = self.dnas(ids, progress)
        index = {m: i for i, m in enumerate(ids)}
        pairs = {}
        for split in ("train", "val"):
            rows = [(index[p.source], index[p.target], p.derived, p.related) for p in self.pairs(split, scheme)]
            pairs[split] = Pairs.of(rows)
        return TrainingSet([dnas[i] for i in ids], [self.models[i]["family"] for i in ids], pairs)


NULL_KINDS = ("same-arch-same-data-other-seed", "same-arch-other-data")


def calibrate_on_zoo(
    zoo: ZooDNA, split: str = "train", scheme: str = "family", progress: Callable[[str], None] | None = None
) -> Calibration:
    """A Calibration from one split's pairs: derived pairs and independently trained negatives.

    Siblings and cousins are left out of the null: they share an ancestor, so they are not
    independent models. Same-architecture, same-data other-seed pairs dominate the null, as the
    hardest negatives should.
    """
    pairs = [p for p in zoo.pairs(split, scheme) if p.derived or p.kind in NULL_KINDS]
    if not any(p.derived for p in pairs) or all(p.derived for p in pairs):
        raise ProgenitorError(
            f"the {split!r} split of scheme {scheme!r} has no derived or no independent pairs to calibrate on"
        )
    zoo.dnas(sorted({p.source for p in pairs} | {p.target for p in pairs}), progress)
    records = [
        ({n: s.similarity for n, s in score_genes(zoo.dna(p.source), zoo.dna(p.target)).items()}, p.derived)
        for p in pairs
    ]
    negatives = sum(1 for _, d in records if not d)
    return calibrate(
        records,
        f"zoo {zoo.manifest['name']} {zoo.zoo_hash[:12]}, {split} split: "
        f"{len(records) - negatives} derived and {negatives} independent pairs",
        recipes=[zoo.dna(p.source).recipe() for p in pairs],
        target_recipes=[zoo.dna(p.target).recipe() for p in pairs],
        # Every derivative of one family against every derivative of another: one cluster.
        clusters=["|".join(sorted((zoo.models[p.source]["family"], zoo.models[p.target]["family"]))) for p in pairs],
    )
