"""A Model over an in-memory ``torch.nn.Module`` (eager or TorchScript).

Used by the TorchScript loader, state dicts loaded into an architecture factory, ``py:`` references
and modules handed to ``progenitor.load`` directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from progenitor.errors import ProbeError
from progenitor.models.base import Batch, InputSpec, Model, as_float32

BATCH_SIZE = 64  # on CPU, batches of 256 images ran conv nets 2-4x slower (cache) than 64
# Leaf modules whose output is not a new representation of the input.
_SKIP_FEATURES = (torch.nn.Dropout, torch.nn.Identity, torch.nn.Flatten)


def state_to_numpy(state: dict[str, Any]) -> dict[str, np.ndarray]:
    """Float tensors of a state dict as float32 numpy arrays, insertion (forward) order kept."""
    out: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            out[name] = as_float32(tensor.detach().to(torch.float32).cpu().numpy())
    return out


def _pooled(output: torch.Tensor) -> torch.Tensor:
    """Feature maps (n, c, h, w) average-pooled to at most 4 x 4 positions before flattening.

    Hidden features are compared as probe-by-probe kernels; full-resolution maps cost far more
    (memory and time) than the coarse spatial layout they add.
    """
    if output.ndim == 4 and output.shape[2] * output.shape[3] > 16:
        return torch.nn.functional.adaptive_avg_pool2d(output, (min(4, output.shape[2]), min(4, output.shape[3])))
    return output


def _flatten_outputs(output: Any) -> torch.Tensor:
    """The first tensor of a module output (tuples, dicts, HF ModelOutput), flattened per sample."""
    if isinstance(output, dict) or (hasattr(output, "values") and not isinstance(output, torch.Tensor)):
        output = next(iter(output.values()))
    if isinstance(output, list | tuple):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise ProbeError(f"model returned {type(output).__name__}, not a tensor")
    return output.reshape(output.shape[0], -1) if output.ndim > 1 else output.reshape(-1, 1)


@dataclass
class TorchModuleModel(Model):
    """A torch module: weights, forward, and (for eager modules) features through hooks."""

    module: torch.nn.Module | None = field(default=None, repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        if self.module is None:
            raise ValueError("TorchModuleModel needs a module")
        self.module.eval()
        caps = {"weights", "forward"}
        if self.input_spec.kind == "tensor":
            caps.add("gradients")
        if not isinstance(self.module, torch.jit.ScriptModule):
            caps.add("features")  # TorchScript modules do not support forward hooks
        self.capabilities = frozenset(caps)

    def weights(self) -> dict[str, np.ndarray]:
        """Float parameters and buffers of the module's state dict, float32."""
        assert self.module is not None
        return state_to_numpy(self.module.state_dict())

    def _batches(self, batch: Batch) -> Iterator[torch.Tensor]:
        if not isinstance(batch, np.ndarray):
            raise ProbeError(f"{self.ref} takes {self.input_spec.describe()} inputs, got a text probe set")
        if self.input_spec.shape is not None and tuple(batch.shape[1:]) != self.input_spec.shape:
            raise ProbeError(
                f"probe set of shape {list(batch.shape[1:])} does not fit {self.ref}, which takes "
                f"{self.input_spec.describe()}"
            )
        for start in range(0, len(batch), BATCH_SIZE):
            yield torch.from_numpy(np.ascontiguousarray(batch[start : start + BATCH_SIZE], np.float32)).to(self.device)

    def _run(self, x: torch.Tensor, shape: tuple[int, ...]) -> Any:
        assert self.module is not None
        try:
            return self.module(x)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ProbeError(
                f"probe set of shape {list(shape)} does not fit {self.ref} "
                f"({self.input_spec.describe()}): {first[:200]}"
            ) from exc

    def forward(self, batch: Batch) -> np.ndarray:
        """Outputs for the batch, flattened per sample."""
        outs = []
        with torch.no_grad():
            for x in self._batches(batch):
                outs.append(_flatten_outputs(self._run(x, tuple(x.shape[1:]))).float().cpu().numpy())
        return np.concatenate(outs).astype(np.float32)

    def input_gradients(self, batch: Batch, classes: np.ndarray) -> np.ndarray:
        """Per input, the gradient of its output ``classes[i]`` with respect to it (float32).

        Inputs of one batch do not interact in eval mode, so the gradient of the sum of the chosen
        outputs gives every input's own gradient in one backward pass.
        """
        if "gradients" not in self.capabilities:
            return super().input_gradients(batch, classes)
        chosen = torch.as_tensor(np.asarray(classes), dtype=torch.long).reshape(-1, 1).to(self.device)
        if len(chosen) != len(batch):
            raise ValueError(f"{len(chosen)} classes for {len(batch)} inputs")
        grads = []
        with torch.enable_grad():
            for start, x in zip(range(0, len(batch), BATCH_SIZE), self._batches(batch), strict=True):
                x.requires_grad_(True)
                out = _flatten_outputs(self._run(x, tuple(x.shape[1:])))
                picked = out.gather(1, chosen[start : start + len(x)]).sum()
                (grad,) = torch.autograd.grad(picked, x)
                grads.append(grad.float().cpu().numpy())
        return np.concatenate(grads).astype(np.float32, copy=False)

    def features(self, batch: Batch) -> dict[str, np.ndarray]:
        """Outputs of every leaf module (but dropout/identity), via hooks removed afterwards."""
        if "features" not in self.capabilities:
            return super().features(batch)  # raises AccessError
        return self.forward_and_features(batch)[1]

    def forward_and_features(
        self,
        batch: Batch,
        feature_rows: int | None = None,
        select: Callable[[list[tuple[str, int]]], list[str]] | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Outputs for the batch and hidden features of its first ``feature_rows`` samples (all
        when None), each sample passed once; only the features ``select`` picks (from their names
        and widths in forward order, found by passing the first two samples first) when given.

        Samples past ``feature_rows`` run without hooks, and only the selected modules get one:
        recording a layer costs time (pooling, copying), and hooks turn off fused fast paths
        (e.g. PyTorch's transformer encoder layers).
        """
        if "features" not in self.capabilities:
            return super().forward_and_features(batch, feature_rows, select)
        if feature_rows is not None and feature_rows < len(batch):
            head, feats = self.forward_and_features(batch[:feature_rows], None, select)
            return np.concatenate([head, self.forward(batch[feature_rows:])]), feats
        assert self.module is not None
        names = [
            name
            for name, mod in self.module.named_modules()
            if name and not list(mod.children()) and not isinstance(mod, _SKIP_FEATURES)
        ]
        wanted = None
        if select is not None and len(batch):
            # Two samples, not one: a model that squeezes its batch axis changes shape at one.
            first = self._record(batch[:2], names, None)[1]
            wanted = set(select([(key, value.shape[1]) for key, value in first.items()]))
            names = [n for n in names if any(key.split("#")[0] == n for key in wanted)]
        return self._record(batch, names, wanted)

    def _record(
        self, batch: Batch, names: list[str], wanted: set[str] | None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One pass over the batch with hooks on ``names``, keeping the outputs keyed in
        ``wanted`` (all when None)."""
        collected: dict[str, list[np.ndarray]] = {}
        calls: dict[str, int] = {}
        outs = []
        with torch.no_grad(), _hooks(self.module, names, collected, calls, wanted):
            for x in self._batches(batch):
                calls.clear()
                outs.append(_flatten_outputs(self._run(x, tuple(x.shape[1:]))).float().cpu().numpy())
        feats = {n: np.concatenate(v).astype(np.float32, copy=False) for n, v in collected.items() if v}
        return np.concatenate(outs).astype(np.float32, copy=False), feats


@contextlib.contextmanager
def _hooks(
    module: torch.nn.Module,
    names: list[str],
    sink: dict[str, list[np.ndarray]],
    calls: dict[str, int],
    wanted: set[str] | None = None,
) -> Iterator[None]:
    """Forward hooks on the named submodules that record flattened outputs (those keyed in
    ``wanted`` only, when given); always removed.

    A module called more than once per forward pass (one ReLU object reused) records each call
    separately (``name``, ``name#2``, ...), counted per batch in ``calls``.
    """
    handles = []
    modules = dict(module.named_modules())
    try:
        for name in names:

            def hook(_mod: torch.nn.Module, _inp: Any, out: Any, name: str = name) -> None:
                calls[name] = calls.get(name, 0) + 1
                key = name if calls[name] == 1 else f"{name}#{calls[name]}"
                if wanted is not None and key not in wanted:
                    return
                with contextlib.suppress(ProbeError):
                    first = out if isinstance(out, torch.Tensor) else None
                    flat = _flatten_outputs(_pooled(first) if first is not None else out)
                    sink.setdefault(key, []).append(flat.float().cpu().numpy())

            handles.append(modules[name].register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def module_model(
    module: torch.nn.Module,
    ref: str = "<module>",
    fmt: str = "torch-module",
    input_shape: tuple[int, ...] | None = None,
    sha256: str | None = None,
) -> TorchModuleModel:
    """Wrap an in-process module as a Model."""
    spec = InputSpec("tensor", tuple(input_shape) if input_shape else None)
    return TorchModuleModel(ref=ref, format=fmt, input_spec=spec, sha256=sha256, module=module)
