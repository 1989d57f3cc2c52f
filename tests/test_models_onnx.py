"""The ONNX loader: weights in torch layout (dequantized, fp16 widened), forward, features, errors.

Every model is built here: tiny torch modules exported with the TorchScript exporter, quantized
with onnxruntime's quantization tools, or graphs written by hand with ``onnx.helper``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from progenitor.errors import AccessError, ModelLoadError, ProbeError  # noqa: E402
from progenitor.models import load  # noqa: E402
from progenitor.models import onnx_format as onnx_mod  # noqa: E402
from progenitor.models.onnx_format import open_onnx  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
    ).eval()


def _cnn() -> torch.nn.Module:
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 5),
    )
    with torch.no_grad():  # non-trivial running statistics, so folding BN changes the conv
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.2, 0.2)
    return net.eval()


def _export(module: torch.nn.Module, x: torch.Tensor, path: Path, dynamic: bool = True) -> Path:
    axes = {"x": {0: "n"}, "y": {0: "n"}} if dynamic else None
    names = {"input_names": ["x"], "output_names": ["y"]}
    torch.onnx.export(module, (x,), str(path), dynamo=False, dynamic_axes=axes, **names)
    return path


def _probes(shape: tuple[int, ...], n: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Float ONNX exports of the MLP and the CNN, with their torch modules."""
    root = tmp_path_factory.mktemp("onnx")
    mlp, cnn = _mlp(), _cnn()
    return {
        "mlp": mlp,
        "cnn": cnn,
        "mlp_path": _export(mlp, torch.randn(2, 8), root / "mlp.onnx"),
        "cnn_path": _export(cnn, torch.randn(2, 1, 8, 8), root / "cnn.onnx"),
        "root": root,
    }


