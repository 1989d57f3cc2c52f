"""Where a torch model runs: ``device="cpu"`` (the default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

Only the formats that hold a torch module (torch files, TorchScript, ``py:`` factories, in-process
modules, transformers directories) can be moved: their handles keep the ``module`` and the
``device`` their inputs are sent to, and ``on_device`` moves both. Inputs go to the
device batch by batch and everything a model returns comes back as numpy on the CPU, so genes
and baselines never see a device. A DNA extracted on a GPU equals the CPU's up to float rounding
(kernels differ), so verdicts agree but bytes need not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from progenitor.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

    from progenitor.models.base import Model


def torch_device(name: str) -> torch.device:
    """The torch device called ``name``; ModelLoadError if it is unknown or not present here."""
    import torch

    text = name.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ModelLoadError(f"device {name!r} is not one of cpu, cuda, cuda:N or auto") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ModelLoadError(f"device {name!r}: only cpu and cuda devices are supported")
    if not torch.cuda.is_available():
        raise ModelLoadError(f"device {name!r}: torch sees no CUDA device on this machine")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ModelLoadError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def on_device(model: Model, name: str) -> Model:
    """``model`` moved to the device called ``name`` (in place; returned for chaining)."""
    import torch

    device = torch_device(name)
    module = getattr(model, "module", None)
    if isinstance(module, torch.nn.Module) and hasattr(model, "device"):
        module.to(device)
        model.device = device  # type: ignore[attr-defined]
    elif device.type != "cpu":
        raise ModelLoadError(
            f"{model.ref}: the {model.format} format runs on the CPU only (a device applies to torch models)"
        )
    return model
