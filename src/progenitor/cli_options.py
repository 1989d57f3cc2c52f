"""Option parsing shared by the command modules (``cli``, ``cli_index``)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from progenitor.errors import ProgenitorError

AccessOpt = Annotated[str, typer.Option("--access", help="auto, white, gray or black")]
ArchOpt = Annotated[
    str | None, typer.Option("--arch", help="module:callable building the architecture for state dicts")
]
ShapeOpt = Annotated[str | None, typer.Option("--input-shape", help="per-sample input shape, e.g. 1,28,28")]
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
    if input_shape is not None and not input_shape.strip():
        raise ProgenitorError("--input-shape needs sizes, like 1,28,28")
    if input_shape:
        try:
            shape = tuple(int(v) for v in input_shape.replace("x", ",").split(","))
        except ValueError as exc:
            raise ProgenitorError(f"--input-shape {input_shape!r} is not a list of integers like 1,28,28") from exc
        if any(v < 1 for v in shape):
            raise ProgenitorError(f"--input-shape {input_shape!r}: every size must be at least 1")
        options["input_shape"] = shape
    return options


def check_output(out: Path | None, inputs: Iterable[Any]) -> None:
    """Refuse an output path that is one of the command's inputs (a report over the source DNA,
    a tree over its own registry): writing it would destroy what was read."""
    if out is None or not out.exists():
        return
    for ref in inputs:
        if isinstance(ref, str | Path) and Path(ref).exists() and Path(ref).resolve() == out.resolve():
            raise ProgenitorError(f"{out} is one of the inputs; write the output elsewhere")


def check_finite(name: str, value: float) -> None:
    """Refuse a NaN or infinite value of option ``name``."""
    if not math.isfinite(value):
        raise ProgenitorError(f"{name} must be a finite number, not {value}")


def check_parts(parts: str) -> list[str]:
    """The generator parts named in ``--parts`` (comma-separated), each one the generator knows."""
    from progenitor.learn.inputs import BLOCKS

    chosen = [p.strip() for p in parts.split(",") if p.strip()]
    if not chosen or any(p not in BLOCKS for p in chosen):
        raise ProgenitorError(f"--parts must name some of {', '.join(BLOCKS)}; got {parts!r}")
    return chosen


def check_alpha(alpha: float) -> None:
    """Refuse an ``--alpha`` outside (0, 1)."""
    if not 0 < alpha < 1:
        raise ProgenitorError(f"--alpha must be between 0 and 1, not {alpha}")
