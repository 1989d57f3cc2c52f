"""Distributed DNA extraction into a registry: a local process pool or a Ray cluster.

Workers only extract: each job loads one model and returns its DNA as ``.dna`` bytes. The driver
(the process running ``index add``) writes every result to the registry, one transaction per
model, keyed by content (genome hash and model sha256). So:

* a result is written **exactly once**, even when a worker dies and its job is retried (a
  retried job's DNA is the same DNA: a no-op the second time);
* an **interrupted** add keeps every model written before the interruption, and running the
  same command again **resumes**: models whose files' sha256 is registered are skipped before
  any work is sent out.

Engines (``engine=``):

* ``local`` (default): ``concurrent.futures.ProcessPoolExecutor`` with the ``spawn`` start method;
  a pool broken by a dying worker is rebuilt and its unfinished jobs resubmitted (``retries``).
* ``ray``: one Ray task per model (``num_cpus=1``, ``max_retries=retries``) on the cluster at
  ``address`` (``ray.init(address=...)``), or on a local Ray instance with ``workers`` CPUs.
* ``inline``: in the calling process, one model at a time (tests, debugging).

Every engine pins torch to one thread per job, so all produce bit-identical DNAs.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from progenitor.errors import DNAFormatError, ProgenitorError

__all__ = ["ENGINES", "AddReport", "Job", "JobResult", "add_models", "run_job"]

ENGINES = ("local", "ray", "inline")


@dataclass(frozen=True)
class Job:
    """One model to extract."""

    index: int
    ref: str
    probes: Any = None  # a ProbeSet, a preset name, a path, or None (the default preset)
    access: str = "auto"
    genes: tuple[str, ...] | None = None
    load_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    """A job's outcome: the DNA's bytes, or the error that stopped it."""

    index: int
    ref: str
    dna: bytes | None
    error: str | None = None
    seconds: float = 0.0
    worker: str = ""


@contextmanager
def one_thread() -> Iterator[None]:
    """One thread for torch and for numpy's BLAS/OpenMP pools while extracting, then restored.

    Sums then run in one order everywhere, so every engine and worker count gives the same bits
    (Ray workers run with one thread by default, a process pool does not). The BLAS limit needs
    ``threadpoolctl`` (installed with scikit-learn); without it only torch is pinned.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limiter = None
    else:
        limiter = threadpool_limits(limits=1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if limiter is not None:
            limiter.restore_original_limits()


def run_job(job: Job) -> JobResult:
    """Extract one model's DNA (runs in a worker); any error comes back as text.

    One model that fails (unreadable, a loader bug) must not stop a batch of thousands, so every
    exception is reported in the result (with its type) rather than raised.
    """
    from progenitor.api import extract
    from progenitor.index._dna import dna_to_bytes

    started = time.perf_counter()
    worker = f"{os.uname().nodename}:{os.getpid()}"
    genes = list(job.genes) if job.genes is not None else None
    try:
        with one_thread():
            dna = extract(job.ref, probes=job.probes, access=job.access, genes=genes, **job.load_options)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        return JobResult(job.index, job.ref, None, error, time.perf_counter() - started, worker)
    seconds = time.perf_counter() - started
    return JobResult(job.index, job.ref, dna_to_bytes(dna), None, seconds, worker)


# ------------------------------------------------------------------------------------------ engines


def _inline(jobs: Sequence[Job], **_: Any) -> Iterator[JobResult]:
    for job in jobs:
        yield run_job(job)


def _local(jobs: Sequence[Job], workers: int, retries: int, **_: Any) -> Iterator[JobResult]:
    context = mp.get_context("spawn")
    attempts = {job.index: 0 for job in jobs}
    pending = list(jobs)
    while pending:
        pool = ProcessPoolExecutor(
            max_workers=max(1, min(workers, len(pending))),
            mp_context=context,
        )
        futures = {pool.submit(run_job, job): job for job in pending}
        pending = []
        try:
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                for future in done:
                    job = futures[future]
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        attempts[job.index] += 1
                        if attempts[job.index] > retries:
                            yield JobResult(
                                job.index,
                                job.ref,
                                None,
                                f"worker died {attempts[job.index]} times while extracting",
                            )
                        else:
                            pending.append(job)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _ray(jobs: Sequence[Job], workers: int, retries: int, address: str | None = None, **_: Any) -> Iterator[JobResult]:
    from progenitor._extras import require

    ray = require("ray", "ray")
    started_here = False
    if not ray.is_initialized():
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=workers, **options)
        started_here = True
    task = ray.remote(num_cpus=1, max_retries=retries)(run_job)
    by_ref = {task.remote(job): job for job in jobs}
    pending = list(by_ref)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                job = by_ref[ref]
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    yield JobResult(
                        job.index,
                        job.ref,
                        None,
                        f"failed on Ray after {retries} retries: {type(exc).__name__}: {first}",
                    )
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


