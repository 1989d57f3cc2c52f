"""ONNX graphs: weights read from the graph, forward and hidden features run with onnxruntime.

Weights are the graph's float constants (initializers and ``Constant`` nodes), in the order the
nodes first use them, in torch layout: the ``(in, out)`` matrix a ``MatMul`` (or a ``Gemm`` with
``transB=0``) multiplies by is transposed to ``(out, in)``; ``Conv`` and ``transB=1`` ``Gemm``
weights already are torch layout. Quantized graphs are dequantized, ``(q - zero_point) * scale``:
QDQ (``DequantizeLinear``), QOperator (``QLinearConv``, ``QLinearMatMul``, ``QGemm``) and dynamic
quantization (``MatMulInteger``, ``ConvInteger``, whose scale sits in a ``Mul`` downstream). A
dequantized weight is named after the float tensor it stands for (``fc.weight_quantized`` gives
``fc.weight``), and its raw integers, scales and zero points are not weights. Integer tensors
(shapes, indices) and scalar constants of non-weight ops (``0.5`` in a GELU) are left out.

Features are the outputs of up to ``MAX_FEATURES`` evenly spaced layer-like nodes (``Conv``,
``Gemm``, ``MatMul``, activations, normalizations, pools, ``Add``), exposed as extra outputs of a
copy of the graph. Only single-input graphs can be run; others open with weights only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from progenitor._extras import require
from progenitor.errors import AccessError, ModelLoadError, ProbeError
from progenitor.models._registry import register_format
from progenitor.models.base import Batch, InputSpec, Model, as_float32, file_sha256

log = logging.getLogger(__name__)

BATCH_SIZE = 256
MAX_FEATURES = 32
# Small and fixed, so several models can run side by side without oversubscribing the CPU.
_THREADS = min(4, os.cpu_count() or 1)

_PROTOBUF_LIMIT = 2**31 - 1  # largest message protobuf serializes (graphs beyond use external data)
# onnx.TensorProto element types (fixed by the ONNX spec): FLOAT, FLOAT16, DOUBLE, BFLOAT16.
_FLOAT_TYPES = frozenset({1, 10, 11, 16})
# Input types a probe array can be cast to; integer inputs (ids) take integer probes only.
_ORT_DTYPES: dict[str, type] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}

# Ops whose constant operands are weights even when they are scalars.
_WEIGHT_OPS = frozenset(
    {
        "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "InstanceNormalization",
        "LayerNormalization", "GroupNormalization", "Gather", "LSTM", "GRU", "RNN", "PRelu",
    }
)  # fmt: skip
# Operands that are never weights: quantization parameters and resize factors.
_NOT_WEIGHTS: dict[str, tuple[int, ...]] = {
    "QuantizeLinear": (1, 2),
    "DequantizeLinear": (1, 2),
    "QLinearConv": (1, 2, 4, 5, 6, 7),
    "QLinearMatMul": (1, 2, 4, 5, 6, 7),
    "QGemm": (1, 2, 4, 5, 7, 8),
    "MatMulInteger": (2, 3),
    "ConvInteger": (2, 3),
    "DynamicQuantizeMatMul": (2, 3),
    "MatMulIntegerToFloat": (2, 3, 4, 5),
    "Resize": (1, 2),
    "Upsample": (1,),
}
# Quantized ops naming their weight's scale and zero point: (weight, scale, zero point, axis).
_QUANT_WEIGHT: dict[str, tuple[int, int, int, int]] = {
    "QLinearConv": (3, 4, 5, 0),
    "QLinearMatMul": (3, 4, 5, -1),
    "QGemm": (3, 4, 5, 0),  # axis 0 for transB=1, else -1 (see _dequantize_graph)
    "DynamicQuantizeMatMul": (1, 2, 3, -1),
    "MatMulIntegerToFloat": (1, 3, 5, -1),
}
# int32 biases of QOperator ops: (bias, input scale); bias scale = input scale * weight scale.
_QUANT_BIAS: dict[str, tuple[int, int]] = {"QLinearConv": (8, 1), "QGemm": (6, 1)}
# Dynamic quantization: (weight, zero point, axis); the scale is found downstream.
_INTEGER_OPS: dict[str, tuple[int, int, int]] = {
    "MatMulInteger": (1, 3, -1),
    "ConvInteger": (1, 3, 0),
}
# The operand stored (in, out) that torch stores (out, in); Gemm/QGemm only when transB=0.
_IN_OUT_OPERAND = {
    "MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3, "DynamicQuantizeMatMul": 1,
    "MatMulIntegerToFloat": 1, "Gemm": 1, "QGemm": 3,
}  # fmt: skip
# QOperator ops whose int8 output is a hidden layer: (output scale, output zero point) inputs.
_QUANT_OUTPUT: dict[str, tuple[int, int]] = {
    "QLinearConv": (6, 7),
    "QLinearMatMul": (6, 7),
    "QGemm": (7, 8),
    "QLinearAdd": (6, 7),
}
_Scale = tuple[float, float] | None
_FEATURE_OPS = frozenset(
    {
        "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Relu", "LeakyRelu", "PRelu", "Elu",
        "Selu", "Gelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Softplus", "Mish",
        "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
        "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    }
)  # fmt: skip


class _Graph:
    """Constants and producer/consumer maps of an ONNX graph's top level."""

    def __init__(self, graph: Any) -> None:
        onnx = require("onnx", "onnx")
        self.nodes = list(graph.node)
        self.consts: dict[str, Any] = {t.name: t for t in graph.initializer}
        self.consumers: dict[str, list[Any]] = {}
        self.producer: dict[str, Any] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
            for name in node.output:
                self.producer[name] = node
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    value = onnx.helper.get_attribute_value(attr)
                    if attr.name == "value":
                        self.consts[node.output[0]] = value
                    elif attr.name in ("value_float", "value_floats"):
                        array = np.asarray(value, dtype=np.float32)
                        self.consts[node.output[0]] = onnx.numpy_helper.from_array(array)

    def is_float(self, name: str) -> bool:
        return name in self.consts and self.consts[name].data_type in _FLOAT_TYPES

    def array(self, name: str) -> np.ndarray | None:
        """The constant ``name`` as numpy (its own dtype), or None if it is not a constant."""
        if name not in self.consts:
            return None
        return np.asarray(require("onnx", "onnx").numpy_helper.to_array(self.consts[name]))


