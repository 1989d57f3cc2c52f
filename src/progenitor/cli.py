"""The ``progenitor`` command: thin commands over the public API.

Errors a user can cause print one line on stderr and exit with status 2; ``--debug`` (anywhere
on the command line) shows the traceback instead. Progress and logs go to stderr; stdout carries
only results (``--json`` prints exactly one JSON document).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Annotated

import typer

from progenitor.cli_options import (
    AccessOpt,
    ArchOpt,
    DeviceOpt,
    ShapeOpt,
    check_alpha,
    check_output,
    check_parts,
    load_options,
)
from progenitor.errors import ProgenitorError

app = typer.Typer(
    help="Model provenance: is a target model derived from a source model?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ProbesOpt = Annotated[str | None, typer.Option("--probes", help="probe set: .npy, image folder, text file, or preset")]


def _err(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
def dna(
    models: Annotated[list[str], typer.Argument(help="model references")],
    out: Annotated[Path, typer.Option("-o", "--out", help="folder for the .dna files")],
    probes: ProbesOpt = None,
    access: AccessOpt = "auto",
    arch: ArchOpt = None,
    input_shape: ShapeOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Extract the DNA of each MODEL into OUT/<name>.dna."""
    from progenitor.api import extract
    from progenitor.dna import save_dna

    options = load_options(arch, input_shape, device)
    names = [Path(Path(ref.rstrip("/")).name.split(":")[-1] or f"model{i}").stem for i, ref in enumerate(models, 1)]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ProgenitorError(f"two models would both be written to {out / clash[0]}.dna; use separate folders")
    if out.exists() and not out.is_dir():
        raise ProgenitorError(f"-o {out} is a file; it must name a folder for the .dna files")
    for i, (ref, name) in enumerate(zip(models, names, strict=True), 1):
        _err(f"[{i}/{len(models)}] extracting {ref}")
        result = extract(ref, probes=probes, access=access, **options)
        path = save_dna(result, out / f"{name}.dna")
        _err(f"  wrote {path} ({path.stat().st_size} bytes, genes: {', '.join(result.genes)})")