def _torch_out(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


# -- float models ---------------------------------------------------------------------------------


def test_mlp_loads_by_suffix_and_prefix_with_exact_weights(models: dict) -> None:
    path = str(models["mlp_path"])
    for model in (load(path), load("onnx:" + path)):
        assert model.format == "onnx"
        assert model.access == "white"
        assert model.capabilities == frozenset({"weights", "forward", "features"})
        assert model.input_spec.shape == (8,)
        assert model.sha256 is not None and len(model.sha256) == 64
        weights = model.weights()
        state = models["mlp"].state_dict()
        assert list(weights) == list(state)  # same names, forward order
        for name, tensor in state.items():
            assert weights[name].dtype == np.float32
            np.testing.assert_array_equal(weights[name], tensor.numpy())
        assert model.info()["n_params"] == sum(t.numel() for t in state.values())


def test_forward_matches_torch_and_batches(models: dict) -> None:
    model = load(str(models["mlp_path"]))
    x = _probes((8,), n=600)  # more than one 256-row batch
    out = model.forward(x)
    assert out.shape == (600, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, _torch_out(models["mlp"], x), atol=1e-4)

    cnn = load(str(models["cnn_path"]))
    assert cnn.input_spec.shape == (1, 8, 8)
    x = _probes((1, 8, 8))
    np.testing.assert_allclose(cnn.forward(x), _torch_out(models["cnn"], x), atol=1e-4)


def test_cnn_weights_pair_with_folded_batchnorm(models: dict) -> None:
    weights = load(str(models["cnn_path"])).weights()
    net = models["cnn"]
    conv, bn, fc = net[0], net[1], net[4]
    shapes = [w.shape for w in weights.values()]
    # The exporter folds BatchNorm into the conv: conv weight, conv bias, then the linear layer.
    assert shapes == [(4, 1, 3, 3), (4,), (5, 144), (5,)]
    gain = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    folded_w = (conv.weight * gain[:, None, None, None]).detach().numpy()
    folded_b = ((conv.bias - bn.running_mean) * gain + bn.bias).detach().numpy()
    conv_w, conv_b, fc_w, fc_b = weights.values()
    np.testing.assert_allclose(conv_w, folded_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(conv_b, folded_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(fc_w, fc.weight.detach().numpy())
    np.testing.assert_array_equal(fc_b, fc.bias.detach().numpy())


def test_features_are_hidden_layers_with_n_rows(models: dict) -> None:
    model = load(str(models["cnn_path"]))
    x = _probes((1, 8, 8), n=5)
    feats = model.features(x)
    assert len(feats) >= 3
    assert all(v.shape[0] == 5 and v.ndim == 2 and v.dtype == np.float32 for v in feats.values())
    net = models["cnn"]
    with torch.no_grad():
        relu = net[:3](torch.from_numpy(x)).reshape(5, -1).numpy()
    relu_names = [name for name in feats if "Relu" in name]
    assert relu_names, feats.keys()
    np.testing.assert_allclose(feats[relu_names[0]], relu, atol=1e-4)
    assert list(feats)[-1] == "y"  # graph order: the last layer comes last
    assert model.features(x).keys() == feats.keys()  # the feature graph is cached and stable


def test_features_are_capped_and_evenly_spread(tmp_path: Path) -> None:
    torch.manual_seed(2)
    layers: list[torch.nn.Module] = []
    for _ in range(30):
        layers += [torch.nn.Linear(4, 4), torch.nn.ReLU()]
    deep = torch.nn.Sequential(*layers).eval()
    model = load(str(_export(deep, torch.randn(2, 4), tmp_path / "deep.onnx")))
    feats = model.features(_probes((4,), n=3))
    assert len(feats) == onnx_mod.MAX_FEATURES
    assert list(feats)[-1] == "y"


def test_fixed_batch_of_one_runs_sample_by_sample(tmp_path: Path, models: dict) -> None:
    path = _export(models["mlp"], torch.randn(1, 8), tmp_path / "fixed.onnx", dynamic=False)
    model = load(str(path))
    x = _probes((8,), n=5)
    np.testing.assert_allclose(model.forward(x), _torch_out(models["mlp"], x), atol=1e-4)
    assert all(v.shape[0] == 5 for v in model.features(x).values())


# -- quantized and half-precision models ----------------------------------------------------------


class _Reader:
    """Calibration data for quantize_static: a few seeded batches."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.batches = iter([{"x": _probes(shape, n=4, seed=s)} for s in range(4)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def _quantize(kind: str, src: Path, dst: Path, shape: tuple[int, ...], per_channel: bool) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    if kind == "dynamic":
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel)
    else:
        fmt = QuantFormat.QDQ if kind == "qdq" else QuantFormat.QOperator
        quantize_static(
            str(src), str(dst), _Reader(shape), quant_format=fmt, per_channel=per_channel
        )


@pytest.mark.parametrize("net", ["mlp", "cnn"])
@pytest.mark.parametrize(
    ("kind", "per_channel"),
    [("dynamic", False), ("dynamic", True), ("qdq", False), ("qdq", True), ("qoperator", False)],
)
def test_quantized_weights_are_dequantized(
    models: dict, tmp_path: Path, net: str, kind: str, per_channel: bool
) -> None:
    shape = (8,) if net == "mlp" else (1, 8, 8)
    dst = tmp_path / f"{net}_{kind}.onnx"
    _quantize(kind, models[f"{net}_path"], dst, shape, per_channel)
    ops = {node.op_type for node in onnx.load(str(dst)).graph.node}
    expected_op = {"dynamic": "MatMulInteger", "qdq": "DequantizeLinear", "qoperator": "QGemm"}
    assert expected_op[kind] in ops
    if net == "cnn" and kind != "qdq":
        assert {"dynamic": "ConvInteger", "qoperator": "QLinearConv"}[kind] in ops

    reference = load(str(models[f"{net}_path"])).weights()
    model = load(str(dst))
    weights = model.weights()
    # Same tensors, same names and shapes (torch layout), no raw int8, scales or zero points.
    assert sorted(weights) == sorted(reference)
    for name, ref in reference.items():
        got = weights[name]
        assert got.dtype == np.float32 and got.shape == ref.shape, name
        # int8 rounding: at most half a step of scale = max|w| / 127.
        assert np.abs(got - ref).max() <= np.abs(ref).max() / 127 * 0.51 + 1e-6, name
    x = _probes(shape)
    out, ref_out = model.forward(x), load(str(models[f"{net}_path"])).forward(x)
    assert out.shape == ref_out.shape
    assert np.abs(out - ref_out).max() < 0.1 * np.abs(ref_out).max()
    feats = model.features(x)
    assert feats and all(v.shape[0] == len(x) for v in feats.values())


def test_dynamically_quantized_embedding_table_is_a_weight(tmp_path: Path) -> None:
    """onnxruntime's dynamic quantization stores a table as int8 and dequantizes after the lookup
    (``Gather`` -> ``DequantizeLinear``): the table is still one of the model's weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Flatten(), torch.nn.Linear(24, 4)).eval()
    src = _export(net, torch.randint(0, 50, (2, 3)), tmp_path / "embed.onnx")
    dst = tmp_path / "embed_int8.onnx"
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    graph = onnx.load(str(dst)).graph
    gather = next(n for n in graph.node if n.op_type == "Gather")
    assert any(n.op_type == "DequantizeLinear" and n.input[0] == gather.output[0] for n in graph.node)
    reference, weights = load(str(src)).weights(), load(str(dst)).weights()
    assert sorted(weights) == sorted(reference)
    table = reference["0.weight"]
    assert np.abs(weights["0.weight"] - table).max() <= np.abs(table).max() / 127 * 0.51 + 1e-6
    # Token ids come as a probe array, which holds float32: whole numbers feed the int64 input.
    from progenitor.probes import from_array

    ids = from_array(np.random.default_rng(0).integers(0, 50, (5, 3)))
    with torch.no_grad():
        expected = net(torch.from_numpy(ids.data.astype(np.int64))).numpy()
    np.testing.assert_allclose(load(str(src)).forward(ids.batch()), expected, atol=1e-5)
    with pytest.raises(ProbeError, match="int64"):
        load(str(src)).forward(ids.data + 0.5)


def test_fp16_weights_read_as_float32(models: dict, tmp_path: Path) -> None:
    proto = onnx.load(str(models["mlp_path"]))
    for i, tensor in enumerate(proto.graph.initializer):
        half = numpy_helper.to_array(tensor).astype(np.float16)
        proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(half, tensor.name))
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
    path = tmp_path / "half.onnx"
    onnx.save(proto, str(path))

    model = load(str(path))
    state = models["mlp"].state_dict()
    weights = model.weights()
    assert list(weights) == list(state)
    for name, tensor in state.items():
        assert weights[name].dtype == np.float32
        np.testing.assert_array_equal(weights[name], tensor.numpy().astype(np.float16))
    x = _probes((8,))
    out = model.forward(x)  # float32 probes are cast to the graph's float16 input
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _torch_out(models["mlp"], x), atol=2e-2)


# -- hand-built graphs ----------------------------------------------------------------------------


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(array, name + "_value")
    )


