"""Named zoo presets: ``smoke`` (seconds, for tests), ``standard`` (the benchmark), ``text``, ``evasion``.

A preset is a function returning a :class:`~progenitor.zoo.spec.ZooSpec`; register more with
``@register_preset``. Data tags in ids: ``fa``/``fb`` are the two disjoint halves of Fashion-MNIST's
source part, ``dg`` is scikit-learn's digits.
"""

from __future__ import annotations

from collections.abc import Callable

from progenitor.errors import ProgenitorError
from progenitor.zoo.spec import SPLITS, SpecBuilder, ZooSpec

_PRESETS: dict[str, tuple[Callable[[], ZooSpec], str]] = {}


def register_preset(name: str, description: str) -> Callable[[Callable[[], ZooSpec]], Callable[[], ZooSpec]]:
    """Decorator registering a preset function under ``name``."""

    def decorate(fn: Callable[[], ZooSpec]) -> Callable[[], ZooSpec]:
        _PRESETS[name] = (fn, description)
        return fn

    return decorate


def list_presets() -> dict[str, str]:
    """Preset names and one-line descriptions."""
    _load_optional()
    return {name: desc for name, (_, desc) in sorted(_PRESETS.items())}


def get_preset(name: str) -> ZooSpec:
    """The spec of preset ``name``."""
    _load_optional()
    if name not in _PRESETS:
        raise ProgenitorError(f"unknown zoo preset {name!r}; known: {', '.join(sorted(_PRESETS))}")
    return _PRESETS[name][0]()


def _load_optional() -> None:
    """Register presets defined next to their (optional-dependency) operations."""
    from progenitor.zoo import text_presets  # noqa: F401


# ---------------------------------------------------------------- smoke


@register_preset("smoke", "16 small image models (3 sources, 13 derived) in seconds")
def smoke() -> ZooSpec:
    """Two MLP sources (seeds 0, 1) and a CNN on Fashion-MNIST, with thirteen derived models."""
    b = SpecBuilder("smoke", "tiny image zoo for tests and demos")
    src = {"task": "fmnist", "part": "source-a", "n": 8000, "epochs": 3}
    a = b.source("mlp-fa-s0", arch="mlp", seed=0, split="train", **src)
    a1 = b.source("mlp-fa-s1", arch="mlp", seed=1, split="test", **src)
    c = b.source("cnn-fa-s0", arch="cnn", seed=0, split="val", **src)
    small = {"n": 2000}
    ft = b.derive(a, "ft", "finetune", lr=1e-3, **small)
    b.derive(a, "head", "finetune_head", epochs=1, **small)
    b.derive(a, "prune50", "prune", sparsity=0.5)
    b.derive(a, "prune-ch50", "prune_channels", fraction=0.5, **small)
    b.derive(a, "onnx-int8", "onnx_int8")
    b.derive(a, "fp16", "fp16")
    b.derive(a, "permute", "permute", seed=1)
    b.derive(a, "noise", "noise", seed=1, relative_std=0.02)
    b.derive(a, "distill", "distill", seed=2, n=8000, epochs=3)
    b.derive(ft, "prune50", "prune", sparsity=0.5)
    b.derive(c, "extract-probs-mlp", "extract_probs", seed=3, arch="mlp", n=8000, epochs=3)
    b.derive(a1, "ft", "finetune", lr=1e-3, **small)
    b.derive(a1, "noise", "noise", seed=1, relative_std=0.02)
    b.probe("fmnist-probe", ("fmnist", 128))
    return b.build(held_out_archs=("cnn",), held_out_kinds=("permute", "extract"))


# ---------------------------------------------------------------- standard

IMAGE_ARCHS = ("mlp", "cnn", "cnn_bn", "resnet", "vit")
_STRUCTURED = ("mlp", "cnn", "cnn_bn")
_OTHER_ARCH = {"mlp": "cnn", "cnn": "mlp", "cnn_bn": "resnet", "resnet": "cnn_bn", "vit": "cnn"}
_LR = {"resnet": 3e-3}


def _lr(arch: str) -> float:
    """Learning rate for training an architecture from scratch (the small ResNet wants more)."""
    return _LR.get(arch, 1e-3)