def _dequantize(
    q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int = 0
) -> np.ndarray:
    """``(q - zero) * scale`` per tensor, per axis or per block (scale broadcast along ``axis``)."""
    scale = np.asarray(scale, dtype=np.float32)
    zero = np.zeros_like(scale) if zero is None else np.asarray(zero).astype(np.float32)
    values = q.astype(np.float32)
    if scale.size > 1 and q.ndim > 0:
        if block and scale.ndim == q.ndim:  # blocked (opset 21): one scale per block along axis
            keep = np.arange(q.shape[axis])
            scale = np.take(np.repeat(scale, block, axis), keep, axis)
            zero = np.take(np.repeat(zero, block, axis), keep, axis)
        else:
            if q.shape[axis] != scale.size:  # exporters disagree on the axis; trust the sizes
                axis = next((a for a in range(q.ndim) if q.shape[a] == scale.size), axis)
            shape = [1] * q.ndim
            shape[axis] = scale.size
            scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((values - zero) * scale).astype(np.float32)


def _attr(node: Any, name: str, default: Any) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return require("onnx", "onnx").helper.get_attribute_value(attr)
    return default


def _input(node: Any, index: int) -> str:
    """Name of the node's ``index``-th input, '' when absent (optional inputs may be empty)."""
    return node.input[index] if index < len(node.input) else ""


def _downstream_scale(g: _Graph, node: Any) -> str | None:
    """The weight scale of a dynamically quantized op: ``Mul(Cast(op), Mul(x_scale, w_scale))``."""
    frontier = [node.output[0]]
    for _ in range(3):  # op -> Cast -> Mul, allowing one extra hop
        nxt = []
        for name in frontier:
            for user in g.consumers.get(name, []):
                if user.op_type == "Mul":
                    for other in user.input:
                        if other != name and g.is_float(other):
                            return other
                        maker = g.producer.get(other)
                        if other != name and maker is not None and maker.op_type == "Mul":
                            found = [i for i in maker.input if g.is_float(i)]
                            if found:
                                return found[0]
                nxt.extend(user.output)
        frontier = nxt
    return None