def _hand_graph(path: Path, width: int | str = 4) -> dict[str, np.ndarray]:
    """x (n, 4) -> MatMul(W (4, 3)) + b -> Relu -> * 0.5 -> Reshape -> Gemm(W2 (3, 2), c) -> y.

    W, b and the 0.5 live in Constant nodes, the Reshape target is an int64 Constant, W2 and c
    are initializers; the Gemm has transB=0, so W2 is stored (in, out) too.
    """
    rng = np.random.default_rng(3)
    arrays = {
        "W": rng.standard_normal((4, 3)).astype(np.float32),
        "b": rng.standard_normal(3).astype(np.float32),
        "W2": rng.standard_normal((3, 2)).astype(np.float32),
        "c": rng.standard_normal(2).astype(np.float32),
    }
    nodes = [
        _const("W", arrays["W"]),
        _const("b", arrays["b"]),
        _const("half", np.array(0.5, np.float32)),
        _const("shape", np.array([-1, 3], np.int64)),
        helper.make_node("MatMul", ["x", "W"], ["h0"]),
        helper.make_node("Add", ["h0", "b"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("Mul", ["h2", "half"], ["h3"]),
        helper.make_node("Reshape", ["h3", "shape"], ["h4"]),
        helper.make_node("Gemm", ["h4", "W2", "c"], ["y"], transB=0),
    ]
    graph = helper.make_graph(
        nodes,
        "hand",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        initializer=[
            numpy_helper.from_array(arrays["W2"], "W2"),
            numpy_helper.from_array(arrays["c"], "c"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return arrays


def test_constant_node_weights_in_torch_layout(tmp_path: Path) -> None:
    path = tmp_path / "hand.onnx"
    arrays = _hand_graph(path)
    model = load(str(path))
    weights = model.weights()
    # The int64 shape and the 0.5 scalar are not weights; (in, out) matrices come out (out, in).
    assert list(weights) == ["W", "b", "W2", "c"]
    np.testing.assert_array_equal(weights["W"], arrays["W"].T)
    np.testing.assert_array_equal(weights["W2"], arrays["W2"].T)
    np.testing.assert_array_equal(weights["b"], arrays["b"])
    x = _probes((4,))
    hidden = np.maximum(x @ arrays["W"] + arrays["b"], 0) * 0.5
    np.testing.assert_allclose(model.forward(x), hidden @ arrays["W2"] + arrays["c"], atol=1e-5)
    assert model.input_spec.shape == (4,)


def test_graph_input_of_unknown_rank_runs(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "unknown",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    path = tmp_path / "unknown.onnx"
    onnx.save(proto, str(path))
    model = load(str(path))
    assert model.input_spec.shape is None
    x = _probes((2, 3))
    np.testing.assert_array_equal(model.forward(x), np.maximum(x, 0).reshape(len(x), -1))


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, str(path))
    return path


def test_hand_quantized_matmuls_dequantize_and_transpose(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    q = rng.integers(0, 256, (4, 3)).astype(np.uint8)  # (in, out), per-column scales
    scale = np.array([0.01, 0.02, 0.03], np.float32)
    zero = np.array([128, 120, 130], np.uint8)
    expected = ((q.astype(np.float32) - zero) * scale).T
    init = [
        numpy_helper.from_array(q, "W_quantized"),
        numpy_helper.from_array(scale, "W_scale"),
        numpy_helper.from_array(zero, "W_zero_point"),
        numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "x_zero"),
        numpy_helper.from_array(np.array(0.1, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "y_zero"),
        numpy_helper.from_array(np.array(0.02, np.float32), "renamed"),  # a scale, not "W_scale"
    ]
    qmm_inputs = ["xq", "x_scale", "x_zero", "W_quantized", "W_scale", "W_zero_point"]
    qmm_inputs += ["y_scale", "y_zero"]
    x_in = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])]
    y_out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])]
    qlinear = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
            helper.make_node("QLinearMatMul", qmm_inputs, ["yq"]),
            helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zero"], ["y"]),
        ],
        "qlinear",
        x_in,
        y_out,
        initializer=init[:7],
    )
    model = load(str(_save(qlinear, tmp_path / "qlinear.onnx")))
    weights = model.weights()
    assert list(weights) == ["W"]
    np.testing.assert_allclose(weights["W"], expected, rtol=1e-6)
    x = _probes((4,), n=3)
    assert model.forward(x).shape == (3, 3)
    feats = model.features(x)  # the int8 output of QLinearMatMul, dequantized
    assert list(feats) == ["yq"]
    np.testing.assert_allclose(feats["yq"], model.forward(x), atol=1e-6)

    # Dynamic quantization whose weight scale is found by following the graph, not by its name.
    integer = helper.make_graph(
        [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
            helper.make_node("MatMulInteger", ["xq", "W_quantized", "xz", "W_zero_point"], ["i"]),
            helper.make_node("Cast", ["i"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["xs", "renamed"], ["s"]),
            helper.make_node("Mul", ["f", "s"], ["y"]),
        ],
        "integer",
        x_in,
        y_out,
        initializer=[init[0], init[2], init[7]],
    )
    weights = load(str(_save(integer, tmp_path / "integer.onnx"))).weights()
    assert list(weights) == ["W"]
    np.testing.assert_allclose(weights["W"], (q.astype(np.float32) - zero).T * 0.02, rtol=1e-6)


def test_unrunnable_or_multi_input_graph_opens_weights_only(tmp_path: Path) -> None:
    w = np.ones((2, 2), np.float32)
    graphs = {
        "custom": helper.make_graph(
            [helper.make_node("Mystery", ["x", "w"], ["y"], domain="example.custom")],
            "custom",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
            initializer=[numpy_helper.from_array(w, "w")],
        ),
        "two_inputs": helper.make_graph(
            [
                helper.make_node("MatMul", ["x", "w"], ["h"]),
                helper.make_node("Add", ["h", "z"], ["y"]),
            ],
            "two",
            [
                helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2]),
                helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 2]),
            ],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
            initializer=[numpy_helper.from_array(w, "w")],
        ),
    }
    for name, graph in graphs.items():
        opsets = [helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)]
        proto = helper.make_model(graph, opset_imports=opsets)
        proto.ir_version = 8
        path = tmp_path / f"{name}.onnx"
        onnx.save(proto, str(path))
        model = load(str(path))
        assert model.capabilities == frozenset({"weights"}), name
        assert list(model.weights()) == ["w"]
        with pytest.raises(AccessError):
            model.forward(_probes((2,)))