def _full_battery(b: SpecBuilder, root: str, arch: str) -> None:
    """Every image derivation, at several strengths, plus chains up to depth 3."""
    other = _OTHER_ARCH[arch]
    ft_lo = b.derive(root, "ft-short-lo", "finetune", epochs=1, lr=1e-4)
    ft_hi = b.derive(root, "ft-short-hi", "finetune", epochs=1, lr=1e-3)
    ft_long_lo = b.derive(root, "ft-long-lo", "finetune", seed=1, epochs=5, lr=1e-4)
    b.derive(root, "ft-long-hi", "finetune", seed=1, epochs=5, lr=1e-3)
    b.derive(root, "head", "finetune_head")
    coarse = b.derive(root, "transfer-coarse", "transfer", task="fmnist-coarse")
    b.derive(root, "transfer-digits", "transfer", task="digits", n=449, head_epochs=3, epochs=8)
    for s in (20, 50, 80):
        b.derive(root, f"prune{s}", "prune", sparsity=s / 100)
    for s in (50, 80):
        b.derive(root, f"prune{s}-rec", "prune", sparsity=s / 100, recover_epochs=1)
    if arch in _STRUCTURED:
        b.derive(root, "prune-ch50", "prune_channels", fraction=0.5)
    b.derive(root, "int8", "int8")
    b.derive(root, "fp16", "fp16")
    b.derive(root, "onnx", "onnx")
    b.derive(root, "onnx-int8", "onnx_int8")
    d_same = b.derive(root, "distill-same", "distill", seed=11, lr=_lr(arch))
    b.derive(root, f"distill-{other}", "distill", seed=12, arch=other, lr=_lr(other))
    b.derive(root, "extract-labels", "extract_labels", seed=13, lr=_lr(arch))
    b.derive(root, f"extract-probs-{other}", "extract_probs", seed=14, arch=other, lr=_lr(other))
    b.derive(root, "adv", "adversarial")
    perm = b.derive(root, "permute", "permute", seed=21)
    b.derive(root, "noise1", "noise", seed=22, relative_std=0.01)
    b.derive(root, "noise5", "noise", seed=23, relative_std=0.05)
    lora = b.derive(root, "lora", "lora", seed=24)
    b.derive((ft_hi, ft_long_lo), "merge-ft-long-lo", "merge")
    # chains (grandchildren and deeper)
    pruned = b.derive(ft_hi, "prune50", "prune", sparsity=0.5)
    b.derive(pruned, "onnx-int8", "onnx_int8")
    b.derive(perm, "ft-short-lo", "finetune", seed=2, epochs=1, lr=1e-4)
    b.derive(d_same, "ft-short-hi", "finetune", seed=3, epochs=1, lr=1e-3)
    b.derive(coarse, "prune50-rec", "prune", sparsity=0.5, recover_epochs=1)
    b.derive(lora, "int8", "int8")
    b.derive(ft_lo, "noise1", "noise", seed=25, relative_std=0.01)


def _light_battery(b: SpecBuilder, root: str, arch: str) -> None:
    """A few derivations: enough for every source to have children."""
    ft = b.derive(root, "ft-short-hi", "finetune", epochs=1, lr=1e-3)
    b.derive(root, "prune50", "prune", sparsity=0.5)
    b.derive(root, "onnx-int8", "onnx_int8")
    b.derive(root, "noise1", "noise", seed=22, relative_std=0.01)
    other = _OTHER_ARCH[arch]
    b.derive(root, f"extract-probs-{other}", "extract_probs", seed=14, arch=other, lr=_lr(other))
    b.derive(ft, "permute", "permute", seed=21)