_ENGINE_FNS: dict[str, Callable[..., Iterator[JobResult]]] = {
    "inline": _inline,
    "local": _local,
    "ray": _ray,
}


# ------------------------------------------------------------------------------------------ driver


def _in_order(results: Iterator[JobResult], job_order: list[int], stored: list[JobResult]) -> Iterator[JobResult]:
    """Results in the order of the references, whatever order workers finish in.

    Registration order (ids, default names) is then the same for every engine and worker count.
    A result waits only for those before it; an interruption loses only unwritten results.
    """
    expected = sorted([r.index for r in stored] + job_order)
    waiting: dict[int, JobResult] = {}
    position = 0
    for result in results:
        waiting[result.index] = result
        while position < len(expected) and expected[position] in waiting:
            yield waiting.pop(expected[position])
            position += 1
    yield from (waiting[i] for i in sorted(waiting))


@dataclass
class AddReport:
    """What ``add_models`` did with each reference."""

    engine: str
    workers: int
    added: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    extract_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON form (``progenitor index add --json``)."""
        return {
            "engine": self.engine,
            "workers": self.workers,
            "added": self.added,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "extract_seconds": round(self.extract_seconds, 3),
        }


def _local_file(ref: str) -> Path | None:
    """The file or folder a reference names, when it is local (prefix stripped)."""
    if "://" in ref:
        return None
    path = Path(ref)
    if not path.exists():
        prefix, sep, rest = ref.partition(":")
        if not (sep and len(prefix) > 1 and prefix != "py"):
            return None
        path = Path(rest)
    return path if path.exists() else None


def _resolve_probes(registry: Any, probes: Any) -> Any:
    """What workers get as probes: a ProbeSet when the content is known, else a preset name."""
    from progenitor.index.spec import SpecMismatchError
    from progenitor.probes import ProbeSet, list_presets, load_probes

    spec = registry.spec
    chosen = probes
    if chosen is None:
        chosen = registry.probe_set()
        if chosen is None and spec is not None and spec.probes:
            name = str(spec.probes.get("name", ""))
            if name.partition(":")[0] in list_presets():
                chosen = name
            else:
                raise ProgenitorError(
                    f"{registry.path} was built with probe set {name!r}, whose content is not "
                    "stored; pass the same file with --probes"
                )
    is_preset = isinstance(chosen, str) and chosen.partition(":")[0] in list_presets() and not Path(chosen).exists()
    if chosen is not None and not isinstance(chosen, ProbeSet) and not is_preset:
        chosen = load_probes(chosen)
    if isinstance(chosen, ProbeSet) and spec is not None and spec.probes and spec.probes.get("hash") != chosen.hash:
        raise SpecMismatchError(
            f"probe set {chosen.name!r} ({chosen.hash[:12]}) is not the index's "
            f"{spec.probes.get('name')!r} ({str(spec.probes.get('hash'))[:12]}); "
            f"use the index's probes or another --db"
        )
    return chosen


def _store_probes(registry: Any, probes: Any, dna: Any) -> None:
    """Keep the probe set's content in the registry the first time a DNA used it."""
    from progenitor.models.base import InputSpec
    from progenitor.probes import ProbeSet, load_probes

    info = dna.probes
    if not info or registry._probes_by_hash(info["hash"]) is not None:
        return
    candidate = probes if isinstance(probes, ProbeSet) else None
    if candidate is None or candidate.hash != info["hash"]:
        shape = info.get("shape")
        try:
            candidate = load_probes(info["name"], InputSpec(info["kind"], tuple(shape) if shape else None))
        except ProgenitorError:
            return
    if candidate.hash == info["hash"]:
        registry.store_probes(candidate)


