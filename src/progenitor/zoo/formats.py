"""How each zoo format is written, reopened for further derivation, and evaluated.

Every format registers a :class:`FormatIO`: the file suffix (empty for directories), a writer, a
reloader (rebuilds the in-memory module a child is derived from; None for exports, which are
leaves) and the options ``progenitor.models.load`` needs to open the file. Each modality registers
an evaluator that measures a model's accuracy on its task's test part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from progenitor.errors import ProgenitorError
from progenitor.zoo import export
from progenitor.zoo.archs import INPUT_SHAPE, ZooNet, create_arch, factory_ref
from progenitor.zoo.data import get_part
from progenitor.zoo.derivations import Built
from progenitor.zoo.train import accuracy, predict_logits

Writer = Callable[[Built, Path], None]
Reloader = Callable[[Path, dict[str, Any]], Built]


@dataclass(frozen=True)
class FormatIO:
    """A zoo output format.

    Attributes:
        name: the zoo's format name (``Built.save_as``).
        loader_format: the ``progenitor.models`` format that opens it (recorded in the manifest).
        suffix: file suffix, or ``""`` for a directory.
        write: ``write(built, path)``.
        reload: ``reload(path, record) -> Built`` or None when the format is a leaf.
        load_options: ``load_options(record) -> dict`` for ``progenitor.models.load``.
    """

    name: str
    loader_format: str
    suffix: str
    write: Writer
    reload: Reloader | None
    load_options: Callable[[dict[str, Any]], dict[str, Any]]


_FORMATS: dict[str, FormatIO] = {}
_EVALUATORS: dict[str, Callable[[Built, Path], float]] = {}
_DESCRIBERS: dict[str, Callable[[Built], dict[str, Any]]] = {}


def register_format_io(io: FormatIO) -> None:
    """Add a format (text formats register from :mod:`progenitor.zoo.text`)."""
    _FORMATS[io.name] = io


def get_format_io(name: str) -> FormatIO:
    """The format registered as ``name``."""
    if name not in _FORMATS:
        raise ProgenitorError(f"zoo format {name!r} is not available")
    return _FORMATS[name]


def register_evaluator(modality: str, fn: Callable[[Built, Path], float]) -> None:
    """Set the accuracy measure of a modality: ``fn(built, written_path) -> float``."""
    _EVALUATORS[modality] = fn


def register_describer(modality: str, fn: Callable[[Built], dict[str, Any]]) -> None:
    """Set how a modality reports ``num_classes`` (output width) and ``arch_config``."""
    _DESCRIBERS[modality] = fn


def describe(built: Built) -> dict[str, Any]:
    """``num_classes``, ``arch_config`` and any modality-specific fields for the manifest."""
    return _DESCRIBERS[built.modality](built)


def evaluate(built: Built, path: Path) -> float:
    """Accuracy of a built model on its task's test part (measured on the written file for
    exports)."""
    return _EVALUATORS[built.modality](built, path)


# ---------------------------------------------------------------- image formats

EVAL_LIMIT = 2000


def _image_options(record: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"input_shape": list(INPUT_SHAPE)}
    if record["format"] == "safetensors":
        options["arch"] = factory_ref(record["architecture"], record["num_classes"])
    return options


def _built_from_state(state: dict[str, torch.Tensor], record: dict[str, Any]) -> Built:
    module: ZooNet = create_arch(record["architecture"], record["num_classes"], **record["arch_config"])
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    module.eval()
    return Built(
        module, record["architecture"], record["task"], record["data"], save_as=record["zoo_format"], modality="image"
    )


def _reload_safetensors(path: Path, record: dict[str, Any]) -> Built:
    from safetensors.torch import load_file

    return _built_from_state(load_file(str(path)), record)


def _reload_torchscript(path: Path, record: dict[str, Any]) -> Built:
    scripted = torch.jit.load(str(path), map_location="cpu")
    return _built_from_state(dict(scripted.state_dict()), record)


def _write_onnx_int8(built: Built, path: Path) -> None:
    float_path = path.with_name(path.name + ".float.onnx")
    try:
        export.export_onnx(built.module, float_path)
        calibration = get_part(built.task, "derive", built.facts.get("calibration_n", 512)).x
        export.quantize_onnx_int8(float_path, path, calibration)  # type: ignore[arg-type]
    finally:
        float_path.unlink(missing_ok=True)


for _io in (
    FormatIO(
        "safetensors",
        "safetensors",
        ".safetensors",
        lambda b, p: export.save_safetensors(b.module, p),
        _reload_safetensors,
        _image_options,
    ),
    FormatIO(
        "safetensors-fp16",
        "safetensors",
        ".safetensors",
        lambda b, p: export.save_safetensors(b.module, p, half=True),
        _reload_safetensors,
        _image_options,
    ),
    FormatIO(
        "torchscript",
        "torchscript",
        ".pt",
        lambda b, p: export.save_torchscript(b.module, p),
        _reload_torchscript,
        _image_options,
    ),
    FormatIO("onnx", "onnx", ".onnx", lambda b, p: export.export_onnx(b.module, p), None, _image_options),
    FormatIO("onnx-int8", "onnx", ".onnx", _write_onnx_int8, None, _image_options),
):
    register_format_io(_io)


def _evaluate_image(built: Built, path: Path) -> float:
    data = get_part(built.task, "test", EVAL_LIMIT)
    if built.save_as in ("onnx", "onnx-int8"):
        logits = export.onnx_logits(path, data.x)  # type: ignore[arg-type]
    else:
        logits = predict_logits(built.module, data.x)  # type: ignore[arg-type]
    return accuracy(logits, data.y)


register_evaluator("image", _evaluate_image)
register_describer(
    "image", lambda built: {"num_classes": int(built.module.num_classes), "arch_config": dict(built.module.config)}
)