@register_preset(
    "standard",
    "671 image models: 5 architectures x 7 sources (+3 on digits), every derivation, chains",
)
def standard() -> ZooSpec:
    """The benchmark zoo (images).

    Per architecture: six independent sources on Fashion-MNIST half A (seeds 0-2 with the full
    derivation battery, seeds 3-5 with a light one), one source on half B and, for three
    architectures, one on digits (each with a light battery).
    """
    b = SpecBuilder("standard", "image zoo for training and benchmarking provenance methods")
    for i, arch in enumerate(IMAGE_ARCHS):
        lr = _lr(arch)
        for seed in range(6):
            root = b.source(
                f"{arch}-fa-s{seed}",
                arch=arch,
                seed=seed,
                split=SPLITS[seed % 3],
                task="fmnist",
                part="source-a",
                n=12000,
                epochs=4,
                lr=lr,
            )
            (_full_battery if seed < 3 else _light_battery)(b, root, arch)
        root = b.source(
            f"{arch}-fb-s100",
            arch=arch,
            seed=100,
            split=SPLITS[i % 3],
            task="fmnist",
            part="source-b",
            n=12000,
            epochs=4,
            lr=lr,
        )
        _light_battery(b, root, arch)
    for i, arch in enumerate(("mlp", "cnn", "resnet")):
        root = b.source(
            f"{arch}-dg-s200",
            arch=arch,
            seed=200,
            split=SPLITS[i % 3],
            task="digits",
            part="source",
            n=988,
            epochs=25,
            lr=_LR.get(arch, 1e-3),
        )
        b.derive(root, "ft-short-hi", "finetune", epochs=3, lr=1e-3, n=449)
        b.derive(root, "prune50", "prune", sparsity=0.5)
        b.derive(root, "noise1", "noise", seed=22, relative_std=0.01)
    b.probe("fmnist-probe", ("fmnist", 256))
    b.probe("digits-probe", ("digits", 90))
    return b.build(held_out_archs=("vit",), held_out_kinds=("extract", "permute", "lora"))


# ---------------------------------------------------------------- evasion

EVASION_ARCHS = ("mlp", "cnn", "cnn_bn")
EVASION_KINDS = ("evade-finetune", "evade-noise", "evade-rescale", "evade-distill")


def _evasion_battery(b: SpecBuilder, root: str, seed: int) -> None:
    """The adaptive derivations plus a plain fine-tune and distillation for reference.

    Derivation seeds are ``1000 + 10 x source seed + k`` (distinct spec seeds; the randomness
    itself comes from each model's spec hash, ``progenitor.zoo.build.model_seed``).
    """
    s = 1000 + 10 * seed
    b.derive(root, "ft", "finetune", seed=s, epochs=1, lr=1e-3)
    b.derive(root, "distill", "distill", seed=s + 1)
    b.derive(root, "evade-ft", "evade_finetune", seed=s + 2)
    b.derive(root, "noise25-rec", "noise_recover", seed=s + 3, relative_std=0.25)
    b.derive(root, "noise100-rec", "noise_recover", seed=s + 4, relative_std=1.0)
    b.derive(root, "permute-rescale", "permute_rescale", seed=s + 5)
    b.derive(root, "distill-far", "distill_far", seed=s + 6)


@register_preset("evasion", "96 image models: adaptive derivations aimed at each provenance signal (test split)")
def evasion() -> ZooSpec:
    """Adaptive evasion: derivations made to hide their parent, on mlp, cnn and cnn_bn.

    Per architecture, sources trained like ``standard``'s (Fashion-MNIST half A, 12,000 images,
    4 epochs), each with its own seed:

    * ``test``: seeds 0-2, each with the evasion battery (``evade_finetune``, ``noise_recover`` at
      25 % and 100 % noise, ``permute_rescale``, ``distill_far``) and a plain fine-tune and
      distillation for reference; the other two test sources are its hardest negatives;
    * ``val``: seeds 3-4, bare sources: the independent pairs ``progenitor bench`` sets its
      thresholds on;
    * ``train``: seeds 5-6 with the plain fine-tune and distillation only, so that a calibration
      fitted on the train split (``bench --calibration auto``) has never seen an evasion.

    The evasion kinds are held out under the ``kind`` scheme.
    """
    b = SpecBuilder("evasion", "adaptive derivations aimed at each provenance signal, with reference derivations")
    source = {"task": "fmnist", "part": "source-a", "n": 12000, "epochs": 4}
    for arch in EVASION_ARCHS:
        for seed in range(7):
            split = "test" if seed < 3 else "val" if seed < 5 else "train"
            root = b.source(f"{arch}-fa-s{seed}", arch=arch, seed=seed, split=split, **source)
            if split == "test":
                _evasion_battery(b, root, seed)
            elif split == "train":
                s = 1000 + 10 * seed
                b.derive(root, "ft", "finetune", seed=s, epochs=1, lr=1e-3)
                b.derive(root, "distill", "distill", seed=s + 1)
    b.probe("fmnist-probe", ("fmnist", 256))
    return b.build(held_out_kinds=EVASION_KINDS)
