"""What a results file records about the run itself: versions, git commit, machine, command line."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from progenitor.bench.run import BenchConfig


def environment() -> dict[str, Any]:
    """Versions, git commit and machine, for the results file."""
    import numpy
    import scipy
    import torch

    import progenitor

    root = Path(progenitor.__file__).resolve().parents[2]
    commit, dirty = None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, check=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "progenitor": getattr(progenitor, "__version__", "unknown"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "machine": {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "memory_gb": _memory_gb(),
                    "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()]},
    }


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def command_line(config: BenchConfig) -> str:
    """The command line that reproduces ``config`` (every option spelled out)."""
    parts = ["progenitor", "bench", "--zoo", str(config.zoo), "--out", str(config.out)]
    if config.methods:
        parts += ["--methods", ",".join(config.methods)]
    parts += ["--split", config.split, "--scheme", config.scheme, "--alpha", f"{config.alpha:g}",
              "--threshold-split", config.threshold_split, "--threshold-models", str(config.threshold_models),
              "--learned", config.learned, "--calibration", config.calibration, "--seed", str(config.seed),
              "--threads", str(config.threads), "--jobs", str(config.jobs)]
    parts += [] if config.trees else ["--no-trees"]
    parts += [] if config.plots else ["--no-plots"]
    return " ".join(shlex.quote(p) for p in parts)
