"""Torch file formats: TorchScript archives, ``torch.save`` state dicts and safetensors.

State dicts are loaded with ``torch.load(weights_only=True)`` only: a checkpoint that needs
arbitrary Python objects is refused, never unpickled into code. Without an architecture factory a
state dict is weights-only (white-box, no forward); with ``arch="module:callable"`` the weights are
loaded into the module the factory returns.
"""

from __future__ import annotations

import importlib
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from progenitor.errors import ModelLoadError, UnsafeFileError
from progenitor.models._registry import register_format
from progenitor.models.base import InputSpec, Model, file_sha256
from progenitor.models.naming import forward_order
from progenitor.models.torch_module import TorchModuleModel, module_model, state_to_numpy

_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding a ``code/`` folder; state dicts hold none."""
    if path.suffix.lower() not in _TORCH_SUFFIXES or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def _is_state_dict(path: Path) -> bool:
    return path.suffix.lower() in _TORCH_SUFFIXES and not _is_torchscript(path)


@dataclass
class WeightsOnlyModel(Model):
    """Weights without an architecture: white-box genes only."""

    state: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.capabilities = frozenset({"weights"})

    def weights(self) -> dict[str, np.ndarray]:
        """The stored float tensors, float32."""
        return dict(self.state)


def import_factory(spec: str) -> Any:
    """Resolve ``module:callable`` to the callable (the module is imported, nothing is eval'd)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ModelLoadError(f"architecture factory {spec!r} is not of the form module:callable")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(f"cannot import module {module_name!r} for {spec!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ModelLoadError(f"{module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ModelLoadError(f"{spec!r} is not callable")
    return target


def build_module(spec: str) -> Any:
    """Call the ``module:callable`` factory with no arguments; ModelLoadError if it needs some."""
    factory = import_factory(spec)
    try:
        return factory()
    except TypeError as exc:
        raise ModelLoadError(f"{spec!r} cannot build a model without arguments ({_first(exc)})") from exc


def _with_arch(
    state: dict[str, torch.Tensor], path: str, fmt: str, arch: str, input_shape: Any, sha: str
) -> TorchModuleModel:
    module = build_module(arch)
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"architecture factory {arch!r} did not return a torch.nn.Module")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        # torch's first line only names the module ("Error(s) in loading state_dict for X:"); the
        # next one says which tensors are missing, unexpected or of another shape.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = " ".join(lines[:2])[:300]
        raise ModelLoadError(f"{path}: weights do not fit architecture {arch!r}: {detail}") from exc
    return module_model(module, path, fmt, input_shape, sha)


def _open_state(state: dict[str, torch.Tensor], path: str, fmt: str, arch: str | None, input_shape: Any) -> Model:
    if any(".lora_a" in name.lower() or ".lora_b" in name.lower() for name in state):
        raise ModelLoadError(
            f"{path}: holds LoRA adapter matrices (lora_A, lora_B), not a model; merge the adapter "
            "into its base model and compare that"
        )
    sha = file_sha256(path)
    if arch:
        return _with_arch(state, path, fmt, arch, input_shape, sha)
    spec = InputSpec("tensor", tuple(input_shape) if input_shape else None)
    return WeightsOnlyModel(ref=path, format=fmt, input_spec=spec, sha256=sha, state=state_to_numpy(state))


def _find_state_dict(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """The tensor mapping inside a checkpoint: the object itself or a nested ``state_dict``."""
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) >= len(obj) / 2:
            return tensors
        for key in ("state_dict", "model_state_dict", "model", "module", "weights"):
            if key in obj:
                return _find_state_dict(obj[key], path)
    raise ModelLoadError(f"{path}: no state dict (a mapping of names to tensors) found in the file")


@register_format("torch", detect=_is_state_dict, description="torch.save state dict (.pt/.pth/.bin)")
def open_state_dict(target: str, arch: str | None = None, input_shape: Any = None, **_: Any) -> Model:
    """A ``torch.save`` state dict, loaded with ``weights_only=True``."""
    try:
        with warnings.catch_warnings():  # torch warns about a pickle's protocol before refusing it
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(target, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # not a pickle of objects: bytes of another kind
            raise ModelLoadError(f"{target}: not a readable torch checkpoint (corrupt, or another format)") from exc
        raise UnsafeFileError(
            f"{target}: refused, the checkpoint needs arbitrary Python objects to load; save "
            "model.state_dict() with torch.save, or use safetensors, or a TorchScript export"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{target}: not a readable torch checkpoint ({_first(exc)})") from exc
    return _open_state(_find_state_dict(obj, target), target, "torch", arch, input_shape)


@register_format("safetensors", suffixes=(".safetensors",), description="safetensors weights")
def open_safetensors(target: str, arch: str | None = None, input_shape: Any = None, **_: Any) -> Model:
    """A ``.safetensors`` file (bf16 and fp16 converted to float32), its tensors in
    ``forward_order`` (embedding tables first, numbered blocks in numeric order)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(target)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{target}: not a readable safetensors file ({_first(exc)})") from exc
    # The file keeps no module order (its tensors come back sorted by name); the weight genes
    # chain layers in order, so restore what the names tell (``--arch`` gives the module's own).
    state = {name: state[name] for name in forward_order(list(state))}
    return _open_state(state, target, "safetensors", arch, input_shape)


@register_format("torchscript", detect=_is_torchscript, description="TorchScript archive (.pt)")
def open_torchscript(target: str, input_shape: Any = None, **_: Any) -> Model:
    """A TorchScript archive: weights and forward (no hooks, so no features)."""
    try:
        module = torch.jit.load(target, map_location="cpu")
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{target}: not a readable TorchScript archive ({_first(exc)})") from exc
    return module_model(module, target, "torchscript", input_shape, file_sha256(target))


@register_format("py", description="py:module:callable returning a torch.nn.Module")
def open_python(target: str, input_shape: Any = None, **_: Any) -> Model:
    """``module:callable`` that returns a ``torch.nn.Module`` (e.g. a pretrained constructor)."""
    module = build_module(target)
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"py:{target} did not return a torch.nn.Module")
    return module_model(module, f"py:{target}", "py", input_shape)


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
