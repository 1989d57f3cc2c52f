"""Derivations: registered operations that make a child model from a parent.

Each derivation is a function ``fn(parent, params, ctx) -> Built`` registered under a name with its
kind (the family of attacks it belongs to, used for held-out splits), its default parameters and a
version (bumped when its code changes, which invalidates cached children). The builder merges a
spec's parameters over the defaults and records the full set on the lineage edge, together with
the facts the operation measured (sparsity reached, largest output change, new widths, ...).

Image derivations live here; text derivations register themselves from
:mod:`progenitor.zoo.text` into the same registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from progenitor.errors import ProgenitorError
from progenitor.zoo import surgery
from progenitor.zoo.archs import ZooNet, create_arch
from progenitor.zoo.data import Dataset, get_part
from progenitor.zoo.train import (
    TrainConfig,
    distill,
    fgsm_perturb,
    fit,
    predict_logits,
    seed_everything,
    train_classifier,
)

# Formats a built model can be written in (see progenitor.zoo.build).
FORMATS = ("safetensors", "safetensors-fp16", "torchscript", "onnx", "onnx-int8", "hf", "hf-fp16")


@dataclass
class Built:
    """A model made by the builder, in memory.

    Attributes:
        module: the torch module (a ``ZooNet`` for images, a transformers model for text).
        arch: architecture name (registry name for images, config family for text).
        task: the dataset whose classes (or vocabulary) the outputs index.
        train_data: the data the last training step used, ``dataset:part``.
        save_as: the format to write (one of ``FORMATS``).
        modality: ``image`` or ``text``.
        facts: measurements the operation made (recorded on the lineage edge).
        tokenizer: the tokenizer of a text model.
    """

    module: nn.Module
    arch: str
    task: str
    train_data: str
    save_as: str = "safetensors"
    modality: str = "image"
    facts: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None

    @property
    def derivable(self) -> bool:
        """Whether children can be made from this model (exports are leaves)."""
        return self.save_as not in ("onnx", "onnx-int8")


@dataclass
class DeriveContext:
    """What a derivation may use besides its parent: its seed, all parents, data access."""

    seed: int
    parents: list[Built]

    def data(self, task: str, part: str, limit: int | None = None) -> Dataset:
        """Part ``part`` of dataset ``task`` (first ``limit`` rows)."""
        return get_part(task, part, limit)

    def generator(self) -> torch.Generator:
        """A torch generator seeded with this derivation's seed."""
        return torch.Generator().manual_seed(self.seed)


Operation = Callable[[Built, dict[str, Any], DeriveContext], Built]


@dataclass(frozen=True)
class Derivation:
    """A registered derivation."""

    name: str
    kind: str
    fn: Operation
    defaults: dict[str, Any]
    version: int
    modality: str
    description: str
    n_parents: int = 1
    archs: tuple[str, ...] | None = None  # None: every architecture of its modality


_DERIVATIONS: dict[str, Derivation] = {}


def register_derivation(
    name: str,
    kind: str,
    defaults: dict[str, Any] | None = None,
    version: int = 1,
    modality: str = "image",
    n_parents: int = 1,
    archs: tuple[str, ...] | None = None,
) -> Callable[[Operation], Operation]:
    """Decorator registering ``fn(parent, params, ctx) -> Built`` as derivation ``name``.

    Args:
        name: registry key, used in specs and recorded on edges.
        kind: attack family (``finetune``, ``prune``, ``distill``, ...), used by held-out splits.
        defaults: every parameter with its default; specs may override only these keys.
        version: bump when the function's behaviour changes (invalidates cached children).
        modality: ``image`` or ``text``.
        n_parents: number of parents it takes (merging takes 2).
        archs: the architectures it supports, when not all.
    """

    def decorate(fn: Operation) -> Operation:
        if name in _DERIVATIONS:
            raise ValueError(f"derivation {name!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _DERIVATIONS[name] = Derivation(
            name, kind, fn, dict(defaults or {}), version, modality, doc[0] if doc else "", n_parents, archs
        )
        return fn

    return decorate