def _float_name(int_name: str, fallback: str) -> str:
    """The float tensor a quantized one stands for: ``w_quantized`` names ``w``."""
    return int_name.removesuffix("_quantized") if int_name.endswith("_quantized") else fallback


def _dequantize_graph(g: _Graph) -> tuple[dict[str, tuple[str, np.ndarray]], set[str]]:
    """Dequantized weights keyed by the tensor their consumer reads, and the names they used up."""
    floats: dict[str, tuple[str, np.ndarray]] = {}
    used: set[str] = set()
    for node in g.nodes:
        op = node.op_type
        used.update(_input(node, i) for i in _NOT_WEIGHTS.get(op, ()))
        if op == "DequantizeLinear":
            q = g.array(node.input[0])
            scale = g.array(_input(node, 1))
            if q is None and scale is not None and scale.size == 1:
                _dequantize_gathered_table(g, node, scale, floats)
            if q is None or scale is None or q.dtype.kind not in "iu":
                continue
            axis = _attr(node, "axis", 1) % max(q.ndim, 1)
            value = _dequantize(
                q, scale, g.array(_input(node, 2)), axis, _attr(node, "block_size", 0)
            )
            floats[node.output[0]] = (_float_name(node.input[0], node.output[0]), value)
        elif op in _QUANT_WEIGHT:
            w, s, z, axis = _QUANT_WEIGHT[op]
            if op == "QGemm" and not _attr(node, "transB", 0):
                axis = -1
            q, scale = g.array(_input(node, w)), g.array(_input(node, s))
            if q is None or scale is None:
                continue
            value = _dequantize(q, scale, g.array(_input(node, z)), axis % max(q.ndim, 1))
            floats[node.input[w]] = (_float_name(node.input[w], node.input[w]), value)
            if op in _QUANT_BIAS:
                b, xs = _QUANT_BIAS[op]
                bias, x_scale = g.array(_input(node, b)), g.array(_input(node, xs))
                if bias is not None and x_scale is not None:
                    bias_scale = np.asarray(x_scale, np.float32) * np.asarray(scale, np.float32)
                    value = _dequantize(bias, bias_scale.reshape(-1), None, 0)
                    floats[node.input[b]] = (_float_name(node.input[b], node.input[b]), value)
        elif op in _INTEGER_OPS:
            w, z, axis = _INTEGER_OPS[op]
            q = g.array(_input(node, w))
            if q is None:
                continue
            base = node.input[w].removesuffix("_quantized")
            scale_name = (
                base + "_scale" if g.is_float(base + "_scale") else _downstream_scale(g, node)
            )
            # Without a scale the integers still carry the weights' pattern, up to one factor.
            scale = g.array(scale_name) if scale_name else np.ones(1, np.float32)
            used.add(scale_name or "")
            value = _dequantize(q, scale, g.array(_input(node, z)), axis % max(q.ndim, 1))
            floats[node.input[w]] = (_float_name(node.input[w], node.input[w]), value)
    used.discard("")
    return floats, used


def _dequantize_gathered_table(
    g: _Graph, node: Any, scale: np.ndarray, floats: dict[str, tuple[str, np.ndarray]]
) -> None:
    """An embedding table quantized whole, dequantized after the lookup (onnxruntime's dynamic
    quantization: int8 table -> ``Gather`` -> ``DequantizeLinear``): the table, dequantized,
    keyed by the ``Gather`` operand that holds it (else the table is not a weight at all)."""
    gather = g.producer.get(node.input[0])
    table = None if gather is None or gather.op_type != "Gather" else g.array(gather.input[0])
    if table is not None and table.dtype.kind in "iu":
        value = _dequantize(table, scale, g.array(_input(node, 2)), 0)
        floats[gather.input[0]] = (_float_name(gather.input[0], gather.input[0]), value)


def _in_out_layout(node: Any, index: int, value: np.ndarray) -> bool:
    """Whether operand ``index`` of ``node`` is a matrix stored ``(in, out)``."""
    if value.ndim != 2 or _IN_OUT_OPERAND.get(node.op_type) != index:
        return False
    return not (node.op_type in ("Gemm", "QGemm") and _attr(node, "transB", 0))


