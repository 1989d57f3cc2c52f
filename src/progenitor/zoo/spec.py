"""Zoo specifications: which models to make from what, which probe sets to draw, how to split.

A :class:`ZooSpec` lists :class:`ModelSpec` entries (a root recipe or a derivation applied to
parents, with parameters and a seed) and :class:`ProbeSpec` entries. Specs are plain data: they
round-trip through JSON (:meth:`ZooSpec.to_dict` / :meth:`ZooSpec.from_dict`), so a user can write
their own. Named presets live in :mod:`progenitor.zoo.presets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from progenitor.errors import ProgenitorError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the zoo.

    Attributes:
        id: unique name in the zoo (a label only: lineage is recorded on edges, not in names).
        op: a source recipe (roots) or a derivation name (children).
        params: parameters overriding the recipe's or derivation's defaults.
        parents: ids of the parent models (empty for roots; two for merging).
        seed: seeds everything random in the operation (initialisation, order, noise).
        split: for roots, the family split (``train``/``val``/``test``) their family joins;
            None lets the builder assign one. It does not change the model.
    """

    id: str
    op: str
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    parents: tuple[str, ...] = ()
    seed: int = 0
    split: str | None = None

    @property
    def is_root(self) -> bool:
        """Whether this model is made from no parent."""
        return not self.parents


@dataclass(frozen=True)
class ProbeSpec:
    """A probe set drawn from the ``probe`` parts of one or more datasets.

    Attributes:
        id: name of the probe set (its file is ``probes/<id>.npy`` or ``.txt``).
        draws: ``(dataset, n)`` pairs: the first ``n`` rows of each dataset's probe part.
        max_chars: text probes are cut to this many characters.
    """

    id: str
    draws: tuple[tuple[str, int], ...]
    max_chars: int = 400


@dataclass
class ZooSpec:
    """A whole zoo: models, probe sets and the held-out architectures and derivation kinds."""

    name: str
    models: list[ModelSpec]
    probes: list[ProbeSpec]
    held_out_archs: tuple[str, ...] = ()
    held_out_kinds: tuple[str, ...] = ()
    description: str = ""

    def validate(self) -> None:
        """Unique ids, parents declared before their children."""
        seen: set[str] = set()
        for model in self.models:
            if model.id in seen:
                raise ProgenitorError(f"zoo spec {self.name!r}: model id {model.id!r} repeats")
            for parent in model.parents:
                if parent not in seen:
                    raise ProgenitorError(
                        f"zoo spec {self.name!r}: {model.id!r} names parent {parent!r} that is not declared before it"
                    )
            if model.split not in (None, *SPLITS):
                raise ProgenitorError(f"{model.id!r}: split must be one of {', '.join(SPLITS)}")
            if model.split is not None and model.parents:
                raise ProgenitorError(f"{model.id!r}: only roots name a split (families follow)")
            seen.add(model.id)
        probe_ids = [p.id for p in self.probes]
        if len(set(probe_ids)) != len(probe_ids):
            raise ProgenitorError(f"zoo spec {self.name!r}: probe set ids repeat")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "description": self.description,
            "models": [
                {
                    "id": m.id,
                    "op": m.op,
                    "params": m.params,
                    "parents": list(m.parents),
                    "seed": m.seed,
                    "split": m.split,
                }
                for m in self.models
            ],
            "probes": [
                {"id": p.id, "draws": [list(d) for d in p.draws], "max_chars": p.max_chars} for p in self.probes
            ],
            "held_out_archs": list(self.held_out_archs),
            "held_out_kinds": list(self.held_out_kinds),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ZooSpec:
        """Parse the form written by :meth:`to_dict`."""
        try:
            models = [
                ModelSpec(
                    m["id"],
                    m["op"],
                    dict(m.get("params", {})),
                    tuple(m.get("parents", ())),
                    int(m.get("seed", 0)),
                    m.get("split"),
                )
                for m in data["models"]
            ]
            probes = [
                ProbeSpec(p["id"], tuple((str(d), int(n)) for d, n in p["draws"]), int(p.get("max_chars", 400)))
                for p in data.get("probes", [])
            ]
            spec = cls(
                str(data["name"]),
                models,
                probes,
                tuple(data.get("held_out_archs", ())),
                tuple(data.get("held_out_kinds", ())),
                str(data.get("description", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProgenitorError(f"not a zoo spec: {exc}") from exc
        spec.validate()
        return spec


class SpecBuilder:
    """Helper for writing presets: ``source`` adds a root, ``derive`` a child, chained by id."""

    def __init__(self, name: str, description: str = "") -> None:
        self.name = name
        self.description = description
        self.models: list[ModelSpec] = []
        self.probes: list[ProbeSpec] = []

    def source(self, id: str, op: str = "train", seed: int = 0, split: str | None = None, **params: Any) -> str:
        """Add a root (its family joins ``split`` when given); returns its id."""
        self.models.append(ModelSpec(id, op, params, (), seed, split))
        return id

    def derive(self, parent: str | tuple[str, ...], label: str, op: str, seed: int = 0, **params: Any) -> str:
        """Add a child ``<first parent>.<label>`` made by ``op``; returns its id."""
        parents = (parent,) if isinstance(parent, str) else tuple(parent)
        child = f"{parents[0]}.{label}"
        self.models.append(ModelSpec(child, op, params, parents, seed))
        return child

    def probe(self, id: str, *draws: tuple[str, int], max_chars: int = 400) -> None:
        """Add a probe set."""
        self.probes.append(ProbeSpec(id, tuple(draws), max_chars))

    def build(self, held_out_archs: tuple[str, ...] = (), held_out_kinds: tuple[str, ...] = ()) -> ZooSpec:
        """The finished, validated spec."""
        spec = ZooSpec(
            self.name, list(self.models), list(self.probes), held_out_archs, held_out_kinds, self.description
        )
        spec.validate()
        return spec
