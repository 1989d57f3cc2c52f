"""Registry of model formats: each maps a reference to a Model.

A format registers an opener with the suffixes it claims and, for directories, a detector.
``progenitor.models.load`` resolves a reference through this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from progenitor.models.base import Model

Opener = Callable[..., Model]


@dataclass(frozen=True)
class FormatSpec:
    """A registered format: its prefix name, opener, claimed suffixes and directory detector."""

    name: str
    open: Opener
    suffixes: tuple[str, ...] = ()
    detect: Callable[[Path], bool] | None = None
    description: str = ""


_FORMATS: dict[str, FormatSpec] = {}


def register_format(
    name: str,
    *,
    suffixes: tuple[str, ...] = (),
    detect: Callable[[Path], bool] | None = None,
    description: str = "",
) -> Callable[[Opener], Opener]:
    """Decorator registering ``opener(target: str, **options) -> Model`` under prefix ``name``."""

    def decorate(opener: Opener) -> Opener:
        _FORMATS[name] = FormatSpec(name, opener, suffixes, detect, description or opener.__doc__ or "")
        return opener

    return decorate


def get_format(name: str) -> FormatSpec | None:
    """The format registered under ``name``, or None."""
    return _FORMATS.get(name)


def list_formats() -> list[FormatSpec]:
    """All registered formats, by name."""
    return [_FORMATS[k] for k in sorted(_FORMATS)]


def candidates_for(path: Path) -> list[FormatSpec]:
    """Formats that claim ``path`` by suffix or (for directories) by their detector."""
    found = []
    for spec in _FORMATS.values():
        if path.is_dir():
            if spec.detect is not None and spec.detect(path):
                found.append(spec)
        elif path.suffix.lower() in spec.suffixes or (spec.detect is not None and spec.detect(path)):
            found.append(spec)
    return found


def open_with(spec: FormatSpec, target: str, **options: Any) -> Model:
    """Open ``target`` with ``spec``'s opener."""
    return spec.open(target, **options)
