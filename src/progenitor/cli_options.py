"""Option parsing shared by the command modules (``cli``, ``cli_index``)."""

from __future__ import annotations

from typing import Any

from progenitor.errors import ProgenitorError


def load_options(arch: str | None, input_shape: str | None) -> dict[str, Any]:
    """``progenitor.load`` options from ``--arch`` and ``--input-shape`` (e.g. ``1,28,28``)."""
    options: dict[str, Any] = {}
    if arch:
        options["arch"] = arch
    if input_shape:
        try:
            options["input_shape"] = tuple(int(v) for v in input_shape.replace("x", ",").split(","))
        except ValueError as exc:
            raise ProgenitorError(f"--input-shape {input_shape!r} is not a list of integers like 1,28,28") from exc
    return options


def check_alpha(alpha: float) -> None:
    """Refuse an ``--alpha`` outside (0, 1)."""
    if not 0 < alpha < 1:
        raise ProgenitorError(f"--alpha must be between 0 and 1, not {alpha}")
