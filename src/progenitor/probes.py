"""Probe sets: the inputs shown to models, identified by a content hash.

A probe set is a ``.npy`` array (float, one row per input), a folder of images, a text file (one
text per line), or a named preset (``progenitor.probes.list_presets()``). Two DNAs are comparable
on probe-based genes only when their probe sets have the same hash.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from progenitor.errors import ProbeError
from progenitor.models.base import Batch, InputSpec, Model

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
DEFAULT_SIZE = 128

MAX_PRESET_PROBES = 100_000  # a generated probe set larger than this is a typo, not a plan


@dataclass(frozen=True)
class ProbeSet:
    """A named, hashed set of inputs: a float32 array ``(n, ...)`` or a tuple of texts."""

    name: str
    kind: Literal["tensor", "text"]
    data: np.ndarray | tuple[str, ...] = field(repr=False)
    # The true class of each probe (int64, one per probe), when known: genes that ask which
    # mistakes two models share read them. Not part of ``hash`` (the inputs are the probe set).
    labels: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def labels_hash(self) -> str | None:
        """sha256 of the labels (None without labels)."""
        if self.labels is None:
            return None
        return hashlib.sha256(b"labels\0" + np.ascontiguousarray(self.labels, dtype="<i8").tobytes()).hexdigest()

    def __len__(self) -> int:
        return len(self.data)

    @functools.cached_property
    def hash(self) -> str:
        """sha256 of the content (dtype, shape and bytes for arrays; UTF-8 lines for texts).

        Computed once per probe set (its inputs are not changed after it is made)."""
        digest = hashlib.sha256(self.kind.encode() + b"\0")
        if isinstance(self.data, np.ndarray):
            digest.update(str(self.data.dtype.str).encode() + str(self.data.shape).encode())
            digest.update(np.ascontiguousarray(self.data).tobytes())
        else:
            digest.update("\n".join(self.data).encode())
        return digest.hexdigest()

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        """Per-input shape for tensor probes, None for texts."""
        return tuple(self.data.shape[1:]) if isinstance(self.data, np.ndarray) else None

    def describe(self) -> str:
        """Human-readable summary used in errors and evidence."""
        if self.kind == "text":
            return f"probe set {self.name!r} ({len(self)} texts)"
        labelled = ", labelled" if self.labels is not None else ""
        return f"probe set {self.name!r} ({len(self)} x {list(self.sample_shape or ())}{labelled})"

    def batch(self) -> Batch:
        """The inputs in the form ``Model.forward`` takes."""
        return self.data if isinstance(self.data, np.ndarray) else list(self.data)

    def info(self) -> dict[str, object]:
        """What a DNA records about its probes."""
        return {
            "name": self.name,
            "hash": self.hash,
            "n": len(self),
            "kind": self.kind,
            "shape": list(self.sample_shape) if self.sample_shape else None,
        }


def from_array(array: np.ndarray, name: str = "array", labels: np.ndarray | None = None) -> ProbeSet:
    """A tensor probe set from an array ``(n, ...)``; integer arrays are cast to float32.
    ``labels``: the true class of each probe (non-negative integers, one per probe), if known."""
    array = np.asarray(array)
    if array.ndim < 2 or len(array) == 0:
        raise ProbeError(f"probe array {name!r} must be (n, ...) with n > 0, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ProbeError(f"probe array {name!r} has dtype {array.dtype}, expected numbers")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ProbeError(f"probe array {name!r} holds NaN or infinite values")
    return ProbeSet(name, "tensor", array, None if labels is None else check_labels(labels, len(array), name))


def check_labels(labels: np.ndarray, n: int, name: str) -> np.ndarray:
    """``labels`` as a read-only int64 vector of ``n`` non-negative classes, or ProbeError."""
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer) or (n and labels.min() < 0):
        raise ProbeError(
            f"labels of probe set {name!r} must be {n} non-negative integers, got {labels.dtype} {labels.shape}"
        )
    labels = labels.astype(np.int64)
    labels.setflags(write=False)
    return labels


def labels_path(path: Path) -> Path:
    """Where the labels of the probe array ``path`` live: ``NAME.labels.npy`` beside ``NAME.npy``."""
    return path.with_name(f"{path.stem}.labels.npy")


def from_texts(texts: Sequence[str], name: str = "texts") -> ProbeSet:
    """A text probe set; blank lines are dropped."""
    kept = tuple(t.strip() for t in texts if t.strip())
    if not kept:
        raise ProbeError(f"text probe set {name!r} is empty")
    return ProbeSet(name, "text", kept)


# ---------------------------------------------------------------------------------------- presets

_PRESETS: dict[str, tuple[str, Callable[[tuple[int, ...] | None, int], ProbeSet]]] = {}


def register_preset(name: str, description: str):
    """Register ``fn(shape, n) -> ProbeSet`` as a named preset."""

    def decorate(fn: Callable[[tuple[int, ...] | None, int], ProbeSet]):
        _PRESETS[name] = (description, fn)
        return fn

    return decorate


def list_presets() -> dict[str, str]:
    """Preset names and their descriptions."""
    return {name: desc for name, (desc, _) in sorted(_PRESETS.items())}


@register_preset("smooth-noise", "seeded smoothed-noise images in [0,1] of the model's input shape")
def _smooth_noise(shape: tuple[int, ...] | None, n: int) -> ProbeSet:
    if shape is None:
        raise ProbeError(
            "preset 'smooth-noise' needs the model's input shape; pass --input-shape (e.g. 1,28,28) or --probes FILE"
        )
    rng = np.random.default_rng(20240521)
    x = rng.random((n, *shape), dtype=np.float32)
    if len(shape) == 3:  # images: average neighbouring pixels so probes have spatial structure
        for axis in (2, 3):
            x = (x + np.roll(x, 1, axis=axis) + np.roll(x, -1, axis=axis)) / 3.0
    return ProbeSet(f"smooth-noise:{n}", "tensor", x.astype(np.float32))


_WORDS = [
    "the",
    "a",
    "model",
    "river",
    "quiet",
    "bright",
    "data",
    "city",
    "learns",
    "slowly",
    "music",
    "old",
    "new",
    "light",
    "stone",
    "reads",
    "about",
    "under",
    "paper",
    "market",
    "green",
    "small",
    "large",
    "garden",
    "train",
    "story",
    "winter",
    "because",
    "night",
    "between",
    "history",
    "simple",
    "clear",
    "film",
    "great",
    "bad",
    "strange",
    "friend",
    "science",
    "open",
    "cold",
]


@register_preset("sentences", "seeded pseudo-sentences from a fixed English word list")
def _sentences(_shape: tuple[int, ...] | None, n: int) -> ProbeSet:
    rng = np.random.default_rng(20240521)
    texts = [" ".join(rng.choice(_WORDS, size=int(rng.integers(5, 16)))) for _ in range(n)]
    return ProbeSet(f"sentences:{n}", "text", tuple(texts))


# ---------------------------------------------------------------------------------------- loading


def load_probes(
    spec: str | Path | np.ndarray | Sequence[str] | ProbeSet | None,
    input_spec: InputSpec | None = None,
    n: int = DEFAULT_SIZE,
) -> ProbeSet:
    """Resolve a probe specification into a ProbeSet.

    Args:
        spec: a ProbeSet, an array, a list of texts, a path (``.npy``, image folder, text file),
            a preset name (``name`` or ``name:N``), or None for the default preset that fits
            ``input_spec`` (``sentences`` for text models, ``smooth-noise`` otherwise).
        input_spec: the input of the model the probes are for (used by presets).
        n: number of probes a preset draws.
    """
    if isinstance(spec, ProbeSet):
        return spec
    if isinstance(spec, np.ndarray):
        return from_array(spec)
    if isinstance(spec, list | tuple):
        return from_texts(spec)
    if spec is None:
        spec = "sentences" if input_spec is not None and input_spec.kind == "text" else "smooth-noise"
    text = str(spec)
    name, _, count = text.partition(":")
    if name in _PRESETS and not Path(text).exists():
        if count and not (count.isdigit() and 1 <= int(count) <= MAX_PRESET_PROBES):
            raise ProbeError(f"{text}: the count after ':' must be a whole number from 1 to {MAX_PRESET_PROBES}")
        return _PRESETS[name][1](input_spec.shape if input_spec else None, int(count) if count else n)
    return _load_path(Path(text))


def _load_path(path: Path) -> ProbeSet:
    if not path.exists():
        presets = ", ".join(_PRESETS)
        raise ProbeError(f"{path}: no such probe file or folder, and not a preset ({presets})")
    if path.is_dir():
        return _load_images(path)
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
            labelled = labels_path(path)
            labels = np.load(labelled, allow_pickle=False) if labelled.is_file() else None
        except (ValueError, OSError, EOFError) as exc:
            raise ProbeError(f"{path}: not a readable .npy array, or its labels are not ({exc})") from exc
        return from_array(array, path.name, labels)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError) as exc:
        raise ProbeError(f"{path}: not a UTF-8 text file of probes (one per line)") from exc
    return from_texts(lines, path.name)


def _load_images(folder: Path) -> ProbeSet:
    """Images of a folder, sorted by name, as float32 in [0,1], channels first; one shape only."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ProbeError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    try:
        from PIL import Image
    except ImportError as exc:
        raise ProbeError("reading image folders needs Pillow: pip install 'progenitor[plot]'") from exc
    arrays = []
    for file in files:
        try:
            with Image.open(file) as img:
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except OSError as exc:
            raise ProbeError(f"{file}: not a readable image") from exc
        arrays.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ProbeError(f"{folder}: images have different shapes {sorted(shapes)}")
    return from_array(np.stack(arrays), folder.name)


def check_fits(probes: ProbeSet, model: Model) -> None:
    """Raise ProbeError naming both when the probes cannot be the model's input."""
    spec = model.input_spec
    if spec.kind != probes.kind:
        raise ProbeError(f"{probes.describe()} does not fit {model.ref}, which takes {spec.describe()}")
    if spec.kind == "tensor" and spec.shape is not None and probes.sample_shape != spec.shape:
        raise ProbeError(f"{probes.describe()} does not fit {model.ref}, which takes {spec.describe()}")