def get_derivation(name: str) -> Derivation:
    """The derivation registered under ``name``."""
    if name not in _DERIVATIONS:
        known = ", ".join(sorted(_DERIVATIONS))
        raise ProgenitorError(f"unknown derivation {name!r}; known: {known}")
    return _DERIVATIONS[name]


def list_derivations(modality: str | None = None) -> list[Derivation]:
    """Registered derivations (of one modality when given), by name."""
    return [d for k, d in sorted(_DERIVATIONS.items()) if modality in (None, d.modality)]


def resolve_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The derivation's defaults overridden by ``params``; unknown keys are refused."""
    derivation = get_derivation(name)
    unknown = sorted(set(params) - set(derivation.defaults))
    if unknown:
        raise ProgenitorError(
            f"derivation {name!r} takes no parameter {unknown[0]!r}; "
            f"it takes: {', '.join(sorted(derivation.defaults)) or 'none'}"
        )
    return {**derivation.defaults, **params}


def apply(name: str, parents: list[Built], params: dict[str, Any], seed: int) -> Built:
    """Run derivation ``name`` on ``parents`` with resolved ``params``; checks what it accepts."""
    derivation = get_derivation(name)
    if len(parents) != derivation.n_parents:
        raise ProgenitorError(f"{name} takes {derivation.n_parents} parent(s), got {len(parents)}")
    for parent in parents:
        if not parent.derivable:
            raise ProgenitorError(f"{name}: a {parent.save_as} export cannot be derived further")
        if parent.modality != derivation.modality:
            raise ProgenitorError(f"{name} is a {derivation.modality} derivation")
        if derivation.archs is not None and parent.arch not in derivation.archs:
            raise ProgenitorError(f"{name} supports {', '.join(derivation.archs)}, not {parent.arch}")
    return derivation.fn(parents[0], params, DeriveContext(seed, parents))


# ---------------------------------------------------------------- helpers


def _copy(parent: Built, **changes: Any) -> Built:
    """A child that starts as a deep copy of the parent (fresh facts)."""
    child = replace(parent, module=surgery.clone(parent.module), facts={}, save_as="safetensors")
    return replace(child, **changes) if changes else child


def _config(params: dict[str, Any], seed: int, epochs_key: str = "epochs") -> TrainConfig:
    return TrainConfig(epochs=int(params[epochs_key]), lr=float(params["lr"]), seed=seed)


def _weights_changed(before: nn.Module, after: nn.Module) -> float:
    """Relative L2 change of all parameters (same shapes)."""
    num = den = 0.0
    with torch.no_grad():
        for a, b in zip(before.parameters(), after.parameters(), strict=True):
            num += float((a - b).pow(2).sum())
            den += float(a.pow(2).sum())
    return (num / max(den, 1e-30)) ** 0.5


def _probe_inputs(parent: Built, n: int = 256) -> np.ndarray:
    return get_part(parent.task, "probe", n).x  # type: ignore[return-value]


# ---------------------------------------------------------------- fine-tuning family