def graph_weights(proto: Any) -> dict[str, np.ndarray]:
    """Float32 weights of an ONNX ``ModelProto`` in torch layout, in the order nodes use them."""
    g = _Graph(proto.graph)
    floats, used = _dequantize_graph(g)
    out: dict[str, np.ndarray] = {}
    done: set[str] = set()

    def add(name: str, key: str, value: np.ndarray) -> None:
        done.add(key)
        out[key if name in out else name] = as_float32(value)

    for node in g.nodes:
        skip = _NOT_WEIGHTS.get(node.op_type, ())
        for index, key in enumerate(node.input):
            if key in done or key in used or index in skip:
                continue
            if key in floats:
                name, value = floats[key]
            elif g.is_float(key):
                name, value = key, as_float32(g.array(key))
                if value.size <= 1 and node.op_type not in _WEIGHT_OPS:
                    continue  # a scalar of arithmetic (eps, 0.5), not a parameter
            else:
                continue
            if _in_out_layout(node, index, value):
                value, name = value.T, name.removesuffix("_Transposed")
            add(name, key, value)
    for key in g.consts:  # float constants no node reads (kept: they may still be parameters)
        if key not in done and key not in used and key not in floats and g.is_float(key):
            value = as_float32(g.array(key))
            if value.size > 1:
                add(key, key, value)
    return out


def _ort_errors() -> tuple[type[BaseException], ...]:
    """Exception classes onnxruntime raises (its own derive from Exception, not RuntimeError)."""
    state = require("onnxruntime", "onnx").capi.onnxruntime_pybind11_state
    own = [v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception)]
    return (RuntimeError, ValueError, TypeError, *own)


