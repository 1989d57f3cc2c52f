"""Unit and registry-contract tests of the zoo's parts: data, architectures, surgery, derivations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from progenitor.errors import ProgenitorError
from progenitor.models import load
from progenitor.models.torch_files import import_factory
from progenitor.zoo import data as zoo_data
from progenitor.zoo import surgery
from progenitor.zoo.archs import create_arch, factory_ref, list_archs
from progenitor.zoo.derivations import Built, apply, get_derivation, list_derivations, resolve_params
from progenitor.zoo.export import save_safetensors
from progenitor.zoo.pairs import Lineage, assign_family_splits, make_pairs
from progenitor.zoo.presets import EVASION_KINDS, get_preset
from progenitor.zoo.train import TrainConfig, pinned_threads, predict_logits, train_classifier

X = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)


def _model(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_arch(arch)
    model.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for _ in range(2):
            model(torch.from_numpy(X))
    return model.eval()


# ---------------------------------------------------------------- data


@pytest.mark.real
@pytest.mark.parametrize("name", zoo_data.list_datasets())
def test_dataset_parts_are_disjoint_and_cover_everything(name: str) -> None:
    dataset = zoo_data.load_dataset(name)
    parts = zoo_data.split_indices(name)
    main = [parts[p] for p in ("source", "derive", "probe", "test")]
    joined = np.concatenate(main)
    assert len(np.unique(joined)) == len(joined) == len(dataset)
    assert set(parts["source-a"]) | set(parts["source-b"]) == set(parts["source"])
    assert not set(parts["source-a"]) & set(parts["source-b"])
    if dataset.modality == "image":
        assert dataset.x.shape[1:] == (1, 28, 28) and dataset.x.dtype == np.float32
        assert dataset.x.min() >= 0.0 and dataset.x.max() <= 1.0
    else:
        assert all(isinstance(t, str) and t for t in dataset.texts)
    np.testing.assert_array_equal(parts["probe"], zoo_data.split_indices(name)["probe"])


@pytest.mark.real
def test_relabelled_fashion_mnist_shares_its_split() -> None:
    fine, coarse = zoo_data.split_indices("fmnist"), zoo_data.split_indices("fmnist-coarse")
    for part in fine:
        np.testing.assert_array_equal(fine[part], coarse[part])
    assert zoo_data.load_dataset("fmnist-coarse").num_classes == 4


@pytest.mark.real
def test_newsgroups_are_read_without_unpickling() -> None:
    news = zoo_data.load_dataset("newsgroups")
    assert news.classes == ("alt.atheism", "sci.space") and len(news) == 200
    assert np.bincount(news.y).tolist() == [100, 100]
    assert not news.texts[0].startswith(("Newsgroups:", "Path:", "Xref:"))


def test_missing_fashion_mnist_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(zoo_data.DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        zoo_data._fashion_mnist_raw.__wrapped__(tmp_path)


def test_missing_gensim_file_names_the_extra() -> None:
    with pytest.raises(zoo_data.DataUnavailableError, match=r"progenitor\[data\]"):
        zoo_data.gensim_test_data("no-such-file.cor")


# ---------------------------------------------------------------- architectures (registry-wide)


@pytest.mark.parametrize("arch", list_archs())
def test_architecture_contract(arch: str, tmp_path: Path) -> None:
    model = _model(arch)
    y = model(torch.from_numpy(X))
    assert y.shape == (16, 10)
    torch.jit.script(model)  # every architecture can be written as TorchScript
    path = tmp_path / "m.safetensors"
    save_safetensors(model, path)
    loaded = load(str(path), arch=factory_ref(arch), input_shape=(1, 28, 28))
    np.testing.assert_allclose(loaded.forward(X), y.detach().numpy(), atol=1e-5)
    four = import_factory(factory_ref(arch, 4))()
    assert four(torch.from_numpy(X)).shape == (16, 4)


@pytest.mark.parametrize("arch", list_archs())
def test_permutation_preserves_the_function(arch: str) -> None:
    model = _model(arch)
    permuted = surgery.clone(model)
    perms = surgery.permute_units(permuted, torch.Generator().manual_seed(1))
    assert perms and all(sorted(p) == list(range(len(p))) for p in perms.values())
    np.testing.assert_allclose(predict_logits(permuted, X), predict_logits(model, X), atol=1e-4)
    varied = [k for k, v in model.state_dict().items() if v.is_floating_point() and v.unique().numel() > 1]
    moved = [k for k in varied if not torch.equal(model.state_dict()[k], permuted.state_dict()[k])]
    assert len(moved) >= 0.8 * len(varied), sorted(set(varied) - set(moved))


def test_magnitude_pruning_and_int8_rounding() -> None:
    model = _model("cnn")
    masks = surgery.magnitude_masks(model, 0.8)
    surgery.apply_masks(model, masks)
    names = surgery.kernel_names(model)
    assert surgery.kernel_sparsity(model.state_dict(), names) == pytest.approx(0.8, abs=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    errors = surgery.round_int8(model)
    for name in names:
        step = before[name].abs().reshape(len(before[name]), -1).amax(1).max() / 127
        assert errors[name] <= step / 2 + 1e-7
        levels = torch.unique(model.state_dict()[name][0])
        assert len(levels) <= 255


def test_lora_merge_keeps_names_and_order() -> None:
    model = _model("vit")
    work = surgery.clone(model)
    params = surgery.attach_lora(work, 4, 8.0)
    assert params
    with torch.no_grad():
        for p in params:
            p.add_(0.01)
    merged = surgery.merge_lora(work, model)
    assert list(merged.state_dict()) == list(model.state_dict())
    assert not np.allclose(predict_logits(merged, X), predict_logits(model, X))


# ---------------------------------------------------------------- derivations (registry-wide)

_TINY = {"n": 64, "epochs": 1, "recover_epochs": 1, "head_epochs": 1, "calibration": 32}


@pytest.mark.real
@pytest.mark.parametrize("derivation", [d.name for d in list_derivations("image")])
def test_every_image_derivation_runs_on_every_architecture(derivation: str) -> None:
    spec = next(d for d in list_derivations("image") if d.name == derivation)
    assert spec.description and spec.kind
    params = resolve_params(derivation, {k: v for k, v in _TINY.items() if k in spec.defaults})
    with pinned_threads():
        for arch in spec.archs or list_archs():
            parents = [Built(_model(arch, seed), arch, "fmnist", "fmnist:source-a") for seed in range(spec.n_parents)]
            child = apply(derivation, parents, params, seed=0)
            assert child.modality == "image"
            assert predict_logits(child.module, X).shape[0] == 16
            assert child.module is not parents[0].module


def test_derivation_parameters_are_checked() -> None:
    with pytest.raises(ProgenitorError, match="takes no parameter"):
        resolve_params("prune", {"amount": 0.5})
    with pytest.raises(ProgenitorError, match="unknown derivation"):
        resolve_params("shrink", {})
    parent = Built(_model("resnet"), "resnet", "fmnist", "fmnist:source-a")
    with pytest.raises(ProgenitorError, match="supports"):
        apply("prune_channels", [parent], resolve_params("prune_channels", {}), seed=0)
    export = Built(_model("cnn"), "cnn", "fmnist", "fmnist:source-a", save_as="onnx")
    with pytest.raises(ProgenitorError, match="cannot be derived"):
        apply("noise", [export], resolve_params("noise", {}), seed=0)


# ---------------------------------------------------------------- adaptive evasion

EVASION_OPS = ("evade_finetune", "noise_recover", "permute_rescale", "distill_far")


@pytest.mark.parametrize("arch", list_archs())
def test_rescaling_preserves_the_function_and_moves_the_weights(arch: str) -> None:
    model = _model(arch)
    rescaled = surgery.clone(model)
    facts = surgery.rescale_units(rescaled, torch.Generator().manual_seed(1), 0.25, 4.0)
    before, after = predict_logits(model, X), predict_logits(rescaled, X)
    np.testing.assert_allclose(after, before, atol=1e-5 * max(1.0, float(np.abs(before).max())))
    old, new = model.state_dict(), rescaled.state_dict()
    kernels = surgery.kernel_names(model)
    moved = [k for k in kernels if not np.allclose(np.sort(old[k], axis=None), np.sort(new[k], axis=None))]
    if arch == "vit":  # GELU and LayerNorm: only attention rescales
        assert facts["not_rescaled"] == ["stream", "blocks.0.mlp", "blocks.1.mlp"]
        assert set(facts["attention"]) == {"blocks.0.attn", "blocks.1.attn"} and not facts["groups"]
        assert {k for k in moved if "attn" in k} == {
            f"blocks.{i}.attn.{w}" for i in (0, 1) for w in ("in_proj_weight", "out_proj.weight")
        }
    else:  # every kernel's values change, not just their order
        assert not facts["not_rescaled"] and facts["groups"]
        assert moved == kernels
    if arch in ("cnn_bn", "resnet"):
        assert facts["before_norm"]  # conv outputs rescaled under their BatchNorm too


@pytest.fixture(scope="module")
def trained_mlp() -> Built:
    """A small MLP trained for a few seconds on Fashion-MNIST (a parent with real behaviour)."""
    data = zoo_data.get_part("fmnist", "source-a", 4000)
    with pinned_threads():
        torch.manual_seed(0)
        model = create_arch("mlp")
        train_classifier(model, data.x, data.y, TrainConfig(epochs=3, seed=0))
    return Built(model, "mlp", "fmnist", "fmnist:source-a")


def _state(built: Built) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in built.module.state_dict().items()}


_EVASION_TINY = {
    "evade_finetune": {"n": 500, "epochs": 2},
    "noise_recover": {"n": 2000, "recover_epochs": 1, "relative_std": 1.0},
    "permute_rescale": {},
    "distill_far": {"n": 4000, "epochs": 3},
}


@pytest.mark.real
@pytest.mark.parametrize("op", EVASION_OPS)
def test_evasion_derivations_are_deterministic_and_report_their_effect(op: str, trained_mlp: Built) -> None:
    derivation = get_derivation(op)
    assert derivation.kind in EVASION_KINDS and "Attacks" in (derivation.fn.__doc__ or "")
    params = resolve_params(op, _EVASION_TINY[op])
    with pinned_threads():
        first = apply(op, [trained_mlp], params, seed=3)
        again = apply(op, [trained_mlp], params, seed=3)
        other = apply(op, [trained_mlp], params, seed=4)
    a, b, c = _state(first), _state(again), _state(other)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    assert first.facts == again.facts
    assert first.task == trained_mlp.task and first.module is not trained_mlp.module
    if op == "permute_rescale":
        assert first.facts["max_output_change"] < 1e-4 and first.facts["relative_change"] > 0.5
        return
    facts = first.facts
    assert {"accuracy", "agreement", "logit_correlation"} <= set(facts)
    assert facts["parent_accuracy"] > 0.7
    assert facts["accuracy"] > (0.25 if op == "distill_far" else 0.6)  # chance is 0.1
    if op == "noise_recover":
        assert facts["noised_accuracy"] < facts["accuracy"]
    if op == "distill_far":
        assert facts["digits"] + facts["smooth_noise"] == params["n"] and first.train_data == "digits:source"


@pytest.mark.real
def test_evade_finetune_moves_away_from_the_parent_more_than_finetuning(trained_mlp: Built) -> None:
    from progenitor.zoo.derivations import _behaviour_facts

    same = {"n": 2000, "epochs": 2, "lr": 5e-4}
    with pinned_threads():
        plain = apply("finetune", [trained_mlp], resolve_params("finetune", same), seed=3)
        evaded = apply("evade_finetune", [trained_mlp], resolve_params("evade_finetune", same), seed=3)
    plain_facts = _behaviour_facts(trained_mlp, plain, noise_std=0.3, seed=3)
    facts = evaded.facts
    assert facts["logit_correlation"] < plain_facts["logit_correlation"] - 0.2
    assert facts["noisy_agreement"] < plain_facts["noisy_agreement"] - 0.3
    assert facts["agreement"] <= plain_facts["agreement"]
    assert facts["accuracy"] > plain_facts["accuracy"] - 0.1  # still a useful model


def test_evasion_preset_is_well_formed() -> None:
    spec = get_preset("evasion")
    assert set(spec.held_out_kinds) == set(EVASION_KINDS)
    assert {get_derivation(op).kind for op in EVASION_OPS} == set(EVASION_KINDS)
    roots = {m.id: m for m in spec.models if m.is_root}
    arch_of = {m.id: m.params["arch"] for m in roots.values()}
    # every model that starts from a fresh initialisation has a seed of its own (per architecture)
    fresh = [(m.params["arch"], m.seed) for m in roots.values()]
    for m in spec.models:
        if m.parents:
            arch_of[m.id] = m.params.get("arch") or arch_of[m.parents[0]]
            if m.op in ("distill", "distill_far", "extract_labels", "extract_probs"):
                fresh.append((arch_of[m.id], m.seed))
    assert len(fresh) == len(set(fresh))
    children: dict[str, set[str]] = {}
    for m in spec.models:
        for p in m.parents:
            children.setdefault(p, set()).add(m.op)
    for rid, root in roots.items():
        ops = children.get(rid, set())
        if root.split == "test":
            assert set(EVASION_OPS) | {"finetune", "distill"} <= ops, rid
        else:
            assert not ops & set(EVASION_OPS), rid  # train and val never see an evasion
    # the splits give bench what it needs: evasion pairs in test, independents in val
    models = [
        {
            "id": m.id,
            "architecture": arch_of[m.id],
            "data": "fmnist:source-a",
            "modality": "image",
            "seed": m.seed,
            "split": m.split,
        }
        for m in spec.models
    ]
    edges = [
        {"parent": p, "child": m.id, "operation": m.op, "kind": get_derivation(m.op).kind}
        for m in spec.models
        for p in m.parents
    ]
    lineage = Lineage(models, edges)
    pairs = make_pairs(lineage, assign_family_splits(lineage), (), spec.held_out_kinds)
    kind_of = {e["child"]: e["kind"] for e in edges}
    test_kinds = {kind_of[p["target"]] for p in pairs if p["derived"] and p["split"]["family"] == "test"}
    assert set(EVASION_KINDS) <= test_kinds
    val = [p for p in pairs if p["split"]["family"] == "val"]
    assert sum(p["kind"] == "same-arch-same-data-other-seed" for p in val) >= 6 and len(val) >= 10
    assert any(p["derived"] for p in pairs if p["split"]["family"] == "train")


# ---------------------------------------------------------------- pairs


def test_negative_kinds_on_a_hand_made_lineage() -> None:
    def model(mid: str, arch: str, data: str, seed: int) -> dict[str, object]:
        return {"id": mid, "architecture": arch, "data": data, "modality": "image", "seed": seed}

    models = [
        model("a", "cnn", "d1", 0),
        model("b", "cnn", "d1", 1),
        model("c", "cnn", "d2", 2),
        model("m", "mlp", "d1", 0),
        model("a.x", "cnn", "d1", 0),
        model("a.y", "cnn", "d1", 0),
        model("a.x.z", "cnn", "d1", 0),
        model("a.y.w", "cnn", "d1", 0),
    ]
    edges = [
        {"parent": "a", "child": "a.x", "operation": "finetune", "kind": "finetune"},
        {"parent": "a", "child": "a.y", "operation": "prune", "kind": "prune"},
        {"parent": "a.x", "child": "a.x.z", "operation": "noise", "kind": "noise"},
        {"parent": "a.y", "child": "a.y.w", "operation": "int8", "kind": "quantize"},
    ]
    lineage = Lineage(models, edges)
    splits = {"a": "train", "b": "test", "c": "val", "m": "train"}
    pairs = {(p["source"], p["target"]): p for p in make_pairs(lineage, splits, ("mlp",), ("noise",))}
    kind = {k: p["kind"] for k, p in pairs.items()}
    assert kind[("a", "a.x.z")] == "derived"
    assert pairs[("a", "a.x.z")]["chain"] == ["finetune", "noise"]
    assert kind[("a", "b")] == "same-arch-same-data-other-seed"
    assert kind[("a", "c")] == "same-arch-other-data"
    assert kind[("a", "m")] == "other-arch"
    assert kind[("a.x", "a.y")] == "sibling"
    assert kind[("a.x", "a")] == "reverse"
    assert kind[("a.y", "a.x.z")] == "cousin"
    assert ("a.x.z", "a.x") not in pairs  # a leaf is not a source
    assert pairs[("a", "b")]["split"]["family"] is None
    assert pairs[("a", "a.x")]["split"]["family"] == "train"
    assert pairs[("a", "m")]["split"]["arch"] is None
    assert pairs[("m", "a")]["split"]["arch"] == "test"
    assert pairs[("a", "a.x.z")]["split"]["kind"] == "test"
    assert pairs[("a", "a.x")]["split"]["kind"] == "train"