def add_models(
    registry: Any,
    refs: Sequence[str],
    probes: Any = None,
    access: str = "auto",
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    retries: int = 2,
    names: Sequence[str | None] | None = None,
    parent: str | None = None,
    from_scratch: bool = False,
    load_options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> AddReport:
    """Extract the DNA of each reference with ``engine`` and register it (see the module docstring).

    Args:
        registry: the ``Registry`` to write to.
        refs: model references (paths are made absolute so they stay valid).
        probes: a probe file, array, ProbeSet or preset (default: the registry's probe set).
        access: ``auto`` or the access to extract at.
        engine: ``local``, ``ray`` or ``inline``.
        workers: processes (local) or CPUs of a local Ray instance (default: CPU count).
        address: a Ray cluster address (``ray``); default: start a local instance.
        retries: times a job is retried after its worker died.
        names: a name per reference (None entries: the file stem).
        parent, from_scratch: declared lineage recorded for every model of this call.
        load_options: passed to ``progenitor.load`` (``arch=``, ``input_shape=``, ``device=``).
        progress: called with one line per event (the CLI prints them on stderr).
    """
    from progenitor.index._dna import dna_from_bytes
    from progenitor.index.registry import _absolute_ref
    from progenitor.index.spec import SpecMismatchError
    from progenitor.models.base import file_sha256

    if engine not in ENGINES:
        raise ProgenitorError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if names is not None and len(names) != len(refs):
        raise ProgenitorError("give one name per model, or none")
    started = time.perf_counter()
    note = progress or (lambda _m: None)
    workers = max(1, int(workers or os.cpu_count() or 1))
    report = AddReport(engine, workers)
    todo: list[tuple[int, str]] = []
    stored: list[JobResult] = []  # .dna files: registered as they are, no extraction
    total = len(refs)
    for index, raw in enumerate(refs):
        ref = _absolute_ref(str(raw))
        path = _local_file(ref)
        if ref.endswith(".dna") and path is not None and path.is_file():
            stored.append(JobResult(index, ref, path.read_bytes(), None, 0.0, "stored DNA"))
            continue
        if path is not None:
            found = registry.find_sha256(file_sha256(path))
            if found is not None:
                report.skipped.append({"ref": ref, "name": found.name, "reason": "already registered"})
                note(f"[{index + 1}/{total}] skip {ref}: already registered as {found.name}")
                continue
        todo.append((index, ref))
    jobs: list[Job] = []
    chosen = None
    if todo:
        chosen = _resolve_probes(registry, probes)
        spec = registry.spec
        genes = tuple(sorted(spec.genes)) if spec is not None else None
        options = dict(load_options or {})
        jobs = [Job(index, ref, chosen, access, genes, options) for index, ref in todo]
        note(f"extracting {len(jobs)} models with the {engine} engine ({workers} workers)")
    done = len(report.skipped)
    extracted = _ENGINE_FNS[engine](jobs, workers=workers, retries=retries, address=address) if jobs else iter(())
    for result in _in_order(itertools.chain(stored, extracted), [i for i, _ in todo], stored):
        done += 1
        report.extract_seconds += result.seconds
        if result.dna is None:
            report.failed.append({"ref": result.ref, "error": result.error})
            note(f"[{done}/{total}] FAILED {result.ref}: {result.error}")
            continue
        try:
            dna = dna_from_bytes(result.dna, result.ref)
            outcome = registry.add(
                dna,
                name=names[result.index] if names else None,
                parent=parent,
                from_scratch=from_scratch,
            )
        except (SpecMismatchError, DNAFormatError) as exc:
            report.failed.append({"ref": result.ref, "error": str(exc)})
            note(f"[{done}/{total}] REJECTED {result.ref}: {exc}")
            continue
        _store_probes(registry, chosen, dna)
        item = {
            "ref": result.ref,
            "name": outcome.entry.name,
            "dna_hash": outcome.entry.dna_hash,
            "seconds": round(result.seconds, 3),
            "worker": result.worker,
        }
        if outcome.added:
            report.added.append(item)
            note(f"[{done}/{total}] added {outcome.entry.name} ({result.seconds:.1f}s, {result.worker})")
        else:
            report.duplicates.append({**item, "reason": outcome.reason})
            note(f"[{done}/{total}] no-op {result.ref}: {outcome.reason}")
    report.seconds = time.perf_counter() - started
    return report
