"""Collection commands: ``index add|remove|get|list|info|declare|export|import``, ``search``,
``tree``.

Thin commands over ``progenitor.index``. ``register(app)`` adds them to the main typer app
(``progenitor.cli``). Every command takes ``--db PATH`` (default: ``$PROGENITOR_DB``, else
``$XDG_DATA_HOME/progenitor/registry.sqlite``). Progress goes to stderr; ``--json`` prints
exactly one JSON document on stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from progenitor.api import check_access
from progenitor.cli_options import (
    AccessOpt,
    ArchOpt,
    DeviceOpt,
    ShapeOpt,
    check_alpha,
    check_finite,
    check_output,
    load_options,
)
from progenitor.errors import ProgenitorError

index_app = typer.Typer(
    help="The DNA registry of a model collection (one SQLite file).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOpt = Annotated[
    Path | None,
    typer.Option("--db", help="registry file (default: $PROGENITOR_DB or the user data dir)"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]
ProbesOpt = Annotated[
    str | None,
    typer.Option("--probes", help="probe set (default: the registry's own, stored at first add)"),
]
AlphaOpt = Annotated[float, typer.Option("--alpha", help="accepted false-positive rate on independent models")]
CalOpt = Annotated[Path | None, typer.Option("--calibration", help="calibration JSON (default: shipped)")]


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _open(db: Path | None, create: bool = False) -> Any:
    from progenitor.index import Registry

    return Registry(db, create=create)


@contextlib.contextmanager
def _new_or_existing(db: Path | None) -> Iterator[Any]:
    """The registry at ``db``, created if missing. A registry this command created and that still
    holds no model when the command fails is deleted again: a failure leaves no empty registry
    (with its probe set and spec already fixed), and one that holds models stays to be resumed."""
    from progenitor.index import default_db_path

    path = Path(db) if db is not None else default_db_path()
    existed, remove = path.exists(), False
    try:
        with _open(path, create=True) as registry:
            try:
                yield registry
            except BaseException:
                remove = not existed and len(registry) == 0
                raise
    finally:
        if remove:
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------- index


@index_app.command("add")
def index_add(
    models: Annotated[list[str], typer.Argument(help="model references or .dna files")],
    db: DbOpt = None,
    probes: ProbesOpt = None,
    access: AccessOpt = "auto",
    engine: Annotated[str, typer.Option("--engine", help="local, ray or inline")] = "local",
    workers: Annotated[
        int | None, typer.Option("--workers", help="processes, or CPUs of a local Ray instance", min=1)
    ] = None,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (engine ray)")] = None,
    retries: Annotated[int, typer.Option("--retries", help="retries when a worker dies", min=0)] = 2,
    name: Annotated[str | None, typer.Option("--name", help="name to register (one model only)")] = None,
    parent: Annotated[str | None, typer.Option("--parent", help="declared parent (name, ref or sha256)")] = None,
    from_scratch: Annotated[
        bool, typer.Option("--from-scratch", help="declare: trained from its own initialization")
    ] = False,
    arch: ArchOpt = None,
    input_shape: ShapeOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Extract and register the DNA of each MODEL (already registered models are skipped)."""
    from progenitor.index import add_models

    if name is not None and len(models) != 1:
        raise ProgenitorError("--name needs exactly one MODEL")
    check_access(access)
    if address is not None and engine != "ray":
        raise ProgenitorError("--address names a Ray cluster: it needs --engine ray")
    with _new_or_existing(db) as registry:
        _err(f"registry {registry.path}")
        report = add_models(
            registry,
            models,
            probes=probes,
            access=access,
            engine=engine,
            workers=workers,
            address=address,
            retries=retries,
            names=[name] if name else None,
            parent=parent,
            from_scratch=from_scratch,
            load_options=load_options(arch, input_shape, device),
            progress=_err,
        )
    known = len(report.skipped) + len(report.duplicates)
    _err(f"added {len(report.added)}, already registered {known}, failed {len(report.failed)} in {report.seconds:.1f}s")
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    if report.failed:
        raise ProgenitorError(
            f"{len(report.failed)} of {len(models)} models could not be added "
            f"(first: {report.failed[0]['ref']}: {report.failed[0]['error']})"
        )


