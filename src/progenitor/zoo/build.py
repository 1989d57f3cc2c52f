"""Building a zoo: run a spec, cache every model by the hash of its spec, write the manifest.

Each model's *spec hash* covers its operation (and that operation's version), its resolved
parameters, its seed, the builder version and its parents' spec hashes, so changing anything
upstream rebuilds everything downstream and nothing else. A model is reused only when its cache
record exists and every file it lists still has the recorded sha256. Files are written to a
temporary name and renamed into place, so an interrupted build leaves no half-written model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from progenitor.errors import ProgenitorError
from progenitor.models.base import file_sha256
from progenitor.zoo import data as zoo_data
from progenitor.zoo import derivations, formats, sources, text  # noqa: F401  (text registers)
from progenitor.zoo.derivations import Built
from progenitor.zoo.pairs import Lineage, assign_family_splits, make_pairs
from progenitor.zoo.presets import get_preset
from progenitor.zoo.spec import ModelSpec, ProbeSpec, ZooSpec
from progenitor.zoo.train import pinned_threads, zoo_threads

MANIFEST_FORMAT = "progenitor-zoo"
MANIFEST_VERSION = 1
# Bump to rebuild every model (e.g. after a change to the training loop). 2: every model's
# randomness is seeded from its spec hash (``model_seed``), not from its spec seed alone.
BUILDER_VERSION = 2


# ---------------------------------------------------------------- spec resolution and hashing


def resolve_spec(preset_or_spec: str | Path | dict[str, Any] | ZooSpec) -> ZooSpec:
    """A ZooSpec from a preset name, a path to a JSON spec, a spec dict or a ZooSpec."""
    if isinstance(preset_or_spec, ZooSpec):
        preset_or_spec.validate()
        return preset_or_spec
    if isinstance(preset_or_spec, dict):
        return ZooSpec.from_dict(preset_or_spec)
    text_ref = str(preset_or_spec)
    if text_ref.endswith(".json") and Path(text_ref).is_file():
        return ZooSpec.from_dict(json.loads(Path(text_ref).read_text("utf-8")))
    return get_preset(text_ref)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _operation(model: ModelSpec) -> tuple[int, dict[str, Any], str]:
    """(version, resolved parameters, modality) of a model's operation."""
    if model.is_root:
        recipe = sources.get_source_recipe(model.op)
        return recipe.version, sources.resolve_source_params(model.op, model.params), recipe.modality
    derivation = derivations.get_derivation(model.op)
    return derivation.version, derivations.resolve_params(model.op, model.params), derivation.modality


def spec_hashes(spec: ZooSpec) -> dict[str, str]:
    """Model id -> sha256 of everything that determines the model (parents' hashes included)."""
    hashes: dict[str, str] = {}
    owners: dict[str, str] = {}
    for model in spec.models:
        version, params, _ = _operation(model)
        payload = {
            "builder": BUILDER_VERSION,
            "threads": zoo_threads(),
            "data_split": [zoo_data.SPLIT_SEED, zoo_data.SPLIT_FRACTIONS],
            "op": model.op,
            "version": version,
            "params": params,
            "seed": model.seed,
            "parents": [hashes[p] for p in model.parents],
        }
        digest = hashlib.sha256(_canonical(payload).encode()).hexdigest()
        if digest in owners:
            raise ProgenitorError(
                f"zoo spec {spec.name!r}: {model.id!r} and {owners[digest]!r} are the same model "
                "(same operation, parameters, seed and parents); give one another seed"
            )
        owners[digest] = model.id
        hashes[model.id] = digest
    return hashes


# ---------------------------------------------------------------- files


def _atomic_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=False) + "\n", "utf-8")
    tmp.replace(path)


def _files_of(path: Path, root: Path) -> dict[str, str]:
    """Relative path -> sha256 of a file, or of every file of a directory."""
    if path.is_dir():
        return {str(p.relative_to(root)): file_sha256(p) for p in sorted(path.rglob("*")) if p.is_file()}
    return {str(path.relative_to(root)): file_sha256(path)}


def _cached_record(out: Path, digest: str) -> dict[str, Any] | None:
    """The cache record of ``digest`` if every file it lists is present with its sha256."""
    record_path = out / "cache" / f"{digest}.json"
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    for rel, sha in record.get("files", {}).items():
        file = out / rel
        if not file.is_file() or file_sha256(file) != sha:
            return None
    return record if record.get("files") else None


def _write_model(out: Path, digest: str, built: Built) -> Path:
    """Write ``built`` under ``models/`` atomically; returns the final path."""
    io = formats.get_format_io(built.save_as)
    final = out / "models" / f"{digest[:20]}{io.suffix}"
    tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    tmp.unlink(missing_ok=True)
    io.write(built, tmp)
    for file in tmp.rglob("*") if tmp.is_dir() else [tmp]:
        if file.is_file():
            file.chmod(0o644)  # some writers create files readable by their owner only
    if final.is_dir():
        shutil.rmtree(final)
    tmp.replace(final)
    return final


