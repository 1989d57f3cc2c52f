"""The one handle every model format is opened into.

Contract shared by every loader (tests in ``tests/test_models_contract.py`` hold each to it):

* ``weights()`` returns float32 numpy arrays keyed by the format's own names, in forward order,
  in torch layout: a dense layer is ``(out, in)``, a convolution ``(out, in, kh, kw)``. Loaders
  of formats that store another layout (ONNX ``MatMul`` keeps ``(in, out)``) transpose to it, and
  dequantize int8 and convert fp16. Integer buffers (step counters, token type ids) are left out.
* ``forward(batch)`` returns float32 outputs of shape ``(n, k)``: one flattened output vector per
  input. ``batch`` is a float32 array ``(n, *input_shape)`` for tensor models, a list of strings
  for text models.
* ``features(batch)`` returns named hidden activations, each ``(n, d)`` (token axes mean-pooled),
  in forward order. Hooks used to get them are always removed, even on error.
* ``input_gradients(batch, classes)`` (differentiable formats only: torch modules) returns, per
  input, the gradient of its output ``classes[i]`` with respect to that input, shaped like it.
* ``access`` is the widest access the format allows: ``white`` (weights), ``gray`` (features),
  ``black`` (outputs only); ``capabilities`` says exactly which calls work.
"""

from __future__ import annotations

import hashlib
from abc import ABC
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from progenitor.errors import AccessError

Access = Literal["white", "gray", "black"]
ACCESS_LEVELS: tuple[Access, ...] = ("black", "gray", "white")
Capability = Literal["weights", "features", "forward", "gradients"]
Batch = np.ndarray | list[str]


@dataclass(frozen=True)
class InputSpec:
    """What a model takes: ``tensor`` inputs of a per-sample ``shape`` (None if unknown) or ``text``."""

    kind: Literal["tensor", "text"] = "tensor"
    shape: tuple[int, ...] | None = None

    def describe(self) -> str:
        """Human-readable form, used in error messages."""
        if self.kind == "text":
            return "text"
        return "tensor of unknown shape" if self.shape is None else f"tensor {list(self.shape)}"


@dataclass
class Model(ABC):
    """A model opened from any format. Subclasses override what their format allows."""

    ref: str
    format: str
    input_spec: InputSpec = field(default_factory=InputSpec)
    sha256: str | None = None
    capabilities: frozenset[str] = frozenset()

    @property
    def access(self) -> Access:
        """Widest access this model allows."""
        if "weights" in self.capabilities:
            return "white"
        if "features" in self.capabilities:
            return "gray"
        return "black"

    def can(self, capability: Capability) -> bool:
        """Whether ``capability`` (``weights``, ``features``, ``forward``, ``gradients``) is available."""
        return capability in self.capabilities

    def weights(self) -> dict[str, np.ndarray]:
        """Named float32 weight arrays in torch layout, forward order (white-box)."""
        raise AccessError(f"{self.ref}: the {self.format} format gives no access to weights")

    def forward(self, batch: Batch) -> np.ndarray:  # noqa: ARG002 - the interface subclasses fill
        """Outputs ``(n, k)`` float32 for a batch of inputs (black-box)."""
        raise AccessError(f"{self.ref}: the {self.format} format cannot be run (no forward)")

    def features(self, batch: Batch) -> dict[str, np.ndarray]:  # noqa: ARG002 - the interface subclasses fill
        """Named hidden activations ``(n, d)`` for a batch of inputs (gray-box)."""
        raise AccessError(f"{self.ref}: the {self.format} format gives no hidden features")

    def input_gradients(self, batch: Batch, classes: np.ndarray) -> np.ndarray:  # noqa: ARG002 - the interface subclasses fill
        """Per input ``i``, d output[i, classes[i]] / d input[i], float32, the batch's shape."""
        raise AccessError(f"{self.ref}: the {self.format} format gives no input gradients")

    def forward_and_features(
        self,
        batch: Batch,
        feature_rows: int | None = None,
        select: Callable[[list[tuple[str, int]]], list[str]] | None = None,  # noqa: ARG002 - for overrides
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Outputs for the batch and features of its first ``feature_rows`` samples (all when
        None); formats that can get both in one pass override it, and those that can record only
        some features record only those ``select`` picks from (name, width) in forward order
        (others return all of them)."""
        return self.forward(batch), self.features(batch if feature_rows is None else batch[:feature_rows])

    def n_params(self) -> int | None:
        """Number of weight values, when weights are available."""
        if not self.can("weights"):
            return None
        return int(sum(w.size for w in self.weights().values()))

    def info(self) -> dict[str, object]:
        """Metadata stored in a DNA: reference, format, hash, size, input and access."""
        return {
            "ref": self.ref,
            "format": self.format,
            "sha256": self.sha256,
            "n_params": self.n_params(),
            "input": self.input_spec.describe(),
            "input_shape": list(self.input_spec.shape) if self.input_spec.shape else None,
            "access": self.access,
        }


def text_batch(batch: Batch, ref: str) -> list[str]:
    """A batch of text inputs as a list of strings (numpy string arrays accepted).

    Raises ProbeError naming the model when the batch holds tensors or non-strings.
    """
    from progenitor.errors import ProbeError

    if isinstance(batch, np.ndarray) and batch.dtype.kind in "US":
        batch = [str(t) for t in batch.reshape(-1)]
    if isinstance(batch, np.ndarray) or not all(isinstance(t, str) for t in batch):
        got = (
            f"a tensor probe set of shape {list(batch.shape[1:])}"
            if isinstance(batch, np.ndarray)
            else "a probe set that is not all strings"
        )
        raise ProbeError(f"{ref} takes text inputs, got {got}")
    return list(batch)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a directory's files (names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def as_float32(array: np.ndarray) -> np.ndarray:
    """A float32 copy-free view where possible (fp16, bf16-as-float, float64 all become float32)."""
    return np.ascontiguousarray(array, dtype=np.float32)
