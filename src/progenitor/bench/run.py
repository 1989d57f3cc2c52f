"""Run every method on the same zoo pairs and collect every number.

Methods run one after the other (each alone on the machine, so their timings compare), or with
``jobs`` > 1 that many at a time in worker processes; each method opens the model files itself.
For each method: fingerprint every model it needs (timed per model, opening the file included),
score every pair (timed per pair; a source-dependent method's per-pair target query is part of its
comparison time), recover family trees where the method builds them, then grade
(``progenitor.bench.evaluate``).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from progenitor._threads import single_blas
from progenitor.api import score_genes
from progenitor.bench.env import command_line, environment
from progenitor.bench.evaluate import MethodRun, evaluate
from progenitor.bench.methods import MISSING, NOT_APPLICABLE, OURS, BenchContext, Method, list_methods, make_method
from progenitor.bench.tasks import Tasks, make_tasks
from progenitor.bench.trees import has_tree, recover_family
from progenitor.calibrate import calibrate
from progenitor.calibration import Calibration, load_calibration
from progenitor.errors import ProgenitorError
from progenitor.models import Model, load
from progenitor.probes import load_probes
from progenitor.verdict import DEFAULT_ALPHA
from progenitor.zoo.dna_dataset import NULL_KINDS, ZooDNA, calibrate_on_zoo

Progress = Callable[[str], None]
RESULTS_FORMAT = "progenitor-bench"
RESULTS_VERSION = 1


@dataclass
class BenchConfig:
    """What to run. ``learned``: ``auto`` (the packaged learned DNA if one ships), ``none`` or a
    directory; ``calibration``: ``auto`` (the learned directory's ``calibration.json`` if it has
    one, else fitted on the zoo's train split), ``train``, ``shipped`` or a JSON path."""

    zoo: Path
    out: Path
    methods: list[str] | None = None
    split: str = "test"
    scheme: str = "family"
    alpha: float = DEFAULT_ALPHA
    fpr: float = 0.01
    threshold_split: str = "val"
    threshold_models: int = 60
    learned: str = "auto"
    calibration: str = "auto"
    trees: bool = True
    plots: bool = True
    seed: int = 0
    threads: int = 2
    jobs: int = 1
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class ModelCache:
    """Model handles of a zoo, opened once."""

    def __init__(self, zoo: ZooDNA) -> None:
        self.zoo = zoo
        self.handles: dict[str, Model] = {}

    def get(self, model_id: str) -> Model:
        """The handle of ``model_id`` (opened on first use)."""
        if model_id not in self.handles:
            entry = self.zoo.models[model_id]
            self.handles[model_id] = load(str(self.zoo.root / entry["path"]), **entry["load"])
        return self.handles[model_id]


def _resolve_learned(spec: str) -> tuple[Any, str]:
    from progenitor.api import default_learned
    from progenitor.learn import load_learned

    if spec in ("none", "", "false"):
        return None, "none"
    if spec == "auto":
        bundle = default_learned()
        return bundle, ("packaged default" if bundle is not None else "none shipped")
    return load_learned(spec), str(Path(spec).resolve())


def _resolve_calibration(spec: str, learned: str, zoo: ZooDNA, scheme: str, note: Progress) -> tuple[Calibration, str]:
    if spec == "auto" and learned not in ("auto", "none", "") and (Path(learned) / "calibration.json").is_file():
        path = Path(learned) / "calibration.json"
        return load_calibration(path), str(path)
    if spec in ("auto", "train"):
        note("calibrating the genes on the zoo's train split (cached DNAs)")
        return calibrate_split(zoo, "train", scheme), f"zoo train split ({scheme} scheme)"
    if spec == "shipped":
        return load_calibration(None), "shipped default"
    return load_calibration(spec), str(Path(spec).resolve())


def calibrate_split(zoo: ZooDNA, split: str, scheme: str) -> Calibration:
    """The gene calibration ``progenitor train`` fits, from one split of the zoo.

    Image zoos: ``progenitor.zoo.dna_dataset.calibrate_on_zoo``; other modalities (which it does not
    read): the same fit on the split's pairs in the probe set's modality.
    """
    if zoo.probes.get("modality", "image") == "image":
        return calibrate_on_zoo(zoo, split, scheme)
    pairs = [p for p in zoo.pairs(split, scheme, modality=None) if p.derived or p.kind in NULL_KINDS]
    if not any(p.derived for p in pairs) or sum(not p.derived for p in pairs) < 3:
        raise ProgenitorError(f"{zoo.root}: the {split!r} split has too few pairs to calibrate on; "
                              "pass --calibration shipped or a calibration JSON")
    records = [({n: s.similarity for n, s in score_genes(zoo.dna(p.source), zoo.dna(p.target)).items()}, p.derived)
               for p in pairs]
    negatives = sum(1 for p in pairs if not p.derived)
    return calibrate(records, f"zoo {zoo.manifest['name']} {zoo.zoo_hash[:12]}, {split} split ({scheme}): "
                              f"{len(pairs) - negatives} derived and {negatives} independent pairs",
                     recipes=[zoo.dna(p.source).recipe() for p in pairs],
                     target_recipes=[zoo.dna(p.target).recipe() for p in pairs])


def _fingerprints(run: MethodRun, models: list[str], cache: ModelCache, note: Progress) -> None:
    method = run.method
    for i, model_id in enumerate(models, 1):
        if i % 50 == 0:
            note(f"  {method.name}: fingerprinted {i}/{len(models)}")
        try:
            started = time.perf_counter()
            model = cache.get(model_id)
            opened = time.perf_counter() - started
            with single_blas():  # every method alike: see progenitor._threads
                fp, seconds = method.fingerprint(model, cache.zoo.models[model_id])
        except NOT_APPLICABLE as exc:
            run.fps[model_id] = None
            run.failures[model_id] = f"{type(exc).__name__}: {exc}"
            continue
        run.fps[model_id] = fp
        run.fp_seconds[model_id] = opened + seconds
        run.fp_bytes[model_id] = method.nbytes(fp)


def _score(run: MethodRun, pairs: list[tuple[str, str]], cache: ModelCache) -> None:
    method = run.method
    by_source: dict[str, list[str]] = {}
    for s, t in pairs:
        by_source.setdefault(s, []).append(t)
    for source, targets in by_source.items():
        fp_s = run.fps.get(source)
        if fp_s is None:
            run.results.update({(source, t): MISSING for t in targets})
            continue
        if method.source_dependent:
            for t in targets:
                started = time.perf_counter()
                try:
                    fp_t = method.target_fingerprint(cache.get(t), cache.zoo.models[t], fp_s)
                    run.results[(source, t)] = method.score(fp_s, [fp_t])[0]
                except NOT_APPLICABLE:
                    run.results[(source, t)] = MISSING
                run.compare_seconds.append(time.perf_counter() - started)
            continue
        usable = [t for t in targets if run.fps.get(t) is not None]
        run.results.update({(source, t): MISSING for t in targets if run.fps.get(t) is None})
        if not usable:
            continue
        started = time.perf_counter()
        results = method.score(fp_s, [run.fps[t] for t in usable])
        each = (time.perf_counter() - started) / len(usable)
        run.results.update(dict(zip([(source, t) for t in usable], results, strict=True)))
        run.compare_seconds.extend([each] * len(usable))


def _trees(run: MethodRun, tasks: Tasks, seed: int) -> None:
    method = run.method

    def pair(s: str, t: str) -> Any:
        if (s, t) not in run.results:
            run.results[(s, t)] = method.score(run.fps[s], [run.fps[t]])[0]
        return run.results[(s, t)]

    started = time.perf_counter()
    edges = []
    for members in tasks.families.values():
        edges.extend(recover_family(method, members, run.fps, pair, seed))
    run.tree_edges = edges
    run.tree_seconds = time.perf_counter() - started


def run_method(method: Method, tasks: Tasks, cache: ModelCache, trees: bool, seed: int, note: Progress) -> MethodRun:
    """Fingerprint, score and (where it applies) recover trees with one method."""
    run = MethodRun(method)
    started = time.perf_counter()
    pairs = tasks.all_pairs()
    needed = tasks.models()
    if method.source_dependent:  # targets are queried per pair; only sources have a fingerprint
        sources = tasks.sources() | ({q.target for q in tasks.queries} if method.own_parent_test else set())
        needed = [m for m in needed if m in sources]
    note(f"{method.name}: fingerprinting {len(needed)} models")
    _fingerprints(run, needed, cache, note)
    note(f"{method.name}: scoring {len(pairs)} pairs")
    _score(run, pairs, cache)
    if trees and has_tree(method):
        note(f"{method.name}: recovering {len(tasks.families)} family trees")
        try:
            _trees(run, tasks, seed)
        except Exception as exc:  # a tree failure must not lose the pair scores
            run.tree_edges = None
            run.tree_error = f"{type(exc).__name__}: {exc}"
            note(f"{method.name}: tree recovery FAILED {run.tree_error}\n{traceback.format_exc(limit=3)}")
    run.seconds = time.perf_counter() - started
    return run


# Slowest first, so that parallel jobs finish together.
_COST_ORDER = ("progenitor", "progenitor-genes", "progenitor-black", "reef_cka", "modeldiff", "csu_match",
               "csu_independence")


def _run_one(name: str, tasks: Tasks, context: BenchContext, config: BenchConfig,
             note: Progress) -> tuple[dict[str, Any], MethodRun]:
    """Run and grade one method; the returned run keeps its scores but not its fingerprints."""
    method = make_method(name, context)
    try:  # each method opens the models itself: opening a file is part of its extraction cost
        run = run_method(method, tasks, ModelCache(tasks.zoo), config.trees, config.seed, note)
    except Exception as exc:  # one method's crash must not lose the others' numbers
        run = MethodRun(method, error=f"{type(exc).__name__}: {exc}")
        note(f"{name}: FAILED {run.error}\n{traceback.format_exc(limit=3)}")
    evaluation = evaluate(run, tasks, config.alpha, config.fpr)
    note(f"{name}: AUC {evaluation['auc']['overall']:.3f}, {evaluation['cost']['total_seconds']:.1f} s")
    run.fps = {}
    return evaluation, run


def _worker(config: BenchConfig, names: list[str], calibration_path: str) -> list[tuple[dict[str, Any], MethodRun]]:
    """Methods in a worker process (``jobs`` > 1), one after the other: rebuilds tasks and context.

    Our two rows go to one worker so that they share one DNA extraction per model.
    """
    import torch

    torch.set_num_threads(max(1, config.threads // max(config.jobs, 1)))

    def note(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    tasks = make_tasks(ZooDNA(config.zoo), config.split, config.scheme, config.threshold_split,
                       config.threshold_models, config.seed)
    bundle, _ = _resolve_learned(config.learned)
    context = BenchContext(load_probes(str(tasks.zoo.root / tasks.zoo.probes["path"])),
                           load_calibration(calibration_path), bundle, config.alpha)
    out = []
    for name in names:
        evaluation, run = _run_one(name, tasks, context, config, note)
        run.method = None  # type: ignore[assignment]  # the parent re-attaches its own adapter
        for result in run.results.values():  # lineage relations never asked for: closures, not sent
            result.extra.pop("lineage", None)
        out.append((evaluation, run))
    return out


def _run_parallel(
    names: list[str], context: BenchContext, config: BenchConfig, calibration_path: Path
) -> dict[str, tuple[dict[str, Any], MethodRun]]:
    """Methods in ``config.jobs`` spawned processes, slowest first (ours' rows as one job)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    order = sorted(names, key=lambda n: _COST_ORDER.index(n) if n in _COST_ORDER else len(_COST_ORDER))
    ours = [n for n in order if n in OURS]
    jobs = ([ours] if ours else []) + [[n] for n in order if n not in OURS]
    done: dict[str, tuple[dict[str, Any], MethodRun]] = {}
    with ProcessPoolExecutor(config.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [(job, pool.submit(_worker, config, job, str(calibration_path))) for job in jobs]
        for job, future in futures:
            for name, (evaluation, run) in zip(job, future.result(), strict=True):
                run.method = make_method(name, context)
                done[name] = (evaluation, run)
    return done


def run_bench(config: BenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the benchmark; write ``results.json``, ``results.md``, ``pairs.csv``, ``calibration.json``
    (ours' gene calibration as used) and the plots into ``config.out``.

    With ``config.jobs`` > 1, methods run in that many spawned processes at once (each with
    ``threads // jobs`` torch threads); their timings are then taken side by side. Spawned workers
    re-import the caller's main module: a script calling this must guard its entry point with
    ``if __name__ == "__main__":`` (the ``progenitor`` command does).

    Returns:
        The results (what ``results.json`` holds).
    """
    import torch

    from progenitor.bench.report import write_outputs

    note = progress or (lambda _m: None)
    started = time.perf_counter()
    env = environment()  # versions and commit as the run starts (the tree may change meanwhile)
    torch.set_num_threads(config.threads if config.jobs <= 1 else max(1, config.threads // config.jobs))
    names = list(dict.fromkeys(config.methods or list_methods()))
    unknown = [n for n in names if n not in list_methods()]
    if unknown:
        raise ProgenitorError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(list_methods())}")
    zoo = ZooDNA(config.zoo)
    tasks = make_tasks(zoo, config.split, config.scheme, config.threshold_split, config.threshold_models, config.seed)
    note(f"{zoo.manifest['name']}: {len(tasks.pairs)} pairs, {len(tasks.threshold_pairs)} threshold pairs "
         f"({tasks.threshold_split}), {len(tasks.queries)} parent queries, {len(tasks.models())} models")
    bundle, learned_from = _resolve_learned(config.learned)
    if any(n in OURS for n in names):
        calibration, calibration_from = _resolve_calibration(
            config.calibration, config.learned, zoo, config.scheme, note)
    else:
        calibration, calibration_from = load_calibration(None), "unused"
    Path(config.out).mkdir(parents=True, exist_ok=True)
    calibration_path = calibration.save(Path(config.out) / "calibration.json")
    context = BenchContext(load_probes(str(zoo.root / zoo.probes["path"])), calibration, bundle, config.alpha)
    # Without a learned DNA our two rows are one verdict: run it once.
    twins = {"progenitor": "progenitor-genes"} if bundle is None and set(OURS[:2]) <= set(names) else {}
    to_run = [n for n in names if n not in twins]
    if config.jobs > 1 and len(to_run) > 1:
        done = _run_parallel(to_run, context, config, calibration_path)
    else:
        done = {n: _run_one(n, tasks, context, config, note) for n in to_run}
    results: dict[str, Any] = {}
    runs: list[MethodRun] = []
    for name in names:
        if name in twins:
            evaluation, twin_run = done[twins[name]]
            evaluation = {**copy.deepcopy(evaluation), "name": name,
                          "note": f"no learned Model DNA: the same run as {twins[name]}"}
            run = replace(twin_run, method=make_method(name, context))
        else:
            evaluation, run = done[name]
        results[name] = evaluation
        runs.append(run)
    out = {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "command": config.command or command_line(config),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "zoo": {"name": zoo.manifest["name"], "hash": zoo.zoo_hash, "dir": str(zoo.root.resolve()),
                "models": len(zoo.models), "pairs": len(zoo.manifest["pairs"])},
        "tasks": tasks.summary(),
        "ours": {"learned": learned_from,
                 "learned_hash": None if bundle is None else bundle.spec.get("hash"),
                 "learned_zoo_hash": None if bundle is None else bundle.config.get("zoo_hash"),
                 "calibration": calibration_from, "calibration_source": calibration.source},
        "environment": {**env, "load_average_at_end": [round(v, 2) for v in os.getloadavg()]},
        "methods": results,
        "seconds": time.perf_counter() - started,
    }
    write_outputs(out, runs, tasks, config.out, plots=config.plots)
    note(f"wrote {config.out} in {out['seconds']:.0f} s")
    return out


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` written by ``run_bench``."""
    data = json.loads(Path(path).read_text("utf-8"))
    if data.get("format") != RESULTS_FORMAT:
        raise ProgenitorError(f"{path}: not a progenitor bench results file")
    return data
