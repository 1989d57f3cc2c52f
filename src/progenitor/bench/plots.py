"""The benchmark's plots (matplotlib, Agg backend: no display needed).

* ``roc_by_kind.png``: ROC curves of every method, one panel per derivation kind and one overall
  (derived pairs of that kind against the split's independent negatives; FPR on a log axis, where
  the operating points live);
* ``auc_heatmap.png``: methods x derivation kinds ROC-AUC;
* ``cost_vs_accuracy.png``: extraction seconds per model against overall ROC-AUC.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from progenitor.bench.evaluate import MethodRun
from progenitor.bench.metrics import roc_curve
from progenitor.bench.tasks import Tasks

FPR_FLOOR = 1e-3


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _style(name: str, index: int) -> dict[str, Any]:
    if name == "progenitor":
        return {"color": "black", "linewidth": 2.4, "zorder": 5}
    if name == "progenitor-genes":
        return {"color": "0.35", "linewidth": 2.0, "linestyle": "--", "zorder": 4}
    if name == "progenitor-black":
        return {"color": "0.55", "linewidth": 2.0, "linestyle": ":", "zorder": 4}
    cycle = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
             "tab:olive", "tab:cyan", "gold", "navy", "teal"]
    return {"color": cycle[index % len(cycle)], "linewidth": 1.2}


def roc_by_kind(runs: list[MethodRun], tasks: Tasks, path: Path) -> None:
    """One ROC panel per derivation kind plus the overall one."""
    plt = _pyplot()
    kinds = [*tasks.derivation_kinds, "overall"]
    cols = min(4, len(kinds))
    rows = math.ceil(len(kinds) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
    independent = np.array([p.independent for p in tasks.pairs])
    for ax, kind in zip(axes.ravel(), kinds, strict=False):
        positive = np.array([p.derived and (kind == "overall" or p.kind == kind) for p in tasks.pairs])
        mask = positive | independent
        for i, run in enumerate(runs):
            scores = run.scores(tasks.pairs)[mask]
            fpr, tpr = roc_curve(scores, positive[mask])
            ax.step(np.maximum(fpr, FPR_FLOOR), tpr, where="post", label=run.method.name, **_style(run.method.name, i))
        ax.set_xscale("log")
        ax.set_xlim(FPR_FLOOR, 1)
        ax.set_ylim(0, 1.02)
        ax.axvline(0.01, color="0.8", linewidth=0.8, zorder=0)
        ax.set_title(f"{kind} ({int(positive.sum())} pairs)", fontsize=9)
        ax.set_xlabel("false-positive rate", fontsize=8)
        ax.set_ylabel("true-positive rate", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(kinds):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(7, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05 + 0.02 * math.ceil(len(labels) / 7), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def auc_heatmap(results: dict[str, Any], tasks: Tasks, path: Path) -> None:
    """Methods x derivation kinds ROC-AUC, annotated."""
    plt = _pyplot()
    kinds = [*tasks.derivation_kinds, "overall"]
    names = list(results["methods"])
    grid = np.full((len(names), len(kinds)), np.nan)
    for i, name in enumerate(names):
        block = results["methods"][name]["auc"]
        for j, kind in enumerate(kinds):
            value = block["overall"] if kind == "overall" else block["by_kind"].get(kind)
            grid[i, j] = np.nan if value is None else value
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(kinds), 0.9 + 0.42 * len(names)))
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0.5, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(kinds)), kinds, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(kinds)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6.5)
    fig.colorbar(image, ax=ax, fraction=0.03, label="ROC-AUC")
    ax.set_title("ROC-AUC per derivation kind (vs independent models)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cost_vs_accuracy(results: dict[str, Any], path: Path) -> None:
    """Extraction seconds per model (log) against overall ROC-AUC; marker area ~ fingerprint bytes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    points: dict[tuple[float, float], list[str]] = {}  # methods with the same numbers share a label
    for i, (name, m) in enumerate(results["methods"].items()):
        x, y = m["cost"]["extract_s_per_model"], m["auc"]["overall"]
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)) or x <= 0:
            continue
        nbytes = m["cost"]["bytes_per_model"]
        size = 20 + 10 * math.log10(nbytes) if nbytes is not None and math.isfinite(nbytes) and nbytes >= 1 else 20
        ax.scatter([x], [y], s=size, color=_style(name, i)["color"], zorder=3)
        points.setdefault((round(math.log10(x), 2), round(y, 3)), []).append(name)
    for (lx, y), names in points.items():
        ax.annotate(" = ".join(names), (10**lx, y), textcoords="offset points", xytext=(5, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("extraction time per model (s, log)")
    ax.set_ylabel("overall ROC-AUC (vs independent models)")
    ax.grid(True, alpha=0.3)
    ax.set_title("cost vs accuracy (marker size ~ log fingerprint bytes)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(results: dict[str, Any], runs: list[MethodRun], tasks: Tasks, out: Path) -> list[str]:
    """Write the three plots into ``out``; returns their file names."""
    roc_by_kind(runs, tasks, out / "roc_by_kind.png")
    auc_heatmap(results, tasks, out / "auc_heatmap.png")
    cost_vs_accuracy(results, out / "cost_vs_accuracy.png")
    return ["roc_by_kind.png", "auc_heatmap.png", "cost_vs_accuracy.png"]