@register_derivation("finetune", "finetune", {"part": "derive", "n": 4000, "epochs": 1, "lr": 1e-4})
def finetune(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Fine-tune all layers on data the parent never saw (same task)."""
    child = _copy(parent)
    data = ctx.data(parent.task, params["part"], params["n"])
    train_classifier(child.module, data.x, data.y, _config(params, ctx.seed))
    child.train_data = data.name
    child.facts["relative_change"] = _weights_changed(parent.module, child.module)
    return child


@register_derivation("finetune_head", "finetune_head", {"part": "derive", "n": 4000, "epochs": 2, "lr": 1e-3})
def finetune_head(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Fine-tune only the classification head (body and its norm statistics frozen)."""
    child = _copy(parent)
    model: ZooNet = child.module  # type: ignore[assignment]
    data = ctx.data(parent.task, params["part"], params["n"])
    train_classifier(
        model, data.x, data.y, _config(params, ctx.seed), params=list(model.head.parameters()), freeze_norm_stats=True
    )
    child.train_data = data.name
    child.facts["relative_change"] = _weights_changed(parent.module, model)
    return child


@register_derivation(
    "transfer",
    "transfer",
    {"task": "fmnist-coarse", "part": "derive", "n": 4000, "head_epochs": 1, "epochs": 2, "lr": 5e-4},
)
def transfer(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Transfer to new classes or another dataset: a new head, trained, then all layers tuned."""
    child = _copy(parent)
    model: ZooNet = child.module  # type: ignore[assignment]
    data = ctx.data(params["task"], params["part"], params["n"])
    seed_everything(ctx.seed)
    model.replace_head(data.num_classes)
    warm = TrainConfig(epochs=int(params["head_epochs"]), lr=1e-3, seed=ctx.seed)
    train_classifier(model, data.x, data.y, warm, params=list(model.head.parameters()), freeze_norm_stats=True)
    train_classifier(model, data.x, data.y, _config(params, ctx.seed + 1))
    child.task = params["task"]
    child.train_data = data.name
    return child


@register_derivation(
    "adversarial", "adversarial", {"part": "derive", "n": 4000, "epochs": 2, "lr": 5e-4, "epsilon": 0.1}
)
def adversarial(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Adversarial fine-tuning: half of every batch replaced by FGSM examples (L-inf epsilon)."""
    child = _copy(parent)
    data = ctx.data(parent.task, params["part"], params["n"])
    train_classifier(
        child.module, data.x, data.y, _config(params, ctx.seed), perturb=fgsm_perturb(float(params["epsilon"]), data.y)
    )
    child.train_data = data.name
    child.facts["relative_change"] = _weights_changed(parent.module, child.module)
    return child


@register_derivation("lora", "lora", {"part": "derive", "n": 4000, "epochs": 2, "lr": 1e-3, "rank": 4, "alpha": 8.0})
def lora(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """LoRA fine-tune of every dense/conv kernel (rank r), merged back into the weights."""
    work = surgery.clone(parent.module)
    seed_everything(ctx.seed)
    adapters = surgery.attach_lora(work, int(params["rank"]), float(params["alpha"]))
    data = ctx.data(parent.task, params["part"], params["n"])
    train_classifier(work, data.x, data.y, _config(params, ctx.seed), params=adapters, freeze_norm_stats=True)
    merged = surgery.merge_lora(work, parent.module)
    child = replace(parent, module=merged, facts={}, save_as="safetensors", train_data=data.name)
    child.facts["relative_change"] = _weights_changed(parent.module, merged)
    child.facts["adapted_kernels"] = len(adapters) // 2
    return child


@register_derivation("merge", "merge", {}, n_parents=2)
def merge(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:  # noqa: ARG001
    """Weight averaging (a two-model soup) of two models of one architecture and task."""
    other = ctx.parents[1]
    if other.arch != parent.arch or other.task != parent.task:
        raise ProgenitorError("merge needs two models of the same architecture and task")
    child = _copy(parent)
    child.module.load_state_dict(surgery.average_states([parent.module, other.module]))
    child.facts["other_parent_data"] = other.train_data
    return child


# ---------------------------------------------------------------- pruning


@register_derivation("prune", "prune", {"sparsity": 0.5, "recover_epochs": 0, "part": "derive", "n": 4000, "lr": 1e-4})
def prune(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Magnitude pruning of every kernel to the given sparsity, optionally with recovery tuning."""
    child = _copy(parent)
    masks = surgery.magnitude_masks(child.module, float(params["sparsity"]))
    surgery.apply_masks(child.module, masks)
    if int(params["recover_epochs"]) > 0:
        data = ctx.data(parent.task, params["part"], params["n"])
        train_classifier(
            child.module,
            data.x,
            data.y,
            _config(params, ctx.seed, "recover_epochs"),
            after_step=lambda: surgery.apply_masks(child.module, masks),
        )
        child.train_data = data.name
    names = surgery.kernel_names(child.module)
    child.facts["sparsity"] = surgery.kernel_sparsity(child.module.state_dict(), names)
    return child


@register_derivation(
    "prune_channels",
    "prune_structured",
    {"fraction": 0.5, "recover_epochs": 1, "part": "derive", "n": 4000, "lr": 5e-4},
    archs=("mlp", "cnn", "cnn_bn"),
)
def prune_channels(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Structured pruning: drop the weakest channels/neurons of every layer (a narrower model)."""
    smaller, widths = surgery.drop_units(parent.module, float(params["fraction"]))  # type: ignore[arg-type]
    child = replace(parent, module=smaller, facts={"widths": widths}, save_as="torchscript")
    if int(params["recover_epochs"]) > 0:
        data = ctx.data(parent.task, params["part"], params["n"])
        train_classifier(smaller, data.x, data.y, _config(params, ctx.seed, "recover_epochs"))
        child.train_data = data.name
    return child


# ---------------------------------------------------------------- reparameterisation and noise


@register_derivation("permute", "permute", {"tolerance": 1e-4})
def permute(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Permute the hidden units of every layer consistently: same function, shuffled weights."""
    child = _copy(parent)
    perms = surgery.permute_units(child.module, ctx.generator())  # type: ignore[arg-type]
    x = _probe_inputs(parent)
    diff = float(np.abs(predict_logits(child.module, x) - predict_logits(parent.module, x)).max())
    if diff > float(params["tolerance"]):
        raise ProgenitorError(f"permutation changed the function by {diff:.2e} (a bug)")
    child.facts.update(max_output_change=diff, groups={k: len(v) for k, v in perms.items()})
    return child


@register_derivation("noise", "noise", {"relative_std": 0.02})
def noise(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Gaussian noise on every parameter, std = relative_std x that tensor's std."""
    child = _copy(parent)
    surgery.add_noise(child.module, float(params["relative_std"]), ctx.generator())
    return child


# ---------------------------------------------------------------- quantization and export


@register_derivation("int8", "quantize", {})
def int8(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:  # noqa: ARG001
    """Weight-only int8: each kernel rounded to symmetric per-channel int8 and back."""
    child = _copy(parent)
    child.facts["max_rounding_error"] = max(surgery.round_int8(child.module).values())
    return child


@register_derivation("fp16", "quantize", {})
def fp16(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:  # noqa: ARG001
    """Half precision: every tensor rounded to float16 and stored as float16 safetensors."""
    child = _copy(parent, save_as="safetensors-fp16")
    surgery.round_fp16(child.module)
    return child


@register_derivation("onnx", "export", {})
def onnx(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:  # noqa: ARG001
    """Export to ONNX (BatchNorm folded into convolutions by the exporter)."""
    return _copy(parent, save_as="onnx")


@register_derivation("onnx_int8", "quantize", {"calibration": 512})
def onnx_int8(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:  # noqa: ARG001
    """Export to ONNX and quantize statically to int8 (QDQ), calibrated on unseen data."""
    child = _copy(parent, save_as="onnx-int8")
    child.facts["calibration_data"] = f"{parent.task}:derive"
    child.facts["calibration_n"] = int(params["calibration"])
    return child


# ---------------------------------------------------------------- distillation and extraction


def _student(parent: Built, arch: str | None, seed: int) -> tuple[ZooNet, str]:
    name = arch or parent.arch
    seed_everything(seed)
    return create_arch(name, parent.module.num_classes), name  # type: ignore[arg-type]


@register_derivation(
    "distill",
    "distill",
    {"arch": None, "n": 12000, "epochs": 4, "lr": 1e-3, "temperature": 2.0, "alpha": 0.9},
    version=2,
)
def distill_op(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Knowledge distillation on the teacher's own training data (soft targets + labels)."""
    dataset, _, part = parent.train_data.partition(":")
    data = ctx.data(dataset, part, params["n"])
    student, arch = _student(parent, params["arch"], ctx.seed)
    teacher = predict_logits(parent.module, data.x)
    distill(
        student,
        data.x,
        teacher,
        _config(params, ctx.seed),
        temperature=float(params["temperature"]),
        labels=data.y,
        alpha=float(params["alpha"]),
    )
    return Built(student, arch, parent.task, data.name)


@register_derivation(
    "extract_labels", "extract", {"arch": None, "part": "derive", "n": 12000, "epochs": 4, "lr": 1e-3}, version=2
)
def extract_labels(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Model extraction through a label-only API, on data the source never saw."""
    data = ctx.data(parent.task, params["part"], params["n"])
    student, arch = _student(parent, params["arch"], ctx.seed)
    stolen = np.argmax(predict_logits(parent.module, data.x), axis=1)
    train_classifier(student, data.x, stolen, _config(params, ctx.seed))
    return Built(student, arch, parent.task, data.name, facts={"targets": "parent arg-max"})


@register_derivation(
    "extract_probs", "extract", {"arch": None, "part": "derive", "n": 12000, "epochs": 4, "lr": 1e-3}, version=2
)
def extract_probs(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Model extraction through a probability API (KL to its softmax), on unseen data."""
    data = ctx.data(parent.task, params["part"], params["n"])
    student, arch = _student(parent, params["arch"], ctx.seed)
    teacher = predict_logits(parent.module, data.x)
    distill(student, data.x, teacher, _config(params, ctx.seed), temperature=1.0)
    return Built(student, arch, parent.task, data.name, facts={"targets": "parent softmax"})


# ---------------------------------------------------------------- adaptive evasion
#
# Derivations made by someone who knows how provenance is detected and tries to hide it: each
# one aims at one kind of signal and keeps the child useful. Their kinds start with ``evade-``
# so that benchmarks report them apart from the ordinary derivations above.

EVAL_N = 2000  # test images the evasion facts are measured on (the builder's accuracy uses as many)


def _behaviour_facts(parent: Built, child: Built, noise_std: float = 0.0, seed: int = 0) -> dict[str, float]:
    """Accuracy and closeness to the parent on the task's test images.

    ``agreement``: share of test images where child and parent pick the same class;
    ``logit_correlation``: mean over images of the Pearson correlation of the two logit vectors
    (the per-image output shape a black-box fingerprint sees); with ``noise_std`` also
    ``noisy_agreement`` on the same images with Gaussian pixel noise of that std.
    """
    test = get_part(parent.task, "test", EVAL_N)
    a, b = predict_logits(parent.module, test.x), predict_logits(child.module, test.x)
    ac, bc = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    corr = (ac * bc).sum(1) / (np.linalg.norm(ac, axis=1) * np.linalg.norm(bc, axis=1) + 1e-12)
    facts = {
        "accuracy": float((b.argmax(1) == test.y).mean()),
        "parent_accuracy": float((a.argmax(1) == test.y).mean()),
        "agreement": float((a.argmax(1) == b.argmax(1)).mean()),
        "logit_correlation": float(corr.mean()),
    }
    if noise_std > 0:
        rng = np.random.default_rng(seed)
        noisy = np.clip(test.x + noise_std * rng.standard_normal(test.x.shape, dtype=np.float32), 0.0, 1.0)
        an, bn = predict_logits(parent.module, noisy), predict_logits(child.module, noisy)
        facts["noisy_agreement"] = float((an.argmax(1) == bn.argmax(1)).mean())
    return {k: round(v, 4) for k, v in facts.items()}


def _off_top_correlation(parent_logits: torch.Tensor, child_logits: torch.Tensor) -> torch.Tensor:
    """Per-row Pearson correlation of the two logit vectors over every class but the parent's top one.

    Leaves the predicted class free (accuracy is the cross-entropy's business) and measures the
    "dark knowledge": how the child ranks the classes it does not pick, as the parent does.
    """
    keep = torch.ones_like(parent_logits)
    keep[torch.arange(len(keep)), parent_logits.argmax(1)] = 0.0
    count = keep.sum(1, keepdim=True)

    def centred(z: torch.Tensor) -> torch.Tensor:
        return (z - (z * keep).sum(1, keepdim=True) / count) * keep

    a, b = centred(parent_logits), centred(child_logits)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-8)


@register_derivation(
    "evade_finetune",
    "evade-finetune",
    {"part": "derive", "n": 4000, "epochs": 3, "lr": 5e-4, "lam": 1.0, "noise_std": 0.3},
)
def evade_finetune(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Fine-tune against output fingerprints: labels kept, the parent's behaviour pushed away.

    Attacks black-box behaviour signals (``output_geometry``, probe-agreement fingerprints).
    Loss per batch: cross-entropy on ``n`` labelled ``derive`` images plus ``lam`` x an evasion
    term on ``n`` other ``derive`` images (drawn like a probe set: same distribution, never seen by
    the parent) and on noisy copies of them (Gaussian pixel noise of std ``noise_std``): the
    correlation of child and parent logits over every class but the parent's pick (on both), plus
    the child's probability of the parent's pick on the noisy copies. Labels are not used on the
    evasion images, which are normalised by their own batch statistics without moving the
    BatchNorm running ones. Facts: accuracy, agreement and logit correlation with the parent on test
    images, agreement on noisy test images.
    """
    child = _copy(parent)
    data = ctx.data(parent.task, params["part"], 2 * int(params["n"]))
    n = len(data) // 2
    x, y = data.x[:n], torch.from_numpy(np.asarray(data.y[:n], np.int64))
    evade_x = torch.from_numpy(np.ascontiguousarray(data.x[n : 2 * n]))
    evade_parent = torch.from_numpy(predict_logits(parent.module, evade_x.numpy()))
    lam, noise_std = float(params["lam"]), float(params["noise_std"])
    noise = ctx.generator()
    teacher = parent.module.eval()

    norms = [m for m in child.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def loss(logits: torch.Tensor, index: np.ndarray) -> torch.Tensor:
        clean = evade_x[index]
        noisy = (clean + noise_std * torch.randn(clean.shape, generator=noise)).clamp(0.0, 1.0)
        with torch.no_grad():
            parent_noisy = teacher(noisy)
        momenta = [norm.momentum for norm in norms]
        for norm in norms:  # batch statistics as in training, but the running ones stay clean
            norm.momentum = 0.0
        both = torch.cat([clean, noisy])
        out = torch.cat([child.module(clean), child.module(noisy)]) if norms else child.module(both)
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        reference = torch.cat([evade_parent[index], parent_noisy])
        dark = _off_top_correlation(reference, out).mean()
        agree = F.softmax(out[len(clean) :], dim=1).gather(1, parent_noisy.argmax(1, keepdim=True)).mean()
        return F.cross_entropy(logits, y[index]) + lam * (dark + agree)

    fit(child.module, x, loss, _config(params, ctx.seed))
    child.train_data = f"{parent.task}:{params['part']}"
    child.facts.update(
        relative_change=_weights_changed(parent.module, child.module),
        **_behaviour_facts(parent, child, noise_std, ctx.seed),
    )
    return child


@register_derivation(
    "noise_recover",
    "evade-noise",
    {"relative_std": 0.25, "part": "derive", "n": 4000, "recover_epochs": 3, "lr": 1e-3},
)
def noise_recover(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Heavy Gaussian weight noise, then fine-tuning until the accuracy has recovered.

    Attacks white-box weight signals (``weight_sketch``, weight-correlation baselines): every
    parameter gets noise of ``relative_std`` x its tensor's std (far above the ``noise``
    derivation), which blurs the fine structure of the weights; ``recover_epochs`` of training on
    ``n`` ``derive`` images restore the accuracy. Facts: the accuracy right after the noise,
    accuracy, agreement with the parent, relative weight change.
    """
    child = _copy(parent)
    surgery.add_noise(child.module, float(params["relative_std"]), ctx.generator())
    test = get_part(parent.task, "test", EVAL_N)
    noised_accuracy = float((predict_logits(child.module, test.x).argmax(1) == test.y).mean())
    data = ctx.data(parent.task, params["part"], params["n"])
    train_classifier(child.module, data.x, data.y, _config(params, ctx.seed, "recover_epochs"))
    child.train_data = data.name
    child.facts.update(
        noised_accuracy=round(noised_accuracy, 4),
        relative_change=_weights_changed(parent.module, child.module),
        **_behaviour_facts(parent, child),
    )
    return child


@register_derivation("permute_rescale", "evade-rescale", {"low": 0.25, "high": 4.0, "tolerance": 1e-4})
def permute_rescale(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Permute hidden units and rescale them exactly: the same function, very different weights.

    Attacks weight signals that are not invariant to per-unit scaling (raw weight cosines, layer
    statistics such as ``weight_stats``, matching by weight values) and checks the claim of
    invariant ones. After the permutation of ``permute``, every unit gets a factor drawn
    log-uniformly in ``[low, high]`` wherever the architecture makes it exact
    (:func:`progenitor.zoo.surgery.rescale_units`: ReLU/pooling groups, the layers before a
    BatchNorm, attention's query/key and value/output); groups behind GELU or LayerNorm (the
    ViT's MLP and residual stream) are only permuted and listed in ``not_rescaled``. The
    logits must stay within ``tolerance`` x max(1, largest parent logit) on test images.
    """
    child = _copy(parent)
    generator = ctx.generator()
    perms = surgery.permute_units(child.module, generator)  # type: ignore[arg-type]
    rescaled = surgery.rescale_units(child.module, generator, float(params["low"]), float(params["high"]))  # type: ignore[arg-type]
    x = get_part(parent.task, "test", 512).x
    before, after = predict_logits(parent.module, x), predict_logits(child.module, x)
    diff = float(np.abs(after - before).max())
    if diff > float(params["tolerance"]) * max(1.0, float(np.abs(before).max())):
        raise ProgenitorError(f"permutation and rescaling changed the function by {diff:.2e} (a bug)")
    child.facts.update(
        max_output_change=diff,
        permuted={k: len(v) for k, v in perms.items()},
        relative_change=_weights_changed(parent.module, child.module),
        **rescaled,
    )
    return child


def _smooth_noise_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random smooth images in ``[0, 1]``: coarse uniform grids (2x2 to 14x14) upsampled."""
    out = np.empty((n, 1, 28, 28), np.float32)
    sizes = rng.choice([2, 4, 7, 14], size=n)
    for size in (2, 4, 7, 14):
        rows = np.flatnonzero(sizes == size)
        if not len(rows):
            continue
        coarse = torch.from_numpy(rng.random((len(rows), 1, size, size), dtype=np.float32))
        out[rows] = F.interpolate(coarse, size=(28, 28), mode="bilinear", align_corners=False).numpy()
    contrast = rng.uniform(0.3, 1.0, size=(n, 1, 1, 1)).astype(np.float32)
    lo = out.min(axis=(1, 2, 3), keepdims=True)
    hi = out.max(axis=(1, 2, 3), keepdims=True)
    return ((out - lo) / np.maximum(hi - lo, 1e-6) * contrast).astype(np.float32)


def _far_inputs(n: int, digits_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Transfer images far from Fashion-MNIST: shifted, sometimes inverted digits and smooth noise."""
    digits = np.concatenate([np.asarray(get_part("digits", part).x) for part in ("source", "derive")])
    n_digits = round(n * digits_fraction)
    picked = digits[rng.integers(0, len(digits), size=n_digits)]
    shifts = rng.integers(-3, 4, size=(n_digits, 2))
    for i, (dy, dx) in enumerate(shifts):
        picked[i] = np.roll(picked[i], (int(dy), int(dx)), axis=(1, 2))
    flip = rng.random(n_digits) < 0.5
    picked[flip] = 1.0 - picked[flip]
    x = np.concatenate([picked, _smooth_noise_images(n - n_digits, rng)])
    return x[rng.permutation(n)], n_digits


@register_derivation(
    "distill_far",
    "evade-distill",
    {"arch": None, "n": 12000, "epochs": 4, "lr": 1e-3, "temperature": 4.0, "digits_fraction": 0.5},
)
def distill_far(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Distillation into a fresh student on inputs far from the parent's training data.

    Attacks signals tied to the parent's data and to its behaviour on that data (dataset
    inference, training-data genes, and everything white-box: the student has its own
    initialisation). Transfer set: ``n`` images, ``digits_fraction`` of them scikit-learn digits
    (randomly shifted by up to 3 pixels, half inverted), the rest random smooth noise images;
    targets: the parent's softened outputs (``temperature``), no labels. Facts: accuracy and
    agreement with the parent on the parent's test images.
    """
    x, n_digits = _far_inputs(int(params["n"]), float(params["digits_fraction"]), np.random.default_rng(ctx.seed))
    student, arch = _student(parent, params["arch"], ctx.seed)
    teacher = predict_logits(parent.module, x)
    distill(student, x, teacher, _config(params, ctx.seed), temperature=float(params["temperature"]))
    child = Built(student, arch, parent.task, "digits:source")
    child.facts.update(
        transfer_data="digits:source+derive (shifted, half inverted) and smooth noise images",
        digits=n_digits,
        smooth_noise=len(x) - n_digits,
        **_behaviour_facts(parent, child),
    )
    return child
