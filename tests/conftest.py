"""Shared fixtures: offline mode, pinned threads, a tiny model family saved in several formats."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Zoo builds in tests use one thread: deterministic for any fixed count, and much faster than two
# pinned threads on a loaded 2-core machine.
os.environ.setdefault("PROGENITOR_ZOO_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))  # the `families` helper module

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def family():
    """Parent, derived children and independent same-recipe models (see families.py)."""
    import families

    return families.family()


@pytest.fixture(scope="session")
def probes_array() -> np.ndarray:
    """Held-out digits as probes, (96, 1, 8, 8)."""
    import families

    return families.probes()


@pytest.fixture(scope="session")
def saved(family, tmp_path_factory):
    """The family saved to disk: parent as TorchScript/state dict/safetensors, others TorchScript."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("family")
    x = torch.zeros(1, 1, 8, 8)
    paths = {}
    for name, model in [
        ("parent", family.parent),
        *family.children.items(),
        *((f"independent{i}", m) for i, m in enumerate(family.independents)),
    ]:
        path = root / f"{name}.pt"
        torch.jit.save(torch.jit.trace(model, x), path)
        paths[name] = path
    torch.save(family.parent.state_dict(), root / "parent_state.pt")
    save_file({k: v.contiguous() for k, v in family.parent.state_dict().items()}, root / "parent.safetensors")
    paths["state"] = root / "parent_state.pt"
    paths["safetensors"] = root / "parent.safetensors"
    np.save(root / "probes.npy", __import__("families").probes())
    np.save(root / "probes.labels.npy", __import__("families").probe_labels())  # picked up beside it
    paths["probes"] = root / "probes.npy"
    return paths


@pytest.fixture(scope="session")
def smoke_zoo(tmp_path_factory):
    """The `smoke` zoo, built once per test session (seconds to a minute on 2 cores)."""
    from progenitor.zoo import build_zoo

    root = tmp_path_factory.mktemp("zoo-smoke")
    build_zoo("smoke", root, progress=False)
    return root
