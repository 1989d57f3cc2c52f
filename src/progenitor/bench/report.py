"""Write a benchmark's outputs: ``results.json``, ``results.md``, ``pairs.csv`` and the plots."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from progenitor._io import write_atomic
from progenitor.bench.evaluate import MethodRun
from progenitor.bench.tasks import Tasks

PLOTS = ("roc_by_kind.png", "auc_heatmap.png", "cost_vs_accuracy.png")


def jsonable(value: Any) -> Any:
    """``value`` with NaN/inf as None and tuples as lists (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return jsonable(value.item())
    return value


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{100 * value:.1f}%"


def _seconds(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _bytes(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    for unit in ("B", "KB", "MB"):
        if value < 1024 or unit == "MB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "–"


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    """The summary table, one row per method (header first)."""
    header = ["method", "access", "AUC", "TPR@1%FPR", "AUC (all neg.)", "operating rule", "TPR at op.",
              "same-arch FP", "top-1 parent", "orphans abstained", "tree edges", "extract / model",
              "compare / pair", "bytes / model"]
    rows = [header]
    for name, m in results["methods"].items():
        op, top1, cost, tree = m["operating"], m["top1"], m["cost"], m.get("tree")
        rows.append([
            f"**{name}**" if m["family"] == "ours" else name,
            m["access"],
            _f(m["auc"]["overall"]),
            _f(m["auc"]["tpr_at_fpr"]),
            _f(m["auc_all_negatives"]["overall"]),
            m["rule"],
            _f(op["tpr"]),
            f"{op['same_arch_false_positives']}/{op['same_arch_pairs']}",
            _pct(top1["parent_accuracy"]),
            _pct(top1["orphan_abstention"]),
            _pct(tree["accuracy"]) if tree else "–",
            _seconds(cost["extract_s_per_model"]),
            "–" if cost["compare_ms_per_pair"] is None else _seconds((cost["compare_ms_per_pair"] or math.nan) / 1000),
            _bytes(cost["bytes_per_model"]),
        ])
    return rows


def kind_rows(results: dict[str, Any], key: str = "auc") -> list[list[str]]:
    """Methods x derivation kinds ROC-AUC (header first)."""
    kinds = results["tasks"]["derived_by_kind"]
    order = sorted(k for k in kinds if k != "chain") + (["chain"] if "chain" in kinds else [])
    rows = [["method", *[f"{k} ({kinds[k]})" for k in order], "overall"]]
    for name, m in results["methods"].items():
        block = m[key]
        rows.append([name, *[_f(block["by_kind"].get(k)) for k in order], _f(block["overall"])])
    return rows


def negative_rows(results: dict[str, Any]) -> list[list[str]]:
    """Share of each negative kind called derived at the operating point (header first)."""
    kinds = results["tasks"]["negatives_by_kind"]
    rows = [["method", *[f"{k} ({n})" for k, n in kinds.items()]]]
    for name, m in results["methods"].items():
        flagged = m["operating"]["flagged_by_kind"]
        rows.append([name, *[_pct(flagged.get(k)) for k in kinds]])
    return rows


def method_rows(results: dict[str, Any]) -> list[list[str]]:
    """Per method: where it comes from, how it decides, how many pairs it could score."""
    rows = [["method", "paper", "parent queries answered by", "pairs scored", "note"]]
    for name, m in results["methods"].items():
        note = m.get("note") or ""
        if m.get("tree_error"):
            note = f"{note} tree recovery failed: {m['tree_error']}".strip()
        rows.append([name, m["paper"], m["parent_rule"], _pct(m["coverage"]), note])
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    """A GitHub Markdown table."""
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """``results.md``: context, the summary table, AUC per kind, negatives flagged, notes."""
    t, env, zoo, ours = results["tasks"], results["environment"], results["zoo"], results["ours"]
    machine = env["machine"]
    load = (machine.get("load_average_1_5_15", ["?"])[0], env.get("load_average_at_end", ["?"])[0])
    jobs, threads = max(1, results["config"].get("jobs", 1)), results["config"].get("threads", 1)
    errors = [f"- `{n}` failed: {m['error']}" for n, m in results["methods"].items() if m.get("error")]
    parts = [
        "# progenitor bench",
        "",
        f"Zoo `{zoo['name']}` (hash `{zoo['hash'][:16]}`), split `{t['split']}` under the `{t['scheme']}` scheme: "
        f"{t['models']} models, {t['derived_pairs']} derived and {t['negative_pairs']} negative pairs, "
        f"{sum(t['queries'].values())} parent queries, {t['families']} families. Probe set `{t['probe_set']}`.",
        f"Thresholds set on {t['threshold_pairs']} independent pairs of the `{t['threshold_split']}` split.",
        f"Ours: learned DNA {ours['learned']}; calibration {ours['calibration']}.",
        f"Commit `{(env['git_commit'] or 'unknown')[:12]}`{' (dirty)' if env['git_dirty'] else ''}; "
        f"{machine['cpu']}, {machine['cores']} cores, {machine.get('memory_gb')} GB; {jobs} job(s) of "
        f"{max(1, threads // jobs)} torch thread(s); load average {load[0]} at start, {load[1]} at end; "
        f"wall time {results['seconds']:.0f} s.",
        "",
        f"Command: `{results['command'] or 'progenitor bench'}`",
        "",
        "## Summary",
        "",
        markdown_table(summary_rows(results)),
        "",
        "AUC and TPR@1%FPR: derived pairs against the split's independently trained negatives; "
        "AUC (all neg.) adds reverse pairs, siblings and cousins. Operating point: ours' own verdict, "
        "p < alpha for methods with a p-value, else the threshold that passes 1% of the threshold "
        "split's independent pairs. Same-arch FP: independent same-architecture pairs called derived. "
        "Top-1 parent: targets whose parent is among the candidates, answered with that parent; orphans: "
        "roots, and targets with all ancestors hidden, answered \"no parent\". Tree edges: directed-edge "
        "accuracy of recovered family trees. A pair a method cannot score ranks lowest.",
        "",
        "## ROC-AUC per derivation kind (vs independent negatives)",
        "",
        markdown_table(kind_rows(results)),
        "",
        "## ROC-AUC per derivation kind (vs all negatives)",
        "",
        markdown_table(kind_rows(results, "auc_all_negatives")),
        "",
        "## Negatives called derived at the operating point",
        "",
        markdown_table(negative_rows(results)),
        "",
    ]
    parts += ["## Methods", "", markdown_table(method_rows(results)), ""]
    if errors:
        parts += ["## Failures", "", *errors, ""]
    parts += ["Plots: " + ", ".join(f"[{p}]({p})" for p in PLOTS), ""]
    return "\n".join(parts)


def write_pairs_csv(path: Path, runs: list[MethodRun], tasks: Tasks) -> None:
    """Every pair's score per method (empty where missing)."""
    names = [r.method.name for r in runs]
    rows = [("test", p) for p in tasks.pairs] + [("threshold", p) for p in tasks.threshold_pairs]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["set", "source", "target", "derived", "kind", *names])
        for group, p in rows:
            scores = []
            for r in runs:
                result = r.results.get((p.source, p.target))
                ok = result is not None and math.isfinite(result.score)
                scores.append(f"{result.score:.6g}" if ok else "")
            writer.writerow([group, p.source, p.target, int(p.derived), p.kind, *scores])


def write_outputs(results: dict[str, Any], runs: list[MethodRun], tasks: Tasks, out: Path, plots: bool = True) -> None:
    """Write the results JSON, the Markdown, the per-pair CSV and (optionally) the plots into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if plots:
        from progenitor.bench.plots import write_plots

        results["plots"] = write_plots(results, runs, tasks, out)
    write_atomic(out / "results.json", json.dumps(jsonable(results), indent=1, allow_nan=False) + "\n")
    write_atomic(out / "results.md", markdown(jsonable(results)))
    write_pairs_csv(out / "pairs.csv", runs, tasks)
