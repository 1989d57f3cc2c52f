"""In-process models handed to the API: a ``torch.nn.Module`` or a plain callable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from progenitor.errors import ModelLoadError, ProbeError
from progenitor.models.base import Batch, InputSpec, Model
from progenitor.models.torch_module import module_model


@dataclass
class CallableModel(Model):
    """A black-box function from a batch (array or list of texts) to outputs."""

    fn: Callable[[Batch], Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.capabilities = frozenset({"forward"})

    def forward(self, batch: Batch) -> np.ndarray:
        """Calls the function and flattens its outputs per input."""
        assert self.fn is not None
        try:
            out = np.asarray(self.fn(batch), dtype=np.float32)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise ProbeError(f"{self.ref} failed on the probe set: {exc}") from exc
        if out.ndim == 0 or out.shape[0] != len(batch):
            raise ProbeError(f"{self.ref} returned {out.shape} outputs for {len(batch)} inputs")
        return out.reshape(len(batch), -1)


def from_object(obj: Any, input_shape: Any = None, text: bool = False, **_: Any) -> Model:
    """Wrap a module or callable; ``text=True`` marks a callable that takes strings."""
    if isinstance(obj, torch.nn.Module):
        return module_model(obj, f"<{type(obj).__name__}>", "torch-module", input_shape)
    if callable(obj):
        spec = InputSpec("text") if text else InputSpec("tensor", tuple(input_shape) if input_shape else None)
        name = getattr(obj, "__name__", type(obj).__name__)
        return CallableModel(ref=f"<{name}>", format="callable", input_spec=spec, fn=obj)
    raise ModelLoadError(f"cannot load a {type(obj).__name__}: pass a path, reference or module")