@index_app.command("remove")
def index_remove(
    keys: Annotated[list[str], typer.Argument(help="names, ids, refs or hash prefixes")],
    db: DbOpt = None,
) -> None:
    """Remove models from the registry (none unless every key names one)."""
    with _open(db) as registry:
        for entry in [registry.get(key) for key in keys]:  # every key checked before any removal
            registry.remove(entry.id)
            _err(f"removed {entry.name} ({entry.ref})")


@index_app.command("get")
def index_get(
    key: Annotated[str, typer.Argument(help="name, id, ref or hash prefix")],
    db: DbOpt = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="also write its .dna file")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one registered model and its DNA."""
    from progenitor.dna import save_dna

    with _open(db) as registry:
        entry = registry.get(key)
        dna = registry.dna(entry)
    if out is not None:
        save_dna(dna, out)
        _err(f"wrote {out}")
    if as_json:
        typer.echo(json.dumps({**entry.to_json(), "dna": dna.summary()}))
        return
    for field, value in entry.to_json().items():
        typer.echo(f"{field:16} {value}")
    genes = ", ".join(f"{n} v{v}" for n, v in sorted(dna.versions.items()))
    typer.echo(f"{'genes':16} {genes}")
    probes = dna.probes
    typer.echo(f"{'probes':16} {probes['name'] + ' ' + probes['hash'][:12] if probes else 'none'}")


@index_app.command("list")
def index_list(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """List the registered models in the order they were added."""
    with _open(db) as registry:
        entries = registry.entries()
    if as_json:
        typer.echo(json.dumps([e.to_json() for e in entries]))
        return
    width = max([len(e.name) for e in entries] + [4])
    typer.echo(f"{'id':>5}  {'name':{width}}  access  {'params':>10}  declared            ref")
    for e in entries:
        declared = "scratch" if e.from_scratch else (e.declared_parent or "-")
        params = "-" if e.n_params is None else str(e.n_params)
        typer.echo(f"{e.id:>5}  {e.name:{width}}  {e.access or '-':6}  {params:>10}  {declared[:18]:18}  {e.ref}")


@index_app.command("info")
def index_info(db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Show the registry's file, schema version, extractor spec and size."""
    with _open(db) as registry:
        spec = registry.spec
        info = {
            "path": str(registry.path),
            "schema_version": registry.schema_version,
            "models": len(registry),
            "with_vectors": len(registry.vectors()[0]),
            "probes_stored": registry.probe_set() is not None,
            "page_size": registry.page_size(),
            "spec": None if spec is None else spec.to_json(),
        }
    if as_json:
        typer.echo(json.dumps(info))
        return
    typer.echo(f"registry   {info['path']} (schema v{info['schema_version']})")
    typer.echo(f"models     {info['models']} ({info['with_vectors']} with learned vectors)")
    typer.echo(f"spec       {spec.describe() if spec else 'not fixed yet (empty registry)'}")
    typer.echo(f"probes     {'stored' if info['probes_stored'] else 'not stored'}")


@index_app.command("compact")
def index_compact(db: DbOpt = None) -> None:
    """Rewrite the registry file without removed models' space, in 64 KiB pages (no other
    process may have it open)."""
    with _open(db) as registry:
        before, after = registry.compact()
        pages = registry.page_size()
    _err(f"compacted {registry.path}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB, {pages // 1024} KiB pages")


