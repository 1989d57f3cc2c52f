"""Torch loaders: TorchScript, state dicts, safetensors, py: factories, in-process modules."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import progenitor as pg
from progenitor.errors import ModelLoadError, ProbeError, UnsafeFileError


def test_torchscript_forward_matches_module(saved, family, probes_array) -> None:
    model = pg.load(saved["parent"])
    assert model.format == "torchscript" and model.access == "white"
    expected = family.parent(torch.from_numpy(probes_array)).detach().numpy()
    np.testing.assert_allclose(model.forward(probes_array), expected, atol=1e-5)
    assert not model.can("features")  # TorchScript has no hooks


def test_state_dict_weights_only_and_with_arch(saved, family, probes_array) -> None:
    bare = pg.load(saved["state"])
    assert bare.format == "torch" and bare.capabilities == frozenset({"weights"})
    state = family.parent.state_dict()
    assert list(bare.weights()) == list(state)
    np.testing.assert_array_equal(bare.weights()["conv1.weight"], state["conv1.weight"].numpy())
    with pytest.raises(pg.AccessError):
        bare.forward(probes_array)
    full = pg.load(saved["state"], arch="families:small_cnn")
    assert full.can("forward") and full.can("features")
    np.testing.assert_allclose(full.forward(probes_array), pg.load(saved["parent"]).forward(probes_array), atol=1e-5)


def test_safetensors_and_prefix(saved) -> None:
    model = pg.load(f"safetensors:{saved['safetensors']}")
    assert model.format == "safetensors"
    assert model.n_params() == sum(w.size for w in pg.load(saved["state"]).weights().values())
    assert model.sha256 and len(model.sha256) == 64


def test_input_gradients_are_each_inputs_own(saved, probes_array) -> None:
    """A linear model's gradient of output c is row c of its weight, whatever the input; a
    convolutional model's per-input gradients equal those taken one input at a time, also
    through TorchScript; a format without autograd refuses."""
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))
    model = pg.load(linear, input_shape=(1, 8, 8))
    classes = np.arange(len(probes_array)) % 5
    grads = model.input_gradients(probes_array, classes)
    assert grads.shape == probes_array.shape and grads.dtype == np.float32
    weight = linear[1].weight.detach().numpy()
    np.testing.assert_allclose(grads.reshape(len(classes), -1), weight[classes], rtol=1e-6)
    scripted = pg.load(saved["parent"])
    one_by_one = []
    for i, c in enumerate([1, 4, 7]):
        x = torch.from_numpy(probes_array[i : i + 1]).requires_grad_(True)
        one_by_one.append(torch.autograd.grad(scripted.module(x)[0, c], x)[0].numpy())
    np.testing.assert_allclose(
        scripted.input_gradients(probes_array[:3], np.array([1, 4, 7])), np.concatenate(one_by_one), atol=1e-6
    )
    with pytest.raises(pg.AccessError):
        pg.load(lambda b: b.reshape(len(b), -1)[:, :3]).input_gradients(probes_array, classes)


def test_device_is_validated_and_cpu_is_the_default(saved, probes_array, monkeypatch) -> None:
    model = pg.load(saved["parent"], device="cpu")
    assert model.device == torch.device("cpu") == pg.load(saved["parent"]).device
    np.testing.assert_array_equal(model.forward(probes_array), pg.load(saved["parent"]).forward(probes_array))
    with pytest.raises(ModelLoadError, match="not one of cpu, cuda"):
        pg.load(saved["parent"], device="gpu0")
    with pytest.raises(ModelLoadError, match="only cpu and cuda"):
        pg.load(saved["parent"], device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no CUDA device"):
            pg.load(saved["parent"], device="cuda")
    # A format without a torch module cannot follow a GPU request (CUDA faked as present: the
    # refusal is the format's, before any tensor moves).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ModelLoadError, match="runs on the CPU only"):
        pg.load(lambda b: b.reshape(len(b), -1)[:, :3], device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_extraction_on_cuda_agrees_with_the_cpu(saved) -> None:
    """The same DNA up to float rounding, and the same verdicts, on a GPU."""
    probes = saved["probes"]
    for name in ("parent", "fine-tuned", "independent0"):
        cpu = pg.extract(str(saved[name]), probes=str(probes))
        gpu = pg.extract(str(saved[name]), probes=str(probes), device="cuda")
        assert gpu.genes.keys() == cpu.genes.keys()
        for gene in cpu.genes:
            for key, value in cpu.genes[gene].arrays.items():
                other = gpu.genes[gene].arrays[key]
                if value.dtype.kind in "iu":  # arg-max classes: a near tie may fall the other way
                    assert (other == value).mean() >= 0.98, (gene, key)
                else:
                    np.testing.assert_allclose(other.astype(np.float64), value.astype(np.float64), rtol=2e-2, atol=2e-3)
    parent_cpu = pg.extract(str(saved["parent"]), probes=str(probes))
    for name in ("fine-tuned", "independent0"):
        on_cpu = pg.compare(parent_cpu, str(saved[name]), probes=str(probes))
        on_gpu = pg.compare(parent_cpu, str(saved[name]), probes=str(probes), device="cuda")
        assert on_gpu.verdict == on_cpu.verdict


def test_features_hooks_are_removed(family, probes_array) -> None:
    model = pg.load(family.parent, input_shape=(1, 8, 8))
    feats = model.features(probes_array)
    assert {"conv1", "conv2", "fc1", "fc2"} <= set(feats)
    assert all(v.shape[0] == len(probes_array) for v in feats.values())
    assert all(not m._forward_hooks for m in family.parent.modules())


def test_features_of_the_first_rows_only(family, probes_array) -> None:
    """``feature_rows`` records features of the first samples only; outputs cover the whole batch."""
    model = pg.load(family.parent, input_shape=(1, 8, 8))
    rows = len(probes_array) // 2
    outputs, feats = model.forward_and_features(probes_array, feature_rows=rows)
    full = model.features(probes_array[:rows])
    assert set(feats) == set(full) and all(feats[k].shape[0] == rows for k in feats)
    for key, value in full.items():
        np.testing.assert_allclose(feats[key], value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs, model.forward(probes_array), rtol=1e-5, atol=1e-6)
    assert all(not m._forward_hooks for m in family.parent.modules())


def test_selected_features_only_and_equal_to_the_full_record(probes_array) -> None:
    """With ``select``, only the picked features are recorded (a reused module's second call
    included) and they equal the full record's; the selection sees every feature's width."""

    class Reuse(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.act = torch.nn.Linear(64, 16), torch.nn.Linear(16, 8), torch.nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.act(self.a(x.flatten(1)))).relu() + self.act(self.b(self.act(self.a(x.flatten(1)))))

    torch.manual_seed(0)
    model = pg.load(Reuse().eval(), input_shape=(1, 8, 8))
    seen = []

    def select(widths: list[tuple[str, int]]) -> list[str]:
        seen.extend(widths)
        return ["act#3", "b"]

    outputs, picked = model.forward_and_features(probes_array, None, select)
    _, full = model.forward_and_features(probes_array)
    assert ("a", 16) in seen and ("act#3", 8) in seen and len(seen) == len(full) == 7
    assert set(picked) == {"act#3", "b"}
    for key in picked:
        np.testing.assert_array_equal(picked[key], full[key])
    np.testing.assert_allclose(outputs, model.forward(probes_array), rtol=1e-6)


def test_extract_records_only_the_features_genes_read(family, probes_array) -> None:
    """The feature gene's layers, and so the DNA, are those of a full record."""
    from progenitor.genes import get_gene

    dna = pg.extract(family.parent, probes=probes_array, input_shape=(1, 8, 8), learned=False)
    full = pg.load(family.parent, input_shape=(1, 8, 8)).features(probes_array[:128])
    names = get_gene("feature_cka").select_features([(k, v.shape[1]) for k, v in full.items()])
    assert dna.genes["feature_cka"].meta["layers"] == names


