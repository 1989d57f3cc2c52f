"""The scorer interface every baseline implements, and the registry that names them.

A baseline is split in two so that the benchmark can time and size each part on its own:

* ``fingerprint(model, probes)`` runs the model (or reads its weights) once and returns what the
  method keeps about it, as a dict of numpy arrays (its bytes are the method's storage cost);
* ``score(fp_source, fp_target)`` compares two fingerprints without touching a model.

Some methods need the source before they can look at a target (ModelDiff queries the target on the
inputs it searched on the source). They set ``source_dependent = True`` and override
``fingerprint_target``; for every other method that call is just ``fingerprint``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from progenitor.errors import IncomparableError
from progenitor.models.base import ACCESS_LEVELS, Access, Model
from progenitor.probes import ProbeSet, check_fits, load_probes

Fingerprint = dict[str, np.ndarray]
_TAG = "baseline"  # every fingerprint names the method that made it


class BaselineNotApplicable(Exception):  # noqa: N818 - a signal, like GeneNotApplicable
    """The method cannot score this model or pair (no paired layers, no features, ...)."""


@dataclass
class BaselineScore:
    """One pair's result: higher ``score`` means more likely derived; ``p_value`` if defined."""

    score: float
    p_value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Baseline(ABC):
    """Base class of the reimplemented published methods; register with ``@register_baseline``.

    Class attributes: ``name`` (registry key), ``access`` (what the method needs), ``paper`` (the
    citation), ``uses_probes``, ``source_dependent`` (see the module docstring) and
    ``permutation_invariant`` (whether permuting hidden units, which keeps the function, is
    expected to leave the score unchanged: the registry-wide tests hold each method to it).
    """

    name: ClassVar[str]
    access: ClassVar[Access]
    paper: ClassVar[str]
    uses_probes: ClassVar[bool] = True
    source_dependent: ClassVar[bool] = False
    permutation_invariant: ClassVar[bool] = True

    @abstractmethod
    def _extract(self, model: Model, probes: ProbeSet | None) -> Fingerprint:
        """What the method keeps about one model (arrays only)."""

    @abstractmethod
    def _score(self, fp_source: Fingerprint, fp_target: Fingerprint) -> BaselineScore:
        """Compare two fingerprints of this method."""

    def fingerprint(self, model: Model, probes: ProbeSet | Any | None = None) -> Fingerprint:
        """Extract this method's fingerprint of ``model`` on ``probes`` (ignored if unused)."""
        return self._tagged(self._extract(model, self._probes(model, probes)))

    def fingerprint_target(
        self, model: Model, probes: ProbeSet | Any | None, fp_source: Fingerprint
    ) -> Fingerprint:
        """The target's fingerprint; methods that depend on the source override this."""
        del fp_source  # only source-dependent methods use it
        return self.fingerprint(model, probes)

    def score(self, fp_source: Fingerprint, fp_target: Fingerprint) -> BaselineScore:
        """Score a (source, target) pair of fingerprints made by this method."""
        self.check(fp_source)
        self.check(fp_target)
        return self._score(fp_source, fp_target)

    def check(self, fp: Fingerprint) -> Fingerprint:
        """Return ``fp`` if this method made it; IncomparableError otherwise."""
        made_by = str(fp.get(_TAG, ""))
        if made_by != self.name:
            raise IncomparableError(
                f"baseline {self.name!r} cannot use a fingerprint made by "
                f"{made_by or 'nothing known'!r}"
            )
        return fp

    def compare(
        self, source: Model, target: Model, probes: ProbeSet | Any | None = None
    ) -> BaselineScore:
        """Fingerprint both models and score the pair (a convenience for one-off checks)."""
        fp_source = self.fingerprint(source, probes)
        return self.score(fp_source, self.fingerprint_target(target, probes, fp_source))

    def _probes(self, model: Model, probes: ProbeSet | Any | None) -> ProbeSet | None:
        if not self.uses_probes:
            return None
        probe_set = load_probes(probes, model.input_spec)
        if model.can("forward"):
            check_fits(probe_set, model)
        return probe_set

    def _tagged(self, arrays: Fingerprint) -> Fingerprint:
        return {_TAG: np.array(self.name), **arrays}


def fingerprint_nbytes(fp: Fingerprint) -> int:
    """Bytes a fingerprint's arrays take (what a registry would store per model)."""
    return int(sum(a.nbytes for a in fp.values()))


_BASELINES: dict[str, Baseline] = {}
B = TypeVar("B", bound=type[Baseline])


def register_baseline(cls: B) -> B:
    """Class decorator adding a baseline (one shared instance) under its ``name``."""
    if cls.name in _BASELINES:
        raise ValueError(f"baseline {cls.name!r} registered twice")
    if cls.access not in ACCESS_LEVELS:
        raise ValueError(f"baseline {cls.name!r}: access must be one of {ACCESS_LEVELS}")
    _BASELINES[cls.name] = cls()
    return cls


def list_baselines(access: Access | None = None) -> list[str]:
    """Names of the registered baselines, sorted; only those usable with ``access`` if given."""
    if access is None:
        return sorted(_BASELINES)
    level = ACCESS_LEVELS.index(access)
    return sorted(n for n, b in _BASELINES.items() if ACCESS_LEVELS.index(b.access) <= level)


def get_baseline(name: str) -> Baseline:
    """The registered baseline called ``name``; KeyError listing the known names otherwise."""
    try:
        return _BASELINES[name]
    except KeyError:
        raise KeyError(f"no baseline {name!r}; known: {', '.join(sorted(_BASELINES))}") from None


def as_fingerprints(
    items: dict[str, Model | Fingerprint], method: Baseline, probes: ProbeSet | Any | None = None
) -> dict[str, Fingerprint]:
    """Fingerprint the Models of a name -> Model-or-fingerprint mapping (for group methods)."""
    return {
        name: method.check(item) if isinstance(item, dict) else method.fingerprint(item, probes)
        for name, item in items.items()
    }