@index_app.command("declare")
def index_declare(
    key: Annotated[str, typer.Argument(help="the model (name, id, ref or hash prefix)")],
    parent: Annotated[str | None, typer.Option("--parent", help="its declared parent")] = None,
    from_scratch: Annotated[bool, typer.Option("--from-scratch", help="it claims no parent")] = False,
    db: DbOpt = None,
) -> None:
    """Record what a model's uploader declares about its lineage (neither option: clear it)."""
    with _open(db) as registry:
        entry = registry.declare(key, parent=parent, from_scratch=from_scratch)
    what = "trained from scratch" if entry.from_scratch else (entry.declared_parent or "nothing")
    _err(f"{entry.name}: declares {what}")


@index_app.command("export")
def index_export(
    folder: Annotated[Path, typer.Argument(help="folder for the .dna files and manifest.json")],
    db: DbOpt = None,
) -> None:
    """Export every DNA (+ probes and manifest.json) into FOLDER."""
    with _open(db) as registry:
        manifest = registry.export(folder)
        count = len(registry)
    _err(f"exported {count} models to {manifest.parent} ({manifest.name})")


@index_app.command("import")
def index_import(
    folder: Annotated[Path, typer.Argument(help="a folder written by index export")],
    db: DbOpt = None,
) -> None:
    """Import an exported folder (models already registered are skipped)."""
    with _new_or_existing(db) as registry:
        added, duplicates = registry.import_(folder)
    _err(f"imported {added} models, {duplicates} already registered")


# ------------------------------------------------------------------------------------ search