def _n_params(module: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------- probes


def _write_probes(out: Path, probes: list[ProbeSpec]) -> list[dict[str, Any]]:
    """Draw and write every probe set (``.npy`` for images, ``.txt`` for text) with hashes."""
    folder = out / "probes"
    folder.mkdir(exist_ok=True)
    entries = []
    for probe in probes:
        parts = [zoo_data.get_part(name, "probe", n) for name, n in probe.draws]
        modalities = {p.modality for p in parts}
        if len(modalities) != 1:
            raise ProgenitorError(f"probe set {probe.id!r} mixes images and text")
        entry: dict[str, Any] = {"id": probe.id, "modality": modalities.pop(), "draws": [list(d) for d in probe.draws]}
        if entry["modality"] == "image":
            x = np.concatenate([p.x for p in parts]).astype(np.float32)
            y = np.concatenate([p.y for p in parts]).astype(np.int64)
            path, labels = folder / f"{probe.id}.npy", folder / f"{probe.id}.labels.npy"
            for target, array in ((path, x), (labels, y)):
                tmp = target.with_name(f".tmp-{target.name}")
                with tmp.open("wb") as handle:
                    np.save(handle, array)
                tmp.replace(target)
            entry.update(shape=list(x.shape), dtype="float32", n=len(x), labels=str(labels.relative_to(out)))
        else:
            texts = [t[: probe.max_chars].replace("\n", " ") for p in parts for t in p.texts]
            path = folder / f"{probe.id}.txt"
            tmp = path.with_name(f".tmp-{path.name}")
            tmp.write_text("\n".join(texts) + "\n", "utf-8")
            tmp.replace(path)
            entry.update(n=len(texts), max_chars=probe.max_chars)
        entry.update(path=str(path.relative_to(out)), sha256=file_sha256(path))
        entries.append(entry)
    return entries


# ---------------------------------------------------------------- progress


class _Reporter:
    """Progress on stderr: a rich bar on a terminal, one line per model otherwise (logs)."""

    def __init__(self, enabled: bool, total: int, name: str) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None
        self.total = total
        self.name = name
        self.done = 0
        self.label = ""

    @contextlib.contextmanager
    def running(self) -> Iterator[_Reporter]:
        if not self.enabled or not sys.stderr.isatty():
            yield self
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        columns = (
            TextColumn("zoo {task.fields[zoo]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            self._progress = progress
            self._task = progress.add_task("", total=self.total, zoo=self.name)
            yield self

    def step(self, label: str) -> None:
        self.label = label
        if self._progress is not None:
            self._progress.update(self._task, description=label)

    def advance(self, status: str, seconds: float | None = None) -> None:
        self.done += 1
        if self._progress is not None:
            self._progress.advance(self._task)
        elif self.enabled:
            took = f" ({seconds:.1f} s)" if seconds is not None else ""
            width = len(str(self.total))
            print(
                f"zoo {self.name} [{self.done:>{width}}/{self.total}] {status:6s} {self.label}{took}",
                file=sys.stderr,
                flush=True,
            )


def _summary(manifest: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    build = manifest["build"]
    console.print(
        f"zoo {manifest['name']!r}: {len(manifest['models'])} models "
        f"({build['built']} built, {build['reused']} reused) in {build['seconds']:.1f} s, "
        f"{len(manifest['edges'])} edges, {len(manifest['pairs'])} pairs"
    )
    ops = Counter(e["operation"] for e in manifest["edges"])
    table = Table("operation", "models", title="derived models per operation")
    for op, n in sorted(ops.items()):
        table.add_row(op, str(n))
    console.print(table)
    kinds = Counter(p["kind"] for p in manifest["pairs"])
    table = Table("pair kind", "pairs", title="evaluation pairs")
    for kind, n in sorted(kinds.items()):
        table.add_row(kind, str(n))
    console.print(table)
    table = Table("source", "arch", "data", "split", "accuracy", title="sources")
    for m in manifest["models"]:
        if m["root"]:
            table.add_row(m["id"], m["architecture"], m["data"], str(m["split"]), f"{m['accuracy']:.3f}")
    console.print(table)


# ---------------------------------------------------------------- build


def model_seed(spec_hash: str) -> int:
    """The seed a model's operation runs with: drawn from its spec hash.

    The spec's ``seed`` only tells models of one spec apart. Used as is, it gave models that
    should be independent the same random initialisation: a CNN and a CNN with batch norm of one
    seed share their convolutions' initial weights, and students distilled with one seed from two
    different teachers start from the same weights, which a weight-level provenance method then
    rightly finds related. The spec hash covers the operation, its parameters, the seed and the
    parents, so every distinct model draws its own randomness.
    """
    return int(spec_hash[:8], 16) & 0x7FFFFFFF


def _make(model: ModelSpec, params: dict[str, Any], parents: list[Built], spec_hash: str) -> Built:
    seed = model_seed(spec_hash)
    if model.is_root:
        return sources.get_source_recipe(model.op).fn(params, seed)
    return derivations.apply(model.op, parents, params, seed)


def build_zoo(
    preset_or_spec: str | Path | dict[str, Any] | ZooSpec,
    out_dir: str | Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Build (or update) a zoo in ``out_dir`` and return its manifest.

    Args:
        preset_or_spec: a preset name (see ``list_presets``), a path to a JSON spec, a spec dict
            or a :class:`~progenitor.zoo.spec.ZooSpec`.
        out_dir: the zoo directory; ``models/``, ``probes/``, ``cache/`` and ``manifest.json``
            are written inside it. Models whose spec is unchanged and whose files are intact are
            reused.
        progress: show a progress bar and a summary on stderr.

    Returns:
        The manifest (also written to ``out_dir/manifest.json``).
    """
    spec = resolve_spec(preset_or_spec)
    out = Path(out_dir)
    for sub in ("models", "probes", "cache"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    hashes = spec_hashes(spec)
    pending_children = Counter(p for m in spec.models for p in m.parents)
    live: dict[str, Built] = {}
    records: dict[str, dict[str, Any]] = {}
    counts = Counter[str]()
    started, cpu_started = time.perf_counter(), time.process_time()
    reporter = _Reporter(progress, len(spec.models), spec.name)

    def parent_built(pid: str) -> Built:
        if pid not in live:
            record = records[pid]
            io = formats.get_format_io(record["zoo_format"])
            if io.reload is None:
                raise ProgenitorError(f"{pid} is a {record['zoo_format']} export: it has no children")
            live[pid] = io.reload(out / record["path"], record)
        return live[pid]

    with pinned_threads(), reporter.running():
        for model in spec.models:
            digest = hashes[model.id]
            reporter.step(model.id)
            record = _cached_record(out, digest)
            if record is None:
                version, params, _ = _operation(model)
                t0 = time.perf_counter()
                built = _make(model, params, [parent_built(p) for p in model.parents], digest)
                path = _write_model(out, digest, built)
                io = formats.get_format_io(built.save_as)
                record = {
                    "spec_hash": digest,
                    "path": str(path.relative_to(out)),
                    "format": io.loader_format,
                    "zoo_format": built.save_as,
                    "files": _files_of(path, out),
                    "sha256": file_sha256(path),
                    "modality": built.modality,
                    "architecture": built.arch,
                    "task": built.task,
                    "data": built.train_data,
                    "n_params": _n_params(built.module),
                    "accuracy": round(formats.evaluate(built, path), 4),
                    "op": model.op,
                    "op_version": version,
                    "params": _jsonable(params),
                    "seed": model.seed,
                    "facts": _jsonable(built.facts),
                    "build_seconds": round(time.perf_counter() - t0, 3),
                    **_jsonable(formats.describe(built)),
                }
                record["load"] = io.load_options(record)
                _atomic_json(out / "cache" / f"{digest}.json", record)
                if pending_children[model.id] and built.derivable:
                    live[model.id] = built
                counts["built"] += 1
                status, took = "built", record["build_seconds"]
            else:
                counts["reused"] += 1
                status, took = "reused", None
            records[model.id] = record
            for pid in model.parents:
                pending_children[pid] -= 1
                if pending_children[pid] == 0:
                    live.pop(pid, None)
            reporter.advance(status, took)
        probes = _write_probes(out, spec.probes)

    counts["cpu_seconds"] = round(time.process_time() - cpu_started)
    manifest = _manifest(spec, records, probes, counts, time.perf_counter() - started)
    _atomic_json(out / "manifest.json", manifest)
    if progress:
        _summary(manifest)
    return manifest


def _manifest(
    spec: ZooSpec,
    records: dict[str, dict[str, Any]],
    probes: list[dict[str, Any]],
    counts: Counter[str],
    seconds: float,
) -> dict[str, Any]:
    """Assemble the manifest from the cache records (see docs/ZOO.md for the format)."""
    models = []
    for model in spec.models:
        record = records[model.id]
        models.append(
            {
                "id": model.id,
                "path": record["path"],
                "format": record["format"],
                "load": record["load"],
                "sha256": record["sha256"],
                "modality": record["modality"],
                "architecture": record["architecture"],
                "arch_config": record["arch_config"],
                "task": record["task"],
                "num_classes": record["num_classes"],
                "data": record["data"],
                "seed": model.seed,
                "n_params": record["n_params"],
                "accuracy": record["accuracy"],
                "root": model.is_root,
                "split": model.split,
                "op": model.op,
                "spec_hash": record["spec_hash"],
            }
        )
    edges = []
    for model in spec.models:
        if model.is_root:
            continue
        derivation = derivations.get_derivation(model.op)
        for i, parent in enumerate(model.parents):
            edges.append(
                {
                    "parent": parent,
                    "child": model.id,
                    "operation": model.op,
                    "kind": derivation.kind,
                    "params": records[model.id]["params"],
                    "seed": model.seed,
                    "facts": records[model.id]["facts"],
                    "parent_index": i,
                }
            )
    lineage = Lineage(models, edges)
    family_split = assign_family_splits(lineage)
    for entry in models:
        entry["family"] = lineage.family[entry["id"]]
        entry["split"] = family_split[entry["family"]]
        entry["depth"] = len(lineage.ancestors[entry["id"]].get(entry["family"], []))
    families = [
        {
            "root": root,
            "split": split,
            "architecture": lineage.models[root]["architecture"],
            "data": lineage.models[root]["data"],
            "modality": lineage.models[root]["modality"],
            "members": sum(1 for f in lineage.family.values() if f == root),
        }
        for root, split in family_split.items()
    ]
    pairs = make_pairs(lineage, family_split, spec.held_out_archs, spec.held_out_kinds)
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "name": spec.name,
        "description": spec.description,
        "build": {
            "builder_version": BUILDER_VERSION,
            "seconds": round(seconds, 2),
            "built": counts["built"],
            "reused": counts["reused"],
            "cpu_seconds": counts["cpu_seconds"],
            "threads": zoo_threads(),
            "torch": torch.__version__,
            "python": sys.version.split()[0],
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "models": models,
        "edges": edges,
        "probes": probes,
        "families": families,
        "splits": {
            "family": {"rule": "a pair is in a split when both models' families are", "families": family_split},
            "arch": {
                "held_out": list(spec.held_out_archs),
                "rule": "test: the source touches a held-out architecture; train: neither model does",
            },
            "kind": {
                "held_out": list(spec.held_out_kinds),
                "rule": "test: either model's lineage has a held-out kind; train: neither has",
            },
        },
        "pairs": pairs,
        "spec": spec.to_dict(),
    }


def load_manifest(zoo_dir: str | Path) -> dict[str, Any]:
    """Read ``zoo_dir/manifest.json``, refusing unknown formats and newer versions."""
    path = Path(zoo_dir) / "manifest.json"
    if not path.is_file():
        raise ProgenitorError(f"{zoo_dir}: no manifest.json (build one with progenitor zoo build)")
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ProgenitorError(f"{path}: not valid JSON ({exc})") from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ProgenitorError(f"{path}: not a progenitor zoo manifest")
    if int(manifest.get("version", 0)) > MANIFEST_VERSION:
        raise ProgenitorError(
            f"{path}: manifest version {manifest['version']} is newer than this release reads "
            f"({MANIFEST_VERSION}); upgrade progenitor"
        )
    for entry in manifest.get("models", []):
        _check_load_options(path, entry)
    manifest["root_dir"] = str(Path(zoo_dir).resolve())
    return manifest


ZOO_ARCHS = "progenitor.zoo.archs:"


def _check_load_options(path: Path, entry: Any) -> None:
    """Refuse a model entry whose load options would import anything but the zoo's own
    architectures: a manifest is a data file, and an ``arch`` is a callable that gets called."""
    load = entry.get("load") if isinstance(entry, dict) else None
    if not isinstance(load, dict) or not set(load) <= {"arch", "input_shape"}:
        raise ProgenitorError(f"{path}: a model entry's load options are malformed")
    arch = load.get("arch")
    if arch is not None and not (isinstance(arch, str) and arch.startswith(ZOO_ARCHS)):
        raise ProgenitorError(
            f"{path}: model {entry.get('id')!r} names architecture {arch!r}; a zoo builds only {ZOO_ARCHS}*"
        )


def open_model(zoo_dir: str | Path, model_id: str) -> Any:
    """Open a zoo model by id through ``progenitor.models.load`` (a ``Model`` handle)."""
    from progenitor.models import load

    manifest = load_manifest(zoo_dir)
    for entry in manifest["models"]:
        if entry["id"] == model_id:
            return load(str(Path(zoo_dir) / entry["path"]), **entry["load"])
    raise ProgenitorError(f"{zoo_dir}: no model {model_id!r} in the manifest")
