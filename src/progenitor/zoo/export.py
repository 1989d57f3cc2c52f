"""Writing zoo models in portable formats, and running exported ONNX files.

Formats: safetensors (a state dict, loaded with an architecture factory), TorchScript (self-
contained, used where the shape differs from every registered factory), ONNX (exported with the
TorchScript-based exporter, ``dynamo=False``) and int8 ONNX (static QDQ quantization with
``onnxruntime.quantization``). Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from progenitor._extras import require
from progenitor.zoo.archs import INPUT_SHAPE

ONNX_OPSET = 17


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' and quantizer's warnings (they log to the root logger)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def save_safetensors(model: nn.Module, path: Path, half: bool = False, metadata: dict[str, str] | None = None) -> None:
    """Write the model's state dict as safetensors (float tensors as fp16 when ``half``)."""
    from safetensors.torch import save_file

    state = {}
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.half()
        state[key] = tensor
    save_file(state, str(path), metadata=metadata)


def save_torchscript(model: nn.Module, path: Path) -> None:
    """Write a scripted copy of the model (weights and code, no Python objects)."""
    scripted = torch.jit.script(model.eval())
    scripted.save(str(path))


def export_onnx(model: nn.Module, path: Path, input_shape: tuple[int, ...] = INPUT_SHAPE) -> None:
    """Export to ONNX with a dynamic batch axis (input ``input``, output ``logits``)."""
    model.eval()
    with _quiet():
        torch.onnx.export(
            model,
            (torch.zeros(1, *input_shape),),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=ONNX_OPSET,
        )


def quantize_onnx_int8(src: Path, dst: Path, calibration: np.ndarray) -> None:
    """Static int8 quantization (QDQ, per-channel int8 weights, uint8 activations).

    Args:
        src: float ONNX model.
        dst: where to write the quantized model.
        calibration: inputs whose activation ranges set the activation scales.
    """
    quant = require("onnxruntime.quantization", "onnx")

    class Reader(quant.CalibrationDataReader):
        def __init__(self) -> None:
            batches = [calibration[i : i + 64] for i in range(0, len(calibration), 64)]
            self._feeds = iter({"input": np.ascontiguousarray(b, np.float32)} for b in batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with _quiet():
        quant.quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=quant.QuantFormat.QDQ,
            per_channel=True,
            weight_type=quant.QuantType.QInt8,
            activation_type=quant.QuantType.QUInt8,
        )


def onnx_logits(path: Path, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Run an ONNX classifier with onnxruntime on ``x``; float32 ``(n, k)``."""
    ort = require("onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outs = []
    for start in range(0, len(x), batch_size):
        batch = np.ascontiguousarray(x[start : start + batch_size], np.float32)
        outs.append(session.run(None, {name: batch})[0])
    return np.concatenate(outs).astype(np.float32)