# -- errors ---------------------------------------------------------------------------------------


def _one_line_error(path: Path) -> str:
    with pytest.raises(ModelLoadError) as info:
        load(str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_bad_files_raise_model_load_error(models: dict, tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    _one_line_error(missing)
    with pytest.raises(ModelLoadError, match=r"missing\.onnx"):
        open_onnx(str(missing))

    noise = tmp_path / "noise.onnx"
    noise.write_bytes(np.random.default_rng(4).bytes(2048))
    _one_line_error(noise)

    data = models["mlp_path"].read_bytes()
    for cut in (len(data) // 2, len(data) - 3, 10):
        truncated = tmp_path / f"truncated_{cut}.onnx"
        truncated.write_bytes(data[:cut])
        _one_line_error(truncated)
        with pytest.raises(ModelLoadError):
            load("onnx:" + str(truncated))

    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    _one_line_error(empty)


def test_probes_that_do_not_fit_raise_probe_error(models: dict, tmp_path: Path) -> None:
    model = load(str(models["cnn_path"]))
    with pytest.raises(ProbeError, match=r"\[1, 9, 9\].*\[1, 8, 8\]"):
        model.forward(_probes((1, 9, 9)))
    with pytest.raises(ProbeError, match=r"\[64\]"):
        model.features(_probes((64,)))
    with pytest.raises(ProbeError, match="text"):
        model.forward(["a cat", "a dog"])
    with pytest.raises(ProbeError, match="<U"):
        model.forward(np.full((2, 1, 8, 8), "x"))

    # A graph with a dynamic feature axis: only onnxruntime knows the probe does not fit.
    path = tmp_path / "hand.onnx"
    _hand_graph(path, width="d")
    hand = load(str(path))
    assert hand.input_spec.shape is None
    with pytest.raises(ProbeError, match=r"\[5\]"):
        hand.forward(_probes((5,)))


def test_input_shape_option(models: dict) -> None:
    with pytest.raises(ModelLoadError, match="input_shape"):
        load(str(models["mlp_path"]), input_shape=(9,))
    assert load(str(models["mlp_path"]), input_shape=(8,)).input_spec.shape == (8,)
