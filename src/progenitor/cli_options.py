"""Option parsing shared by the command modules (``cli``, ``cli_index``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from progenitor.errors import ProgenitorError

DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="where torch models run: cpu (default), cuda, cuda:N or auto")
]


def load_options(arch: str | None, input_shape: str | None, device: str | None = None) -> dict[str, Any]:
    """``progenitor.load`` options from ``--arch``, ``--input-shape`` (e.g. ``1,28,28``) and ``--device``."""
    options: dict[str, Any] = {}
    if device:
        options["device"] = device
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