def search(
    targets: Annotated[list[str], typer.Argument(help="models, .dna files or registered names to find parents of")],
    db: DbOpt = None,
    top: Annotated[int, typer.Option("--top", help="candidates to show per target")] = 5,
    candidates: Annotated[
        int | None,
        typer.Option("--candidates", help="nearest vectors to re-rank (default 10*top, 50+)", min=1),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON array on stdout, one object per target")
    ] = False,
    probes: ProbesOpt = None,
    access: AccessOpt = "auto",
    alpha: AlphaOpt = 0.01,
    calibration: CalOpt = None,
    backend: Annotated[str, typer.Option("--backend", help="auto, faiss or numpy")] = "auto",
    no_learned: Annotated[bool, typer.Option("--no-learned", help="decide on the training-free genes alone")] = False,
    arch: ArchOpt = None,
    input_shape: ShapeOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Find the most likely parents of each TARGET among the registered models (or abstain)."""
    from progenitor.index import ParentSearch, resolve_target
    from progenitor.index._relate import MASKED

    check_alpha(alpha)
    check_access(access)
    options = load_options(arch, input_shape, device)
    results = []
    with _open(db) as registry:
        if backend not in ("auto", "faiss", "numpy"):
            raise ProgenitorError(f"--backend must be auto, faiss or numpy, not {backend!r}")
        engine = ParentSearch(
            registry,
            calibration=calibration,
            alpha=alpha,
            backend=backend,  # type: ignore[arg-type]
            learned=not no_learned,
        )
        for target in targets:
            _err(f"... target {target}")
            dna, name, entry = resolve_target(registry, target, probes=probes, access=access, **options)
            results.append(
                engine(
                    dna,
                    top=top,
                    candidates=candidates,
                    name=name,
                    order=None if entry is None else entry.id,
                )
            )
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in results]))
        return
    for result in results:
        best = result.parent
        typer.echo(
            f"target {result.target}: "
            + (f"likely parent {best.entry.name}" if best else "no likely parent (abstained)")
            + f"  [{result.method}, {result.n_scored} of {result.n_registered} scored, "
            f"{result.seconds * 1000:.0f} ms]"
        )
        for rank, c in enumerate(result.candidates, 1):
            rel = c.relation
            p = "-" if rel.p_value is None else f"{rel.p_value:.2g}"
            typer.echo(
                f"  {rank:>2}. {c.entry.name:28} {rel.verdict:12} P={rel.probability:.3f} "
                f"p={p:8} strength {rel.strength:6.1f}  direction {c.direction:.2f}"
            )
        if best is None or best.basis == MASKED:  # an abstention, or a parent named with a caveat
            typer.echo(f"      ({result.reason})")


# -------------------------------------------------------------------------------------- tree


def _text_tree(tree: Any) -> str:
    lines = []
    edge_of = {(e.parent, e.child): e for e in tree.edges}

    def walk(name: str, prefix: str, seen: set[str]) -> None:
        kids = tree.children(name)
        for i, child in enumerate(kids):
            last = i == len(kids) - 1
            edge = edge_of[(name, child)]
            lines.append(
                f"{prefix}{'└── ' if last else '├── '}{child}  "
                f"(P={edge.relation.probability:.2f}, strength {edge.relation.strength:.1f}, "
                f"direction {edge.direction:.2f})"
            )
            if child not in seen:
                seen.add(child)
                walk(child, prefix + ("    " if last else "│   "), seen)

    for root in tree.roots:
        lines.append(root)
        walk(root, "", {root})
    lines.append(f"orphans: {', '.join(tree.orphans) or 'none'}")
    for flag in tree.flags:
        lines.append(f"{flag.severity}: {flag.message}")
    return "\n".join(lines) + "\n"


def tree(
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the tree as JSON")] = False,
    dot: Annotated[bool, typer.Option("--dot", help="print Graphviz DOT")] = False,
    as_html: Annotated[bool, typer.Option("--html", help="print a self-contained HTML page")] = False,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="write to a file, not stdout")] = None,
    alpha: AlphaOpt = 0.01,
    calibration: CalOpt = None,
    direction: Annotated[
        str, typer.Option("--direction", help="direction signal: auto, learned, weight_stats, params or none")
    ] = "auto",
    no_learned: Annotated[bool, typer.Option("--no-learned", help="decide on the training-free genes alone")] = False,
    direction_weight: Annotated[
        float, typer.Option("--direction-weight", help="weight of direction in edge costs", min=0.0)
    ] = 1.0,
    order_prior: Annotated[
        float,
        typer.Option("--order-prior", help="log-odds for the earlier-registered parent (0: off)"),
    ] = 0.5,
    neighbours: Annotated[
        int | None,
        typer.Option("--neighbours", help="candidate pairs per model by vector (0: all)", min=0),
    ] = None,
    min_verdict: Annotated[
        str, typer.Option("--min-verdict", help="derived, or inconclusive to keep weaker edges")
    ] = "derived",
) -> None:
    """Recover the family trees of every registered model; flag contradicted declarations."""
    from progenitor._io import write_atomic
    from progenitor.index import build_tree, members_of

    check_alpha(alpha)
    check_output(out, [db, calibration])
    check_finite("--direction-weight", direction_weight)
    check_finite("--order-prior", order_prior)
    if sum((as_json, dot, as_html)) > 1:
        raise ProgenitorError("choose one of --json, --dot, --html")
    with _open(db) as registry:
        members = members_of(registry)
    _err(f"... {len(members)} models")
    result = build_tree(
        members,
        calibration=calibration,
        alpha=alpha,
        direction=direction,
        direction_weight=direction_weight,
        order_prior=order_prior,
        neighbours=neighbours,
        min_verdict=min_verdict,
        progress=lambda m: _err(f"... {m}"),
        learned=not no_learned,
    )
    if as_json:
        text = json.dumps(result.to_json()) + "\n"
    elif dot:
        text = result.to_dot()
    elif as_html:
        text = result.to_html()
    else:
        text = _text_tree(result)
    if out is not None:
        write_atomic(out, text)
        _err(f"wrote {out}")
    else:
        sys.stdout.write(text)


def register(app: typer.Typer) -> None:
    """Add ``index ...``, ``search`` and ``tree`` to the main app (once; later calls do nothing)."""
    if any(group.typer_instance is index_app for group in app.registered_groups):
        return
    app.add_typer(index_app, name="index")
    app.command("search")(search)
    app.command("tree")(tree)
