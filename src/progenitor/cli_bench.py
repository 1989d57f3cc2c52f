"""The ``progenitor bench`` command: a thin layer over ``progenitor.bench.run_bench``.

``register(app)`` adds it to the main typer app (once; later calls do nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from progenitor.errors import ProgenitorError


def _err(message: str) -> None:
    typer.echo(message, err=True)


def bench(
    zoo: Annotated[Path | None, typer.Option("--zoo", help="a built zoo (progenitor zoo build); required")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="folder for results.json, results.md, pairs.csv, plots; required")
    ] = None,
    methods: Annotated[
        str | None, typer.Option("--methods", help="comma-separated methods (default: all; see --list)")
    ] = None,
    split: Annotated[str, typer.Option(help="the split whose pairs are benchmarked")] = "test",
    scheme: Annotated[str, typer.Option(help="split scheme: family, arch or kind")] = "family",
    alpha: Annotated[float, typer.Option(help="operating point of p-value methods and of ours")] = 0.01,
    threshold_split: Annotated[
        str, typer.Option(help="split whose independent pairs set the thresholds (falls back to train)")
    ] = "val",
    threshold_models: Annotated[int, typer.Option(help="models sampled from the threshold split")] = 60,
    learned: Annotated[
        str, typer.Option(help="learned Model DNA for `progenitor`: auto (packaged), none, or a directory")
    ] = "auto",
    calibration: Annotated[
        str, typer.Option(help="ours' gene calibration: auto, train (zoo train split), shipped, or a JSON path")
    ] = "auto",
    trees: Annotated[bool, typer.Option("--trees/--no-trees", help="recover family trees")] = True,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="write the PNG plots")] = True,
    seed: Annotated[int, typer.Option(help="seed of the threshold sample and tree member order")] = 0,
    threads: Annotated[int, typer.Option(help="torch threads (split among the jobs)", min=1)] = 2,
    jobs: Annotated[int, typer.Option(help="methods run in this many processes at once", min=1)] = 1,
    list_only: Annotated[bool, typer.Option("--list", help="list the methods and exit")] = False,
) -> None:
    """Benchmark ours against every published method on the same zoo pairs (tables and plots)."""
    from progenitor.bench import BenchConfig, list_methods, run_bench

    if list_only:
        for name in list_methods():
            typer.echo(name)
        return
    if zoo is None or out is None:
        raise ProgenitorError("progenitor bench needs --zoo DIR and --out DIR (or --list)")
    if scheme not in ("family", "arch", "kind"):
        raise ProgenitorError(f"--scheme must be family, arch or kind, not {scheme!r}")
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    config = BenchConfig(
        zoo=zoo, out=out, methods=chosen, split=split, scheme=scheme, alpha=alpha,
        threshold_split=threshold_split, threshold_models=threshold_models, learned=learned,
        calibration=calibration, trees=trees, plots=plots, seed=seed, threads=threads, jobs=jobs,
    )
    results = run_bench(config, progress=_err)
    _err(f"wrote {out / 'results.json'}, {out / 'results.md'} ({results['seconds']:.0f} s)")


def register(app: typer.Typer) -> None:
    """Add ``bench`` to the main app (once; later calls do nothing)."""
    if any(getattr(c, "name", None) == "bench" for c in app.registered_commands):
        return
    app.command("bench")(bench)