@app.command()
def compare(
    source: Annotated[str, typer.Argument(help="the candidate parent (model or .dna)")],
    targets: Annotated[list[str], typer.Argument(help="the models under suspicion")],
    probes: ProbesOpt = None,
    access: AccessOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON array on stdout")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="also write an HTML report")] = None,
    alpha: Annotated[float, typer.Option(help="accepted false-positive rate on independent models")] = 0.01,
    null: Annotated[
        list[str] | None,
        typer.Option("--null", help="an independently trained model of the source's recipe (repeat, 3+)"),
    ] = None,
    calibration: Annotated[Path | None, typer.Option(help="calibration JSON (default: shipped)")] = None,
    arch: ArchOpt = None,
    input_shape: ShapeOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Decide, for each TARGET, whether it is derived from SOURCE."""
    from progenitor._io import write_atomic
    from progenitor.api import compare_many
    from progenitor.report import html_report, table_rows

    check_alpha(alpha)
    check_output(report, [source, *targets, *(null or []), calibration])
    results = compare_many(
        source,
        targets,
        probes=probes,
        access=access,
        alpha=alpha,
        calibration=calibration,
        null=null or None,
        progress=lambda m: _err(f"... {m}"),
        **load_options(arch, input_shape, device),
    )
    if report is not None:
        write_atomic(report, html_report(results))
        _err(f"wrote {report}")
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in results]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"source: {source}")
    for column in ("target", "verdict", "probability", "p-value", "access", "decided by"):
        table.add_column(column)
    for row in table_rows(results):
        table.add_row(*row)
    # Piped output keeps whole rows (long paths) rather than wrapping to a guessed width.
    Console(width=None if sys.stdout.isatty() else 240).print(table)


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="a .dna file")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show what a .dna file holds: versions, model metadata, probes, genes and sizes."""
    from progenitor.dna import load_dna

    summary = load_dna(path).summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
        return
    model = summary["model"]
    typer.echo(f"{path}: DNA format v{summary['format_version']}, created {summary['created']}")
    typer.echo(f"  model   {model.get('ref')} ({model.get('format')}, {model.get('n_params')} parameters)")
    typer.echo(f"  sha256  {model.get('sha256')}")
    typer.echo(f"  access  {summary['access']}")
    probes = summary["probes"]
    typer.echo(f"  probes  {probes['name']} ({probes['n']}, {probes['hash'][:16]})" if probes else "  probes  none")
    for name, gene in summary["genes"].items():
        typer.echo(f"  gene    {name} v{gene['version']} ({gene['bytes']} bytes)")
    typer.echo(f"  vector  {summary['vector'] or 'none'}")
    typer.echo(f"  payload {summary['payload_bytes']} bytes")


@app.command()
def formats() -> None:
    """List the model formats and their reference prefixes."""
    from progenitor.models import list_formats

    for spec in list_formats():
        typer.echo(f"{spec.name + ':':14} {spec.description.strip().splitlines()[0] if spec.description else ''}")


@app.command()
def genes() -> None:
    """List the registered genes with their version and the access they need."""
    from progenitor.genes import list_genes

    for gene in list_genes():
        typer.echo(f"{gene.name:18} v{gene.version}  {gene.access:5}  {gene.description}")


@app.command("serve")
def serve_cmd(
    model: Annotated[str, typer.Argument(help="model reference to put behind the HTTP protocol (docs/HTTP.md)")],
    host: Annotated[str, typer.Option(help="address to listen on (no TLS or authentication: keep it local)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="port (0: any free one)", min=0, max=65535)] = 8000,
    arch: ArchOpt = None,
    input_shape: ShapeOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Serve MODEL as a black-box endpoint (outputs only) until interrupted."""
    from progenitor.models import load
    from progenitor.serve import serve

    handle = load(model, **load_options(arch, input_shape, device))
    server = serve(handle, host, port)
    try:
        _err(f"serving {handle.ref} at {server.url} (Ctrl-C to stop)")
        server.wait()
    finally:
        server.close()


@app.command()
def demo(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="where to build the demo zoo")] = None,
) -> None:
    """Build a few small related and unrelated models, extract their DNA, compare, print verdicts."""
    from rich.console import Console
    from rich.table import Table

    from progenitor.demo import default_dir, run_demo
    from progenitor.report import fmt_p

    _err(f"building the smoke zoo in {out or default_dir()} (cached after the first run) ...")
    rows = run_demo(out, progress=_err)
    table = Table(title="progenitor demo: is TARGET derived from SOURCE?")
    for column in ("source", "target", "truth", "verdict", "probability", "p-value", "right?"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["source"],
            r["target"],
            r["truth"],
            r["verdict"],
            f"{r['probability']:.3f}",
            fmt_p(r["p_value"]),
            "yes" if r["correct"] else "NO",
        )
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    right = sum(r["correct"] for r in rows)
    typer.echo(f"{right}/{len(rows)} verdicts right (derived pairs 'derived', all others not)")


zoo_app = typer.Typer(help="Build model families with known lineage (ground truth).", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


@zoo_app.command("build")
def zoo_build(
    preset: Annotated[str, typer.Option(help="preset name (see `progenitor zoo list`) or a spec JSON file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the zoo folder")],
) -> None:
    """Build (or update: unchanged models are reused) a zoo into OUT."""
    from progenitor.zoo import build_zoo

    manifest = build_zoo(preset, out)
    _err(f"{out}: {len(manifest['models'])} models, {len(manifest['pairs'])} labelled pairs")


@zoo_app.command("list")
def zoo_list() -> None:
    """List the zoo presets."""
    from progenitor.zoo import list_presets

    for name, description in list_presets().items():
        typer.echo(f"{name:10} {description}")


@app.command()
def train(
    zoo: Annotated[Path, typer.Option(help="a built zoo (its train split trains, val selects)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the trained Model DNA")],
    epochs: Annotated[int, typer.Option(help="training epochs (full batch)", min=1)] = 300,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    parts: Annotated[str, typer.Option(help="generator parts, comma-separated")] = "behaviour,weights,moments,data",
    device: DeviceOpt = None,
) -> None:
    """Train the learned Model DNA (generator + classifier) and the gene calibration on a zoo
    (the shipped bundle is trained on the CPU; --device cuda trains on a GPU)."""
    import torch

    from progenitor.learn.train import fit
    from progenitor.zoo.dna_dataset import ZooDNA, calibrate_on_zoo

    torch.set_num_threads(2)  # pinned: same seed and threads give the same weights
    data = ZooDNA(zoo)
    training = data.training_set(progress=lambda m: _err(f"extract {m}"))
    config = {"epochs": epochs, "seed": seed, "parts": check_parts(parts)}
    bundle, metrics = fit(
        training, config, progress=lambda e, n, loss: _err(f"epoch {e}/{n} loss {loss:.4f}"), device=device or "cpu"
    )
    bundle.config.update(
        zoo_name=data.manifest["name"],
        zoo_hash=data.zoo_hash,
        probe_hash=data.probes["sha256"],
        metrics=metrics,
        gene_versions=dict(training.dnas[0].versions.items()),
        command=f"progenitor train --zoo ZOO --out OUT --epochs {epochs} --seed {seed} --parts {parts}"
        + (f" --device {device}" if device else ""),
    )
    calibration = calibrate_on_zoo(data)  # before anything is written: a failure leaves no half folder
    bundle.save(out)
    calibration.save(out / "calibration.json")
    _err(f"wrote {out} ({', '.join(f'{k}={v}' for k, v in metrics.items())})")


@app.command("calibrate")
def calibrate_cmd(
    zoo: Annotated[Path, typer.Option(help="a built zoo")],
    out: Annotated[Path, typer.Option("--out", "-o", help="calibration JSON to write")],
    split: Annotated[str, typer.Option(help="the split whose pairs calibrate")] = "train",
) -> None:
    """Fit the gene calibration (nulls of independent models, p -> probability) on a zoo split."""
    from progenitor.zoo.dna_dataset import ZooDNA, calibrate_on_zoo

    cal = calibrate_on_zoo(ZooDNA(zoo), split, progress=lambda m: _err(f"extract {m}"))
    cal.save(out)
    _err(f"wrote {out}: {cal.source}")


from progenitor.cli_bench import register as _register_bench  # noqa: E402  (after the core commands)
from progenitor.cli_index import register as _register_index  # noqa: E402

_register_index(app)
_register_bench(app)


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Click's exception classes: the real click's and the copy that newer typer vendors."""
    import click

    classes: list[type[BaseException]] = [click.ClickException, click.exceptions.Exit, click.exceptions.Abort]
    try:
        from typer._click import exceptions as vendored  # typer >= 0.26 ships its own click

        classes += [getattr(vendored, n) for n in ("ClickException", "Exit", "Abort") if hasattr(vendored, n)]
    except ImportError:
        pass
    return tuple(classes)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning ProgenitorErrors and usage errors into one-line messages."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        # Not standalone, click returns an exit code instead of exiting: typer turns Ctrl-C into
        # 130 that way (the commands themselves return None).
        code = app(args=args, prog_name="progenitor", standalone_mode=False)
        if isinstance(code, int) and code:
            if code == 130:
                _err("interrupted")
            return code
    except ProgenitorError as exc:
        if debug:
            raise
        _err(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except _usage_errors() as exc:
        name = type(exc).__name__
        if name == "Exit":
            return int(getattr(exc, "exit_code", 0) or 0)
        if name == "Abort":
            _err("aborted")
            return 130
        if debug:
            raise
        exc.show()  # type: ignore[attr-defined]
        return 2
    except (OSError, sqlite3.Error, MemoryError) as exc:
        # What the user named cannot be used: an unwritable or over-long path, a read-only
        # registry, a shape or probe count too large to allocate.
        if debug:
            raise
        _err(f"error: {_environment_error(exc)}")
        return 2
    except Exception as exc:  # the last resort: one line, the traceback on --debug
        if debug:
            raise
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        _err(f"error: unexpected {type(exc).__name__}{': ' + first if first else ''} (--debug shows where)")
        return 1
    return 0


def _environment_error(exc: BaseException) -> str:
    """One line for an OS, database or memory error."""
    if isinstance(exc, MemoryError):
        return "out of memory (an input shape or probe count too large?)"
    if isinstance(exc, sqlite3.Error):
        return f"registry database: {exc}"
    assert isinstance(exc, OSError)
    name = exc.filename if isinstance(exc.filename, str) and len(exc.filename) <= 200 else None
    reason = exc.strerror or str(exc)
    return f"{name}: {reason}" if name else f"{reason} (a path too long or not writable?)"


if __name__ == "__main__":
    sys.exit(main())