def _session(source: str | bytes) -> Any:
    ort = require("onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = _THREADS
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: ORT warns about harmless things (unused inits)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _per_sample(rows: np.ndarray, n: int, fixed: int | None) -> np.ndarray | None:
    """``rows`` flattened to ``(n, d)`` float32, or None if it has no batch axis of length n."""
    if rows.ndim >= 1 and rows.shape[0] == n:
        return as_float32(rows.reshape(n, -1))
    if fixed == 1 and n == 1:  # a batch-of-one graph may drop the batch axis in its output
        return as_float32(rows.reshape(1, -1))
    return None


@dataclass
class OnnxModel(Model):
    """An ONNX graph: weights read from the file, forward and features run by onnxruntime."""

    proto: Any = field(default=None, repr=False)
    session: Any = field(default=None, repr=False)
    _weights: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False)
    _features: tuple[Any, dict[str, _Scale]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        caps = {"weights"}
        if self.session is not None:
            caps |= {"forward", "features"}
        self.capabilities = frozenset(caps)

    def weights(self) -> dict[str, np.ndarray]:
        """Float32 weights in torch layout and node order (dequantized, fp16 widened)."""
        if self._weights is None:
            self._weights = graph_weights(self.proto)
        return dict(self._weights)

    # -- running -------------------------------------------------------------------------------

    @property
    def _graph_input(self) -> Any:
        return self.session.get_inputs()[0]

    @property
    def _fixed_batch(self) -> int | None:
        """The graph's batch size when it is fixed (exported with a static first dimension)."""
        dims = _input_dims(self.proto)
        return dims[0] if dims else None

    def _prepare(self, batch: Batch) -> np.ndarray:
        """The probe batch as the graph's input dtype, or ProbeError when it does not fit."""
        expected = f"{self.ref}, which takes {self.input_spec.describe()}"
        if not isinstance(batch, np.ndarray):
            raise ProbeError(f"a text probe set does not fit {expected}")
        dims, kind = _input_dims(self.proto), self._graph_input.type
        shape = tuple(batch.shape[1:])
        rank_ok = dims is None or len(dims) == batch.ndim
        if not rank_ok or (self.input_spec.shape is not None and shape != self.input_spec.shape):
            raise ProbeError(f"probe set of shape {list(shape)} does not fit {expected}")
        dtype = _ORT_DTYPES.get(kind)
        if dtype in (np.float32, np.float16, np.float64):
            fits = batch.dtype.kind in "fiub"
        else:
            # Probe arrays are held as float32 (``probes.from_array``): whole numbers still fit an
            # integer input (token ids), exactly below 2**24.
            whole = batch.dtype.kind in "iub" or (batch.dtype.kind == "f" and bool(np.all(batch == np.round(batch))))
            fits = dtype is not None and whole
        if not fits:
            raise ProbeError(f"probe set of {batch.dtype} values does not fit {expected} ({kind})")
        return np.ascontiguousarray(batch, dtype=dtype)

    def _chunks(self, x: np.ndarray) -> Iterator[tuple[np.ndarray, int]]:
        """Slices of the batch as the graph takes them, each with its count of real rows."""
        fixed = self._fixed_batch
        step = fixed or BATCH_SIZE
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            real = len(chunk)
            if fixed and real < fixed:  # pad to the fixed batch; the padding rows are dropped
                pad = np.zeros((fixed - real, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            yield chunk, real

    def _run(self, session: Any, names: list[str], x: np.ndarray) -> list[np.ndarray]:
        try:
            return session.run(names, {self._graph_input.name: x})
        except _ort_errors() as exc:
            raise ProbeError(
                f"probe set of shape {list(x.shape[1:])} does not fit {self.ref} "
                f"({self.input_spec.describe()}): {_first_line(exc)}"
            ) from exc

    def forward(self, batch: Batch) -> np.ndarray:
        """The first graph output for each probe, flattened per sample, float32 ``(n, k)``."""
        if self.session is None:
            return super().forward(batch)
        x = self._prepare(batch)
        first = self.session.get_outputs()[0].name
        outs = []
        for chunk, real in self._chunks(x):
            raw = np.asarray(self._run(self.session, [first], chunk)[0])
            if raw.ndim and raw.shape[0] == len(chunk):
                raw = raw[:real]  # drop the padding rows of a fixed-batch graph
            rows = _per_sample(raw, real, self._fixed_batch)
            if rows is None:
                raise ProbeError(f"{self.ref}: output of shape {list(raw.shape)} has no batch axis")
            outs.append(rows)
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    def _feature_session(self) -> tuple[Any, dict[str, _Scale]]:
        """A copy of the graph that also outputs chosen hidden tensors (built once)."""
        if self._features is None:
            onnx = require("onnx", "onnx")
            if self.proto.ByteSize() >= _PROTOBUF_LIMIT:
                raise AccessError(
                    f"{self.ref}: hidden features need an in-memory copy of the graph, which "
                    "protobuf limits to 2 GB; use forward (black-box) or weights (white-box)"
                )
            proto = onnx.ModelProto()
            proto.CopyFrom(self.proto)
            chosen = _feature_tensors(proto)
            outputs = {o.name for o in proto.graph.output}
            for name in chosen:
                if name not in outputs:  # ORT infers the type of a name-only output
                    proto.graph.output.append(onnx.ValueInfoProto(name=name))
            self._features = (_session(proto.SerializeToString()), chosen)
        return self._features

    def features(self, batch: Batch) -> dict[str, np.ndarray]:
        """Hidden activations of layer-like nodes, ``{tensor name: (n, d)}`` in graph order."""
        if self.session is None:
            return super().features(batch)
        x = self._prepare(batch)
        session, chosen = self._feature_session()
        if not chosen:
            return {}
        names = list(chosen)
        collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
        dropped: set[str] = set()
        for chunk, real in self._chunks(x):
            for name, raw in zip(names, self._run(session, names, chunk), strict=True):
                raw = np.asarray(raw)
                scale = chosen[name]
                if scale is not None and raw.dtype.kind in "iu":  # a QOperator op's output
                    raw = (raw.astype(np.float32) - scale[1]) * scale[0]
                ok = raw.dtype.kind == "f" and raw.ndim >= 2 and raw.shape[0] == len(chunk)
                if not ok:  # no batch axis (reshaped, transposed): not a per-sample feature
                    dropped.add(name)
                    continue
                collected[name].append(as_float32(raw[:real].reshape(real, -1)))
        return {n: np.concatenate(v) for n, v in collected.items() if v and n not in dropped}


def _feature_tensors(proto: Any) -> dict[str, _Scale]:
    """Outputs of layer-like nodes that are (or may be) float of rank >= 2, evenly thinned.

    Outputs of QOperator ops (int8) are kept with the (scale, zero point) that dequantizes them.
    """
    onnx = require("onnx", "onnx")
    try:
        inferred = onnx.shape_inference.infer_shapes(proto).graph
        known = {v.name: v.type.tensor_type for v in [*inferred.value_info, *inferred.output]}
    except Exception:  # inference is only a pre-filter (it fails on custom ops, > 2 GB)
        known = {}
    g = _Graph(proto.graph)
    chosen: dict[str, _Scale] = {}
    for node in proto.graph.node:
        scale: _Scale = None
        if node.op_type in _QUANT_OUTPUT:
            s, z = (g.array(_input(node, i)) for i in _QUANT_OUTPUT[node.op_type])
            if s is None or s.size != 1:
                continue
            scale = (float(s.reshape(-1)[0]), 0.0 if z is None else float(z.reshape(-1)[0]))
        elif node.op_type not in _FEATURE_OPS or not node.output:
            continue
        kind = known.get(node.output[0])
        if kind is not None and kind.HasField("shape") and len(kind.shape.dim) < 2:
            continue
        if scale is None and kind is not None and kind.elem_type not in (0, *_FLOAT_TYPES):
            continue
        chosen[node.output[0]] = scale
    if len(chosen) > MAX_FEATURES:
        names = list(chosen)
        picks = np.unique(np.linspace(0, len(names) - 1, MAX_FEATURES).round().astype(int))
        chosen = {names[i]: chosen[names[i]] for i in picks}
    return chosen


def _input_dims(proto: Any) -> list[int | None] | None:
    """Dimensions of the graph's first input (None where symbolic), or None if its rank is unknown.

    Read from the graph, not from onnxruntime, which reports an unknown rank as ``[]``.
    """
    inits = {t.name for t in proto.graph.initializer}  # IR < 4 lists initializers as inputs
    for value in proto.graph.input:
        if value.name in inits:
            continue
        kind = value.type.tensor_type
        if not kind.HasField("shape"):
            return None
        return [d.dim_value if d.dim_value > 0 else None for d in kind.shape.dim]
    return None


def _input_spec(proto: Any, input_shape: Any, target: str) -> InputSpec:
    """Per-sample shape of the graph's first input when static, else the ``input_shape`` option."""
    dims = _input_dims(proto)
    static = tuple(dims[1:]) if dims and all(d is not None for d in dims[1:]) else None
    given = tuple(int(d) for d in input_shape) if input_shape else None
    if static is not None and given is not None and static != given:
        raise ModelLoadError(
            f"{target}: input_shape {list(given)} does not match the graph's input {list(static)}"
        )
    return InputSpec("tensor", static or given)


@register_format("onnx", suffixes=(".onnx",), description="ONNX graph (.onnx), run by onnxruntime")
def open_onnx(target: str, input_shape: Any = None, **_: Any) -> Model:
    """An ``.onnx`` file: weights always; forward and features when onnxruntime can run it."""
    onnx = require("onnx", "onnx")
    from google.protobuf.message import DecodeError  # protobuf is a dependency of onnx

    if not Path(target).is_file():
        raise ModelLoadError(f"{target}: no such file")
    try:
        proto = onnx.load(target)
    except (DecodeError, OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as exc:
        raise ModelLoadError(f"{target}: not a readable ONNX file ({_first_line(exc)})") from exc
    if not proto.graph.node or not proto.graph.output:
        raise ModelLoadError(f"{target}: not an ONNX model (the graph has no nodes or outputs)")
    try:
        session = _session(target)
    except _ort_errors() as exc:
        # The weights are still readable (a custom op, a newer opset): open white-box only.
        log.warning("%s: onnxruntime cannot run it (%s); weights only", target, _first_line(exc))
        session = None
    if session is not None and len(session.get_inputs()) != 1:
        names = ", ".join(i.name for i in session.get_inputs())
        log.warning("%s: takes several inputs (%s); only single-input graphs run", target, names)
        session = None
    return OnnxModel(
        ref=target,
        format="onnx",
        input_spec=_input_spec(proto, input_shape, target),
        sha256=file_sha256(target),
        proto=proto,
        session=session,
    )