def test_hooks_removed_even_on_error(family) -> None:
    model = pg.load(family.parent)
    with pytest.raises(ProbeError, match="does not fit"):
        model.features(np.zeros((2, 3, 5, 5), np.float32))
    assert all(not m._forward_hooks for m in family.parent.modules())


def test_probe_shape_mismatch_names_both(family) -> None:
    model = pg.load(family.parent, input_shape=(1, 8, 8))
    with pytest.raises(ProbeError, match=r"\[1, 28, 28\].*\[1, 8, 8\]"):
        model.forward(np.zeros((2, 1, 28, 28), np.float32))


def test_pickled_object_is_refused(tmp_path, family) -> None:
    path = tmp_path / "whole_model.pt"
    torch.save(family.parent, path)  # pickles the module class: needs code to load
    with pytest.raises(UnsafeFileError, match="safetensors"):
        pg.load(path)


def test_plain_pickle_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": object()}))
    with pytest.raises(ModelLoadError):
        pg.load(f"torch:{path}")


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"PK\x03\x04garbage"])
def test_corrupt_files(tmp_path, content) -> None:
    for suffix in (".pt", ".safetensors"):
        path = tmp_path / f"bad{suffix}"
        path.write_bytes(content)
        with pytest.raises(ModelLoadError):
            pg.load(path)


def test_bytes_of_another_kind_are_not_called_unsafe(tmp_path) -> None:
    path = tmp_path / "random.ckpt"
    path.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(ModelLoadError, match="not a readable torch checkpoint") as info:
        pg.load(f"torch:{path}")
    assert not isinstance(info.value, UnsafeFileError)


def test_truncated_safetensors(tmp_path, saved) -> None:
    data = saved["safetensors"].read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="safetensors"):
        pg.load(path)


def test_missing_and_unknown(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="no such file"):
        pg.load(tmp_path / "nope.pt")
    odd = tmp_path / "model.xyz"
    odd.write_bytes(b"123")
    with pytest.raises(ModelLoadError, match="unknown model format"):
        pg.load(odd)


def test_bad_arch_factory(saved) -> None:
    with pytest.raises(ModelLoadError, match="module:callable"):
        pg.load(saved["state"], arch="no_colon_here")
    with pytest.raises(ModelLoadError, match="cannot import"):
        pg.load(saved["state"], arch="no_such_module_xyz:f")
    with pytest.raises(ModelLoadError, match="do not fit"):
        pg.load(saved["state"], arch="torch.nn:Identity")


def test_py_reference_and_callable(probes_array) -> None:
    model = pg.load("py:families:small_cnn", input_shape=(1, 8, 8))
    assert model.forward(probes_array).shape == (len(probes_array), 10)
    fn = pg.load(lambda x: np.asarray(x).reshape(len(x), -1)[:, :3])
    assert fn.access == "black"
    assert fn.forward(probes_array).shape == (len(probes_array), 3)


def test_features_of_a_module_called_twice(probes_array) -> None:
    """One activation object used at two depths records both calls, not a ragged mix."""

    class Shared(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.act = torch.nn.Linear(64, 32), torch.nn.Linear(32, 16), torch.nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.b(self.act(self.a(x.flatten(1)))))

    feats = pg.load(Shared()).features(probes_array)
    assert feats["act"].shape == (len(probes_array), 32) and feats["act#2"].shape == (len(probes_array), 16)


def test_raw_safetensors_come_back_in_forward_order(tmp_path) -> None:
    """A .safetensors file keeps no module order (its tensors come back sorted by name): layer 10
    of a Sequential would come before layer 2, and the weight genes chain layers in order. The
    loader restores numeric order, so the file and the module's own state dict give one DNA."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    layers = [m for _ in range(6) for m in (torch.nn.Linear(24, 24), torch.nn.ReLU())]
    module = torch.nn.Sequential(torch.nn.Embedding(50, 24), *layers)
    save_file(module.state_dict(), tmp_path / "deep.safetensors")
    torch.save(module.state_dict(), tmp_path / "deep.pt")
    raw, state = pg.load(tmp_path / "deep.safetensors"), pg.load(tmp_path / "deep.pt")
    assert list(raw.weights()) == list(state.weights()) == list(module.state_dict())
    a, b = (pg.extract(m, access="white", learned=False) for m in (raw, state))
    assert pg.score_genes(a, b)["weight_sketch"].similarity == pytest.approx(1.0, abs=1e-3)


def test_lora_adapters_are_not_models(tmp_path) -> None:
    from safetensors.torch import save_file

    adapter = {"base.layers.0.q_proj.lora_A.weight": torch.zeros(2, 16),
               "base.layers.0.q_proj.lora_B.weight": torch.zeros(16, 2)}
    save_file(adapter, tmp_path / "adapter_model.safetensors")
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="LoRA adapter matrices"):
        pg.load(tmp_path / "adapter_model.safetensors")
    with pytest.raises(ModelLoadError, match="adapter without its base model"):
        pg.load(tmp_path)
