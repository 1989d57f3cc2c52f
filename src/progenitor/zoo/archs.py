"""Image architectures of the zoo: all take ``(n, 1, 28, 28)`` float32 and return class logits.

Every architecture is registered by name (``@register_arch``) and built with
:func:`create_arch`. Each registered factory is also importable, so a state dict saved by the zoo
loads with ``progenitor.models.load(path, arch="progenitor.zoo.archs:cnn")``; a head of another
size is reached as ``progenitor.zoo.archs:cnn_c4`` (see :func:`factory_ref`).

Each model describes its *hidden groups*: the sets of tensor axes that index one hidden unit
(a neuron, a channel, a residual-stream feature). Permuting a group's units consistently leaves the
function unchanged; dropping the same units from every member is structured pruning.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from progenitor.errors import ProgenitorError

INPUT_SHAPE = (1, 28, 28)
_ARCHS: dict[str, Callable[..., ZooNet]] = {}
_ARCH_DOCS: dict[str, str] = {}


@dataclass(frozen=True)
class HiddenGroup:
    """Tensor axes indexing one set of hidden units.

    Attributes:
        name: a label for the group (e.g. ``conv1``).
        size: number of units.
        members: ``(state_dict key, axis, repeat)``: unit ``i`` occupies indices
            ``i*repeat ... i*repeat+repeat-1`` of that axis (``repeat > 1`` where a channel is
            flattened into several features).
        config_key: the constructor argument holding the group's width when units may be
            dropped (structured pruning); None when the group cannot shrink.
        homogeneous: the units pass only through positively homogeneous operations (ReLU,
            max- or mean-pooling, residual sums of units scaled alike) between the members that
            produce them and the members that consume them, so scaling a unit's producers by
            ``c > 0`` and its consumers by ``1/c`` keeps the function (False behind GELU or
            LayerNorm).
    """

    name: str
    size: int
    members: tuple[tuple[str, int, int], ...]
    config_key: str | None = None
    homogeneous: bool = True


class ZooNet(nn.Module):
    """Base class: remembers its constructor config; exposes ``head`` and hidden groups."""

    arch_name: str = ""
    __jit_unused_properties__ = ["head"]  # noqa: RUF012  (TorchScript must not compile it)

    def __init__(self, num_classes: int, **config: Any) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.config = dict(config)

    @property
    def head(self) -> nn.Linear:
        """The final classification layer."""
        raise NotImplementedError

    def replace_head(self, num_classes: int) -> None:
        """Put a freshly initialised head with ``num_classes`` outputs in place of the old one."""
        raise NotImplementedError

    def hidden_groups(self) -> list[HiddenGroup]:
        """The permutable hidden-unit groups of this model."""
        raise NotImplementedError


def register_arch(name: str) -> Callable[[Callable[..., ZooNet]], Callable[..., ZooNet]]:
    """Decorator registering ``factory(num_classes=10, **config) -> ZooNet`` under ``name``."""

    def decorate(factory: Callable[..., ZooNet]) -> Callable[..., ZooNet]:
        if name in _ARCHS:
            raise ValueError(f"architecture {name!r} registered twice")
        _ARCHS[name] = factory
        _ARCH_DOCS[name] = (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else ""
        return factory

    return decorate


def list_archs() -> list[str]:
    """Names of the registered architectures."""
    return sorted(_ARCHS)


def describe_arch(name: str) -> str:
    """One-line description of an architecture."""
    return _ARCH_DOCS[name]


def create_arch(name: str, num_classes: int = 10, **config: Any) -> ZooNet:
    """A freshly initialised model of architecture ``name`` (uses torch's global RNG)."""
    if name not in _ARCHS:
        raise ProgenitorError(f"unknown architecture {name!r}; known: {', '.join(list_archs())}")
    return _ARCHS[name](num_classes=num_classes, **config)


def factory_ref(name: str, num_classes: int = 10) -> str:
    """The ``module:callable`` reference that rebuilds this architecture for a state dict."""
    if name not in _ARCHS:
        raise ProgenitorError(f"unknown architecture {name!r}")
    suffix = "" if num_classes == 10 else f"_c{num_classes}"
    return f"{__name__}:{name}{suffix}"


def __getattr__(attr: str) -> Callable[[], ZooNet]:
    """``<arch>_c<k>``: a no-argument factory of ``<arch>`` with ``k`` classes."""
    base, sep, classes = attr.rpartition("_c")
    if sep and base in _ARCHS and classes.isdigit():
        return functools.partial(create_arch, base, int(classes))
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _linear_group(
    name: str,
    size: int,
    out_layer: str,
    in_layer: str,
    repeat: int = 1,
    extra: tuple[tuple[str, int, int], ...] = (),
    config_key: str | None = None,
) -> HiddenGroup:
    """Units produced by ``out_layer`` (rows of weight, bias) and consumed by ``in_layer``."""
    members = ((f"{out_layer}.weight", 0, 1), (f"{out_layer}.bias", 0, 1), *extra, (f"{in_layer}.weight", 1, repeat))
    return HiddenGroup(name, size, members, config_key)


def _bn_members(bn: str) -> tuple[tuple[str, int, int], ...]:
    return tuple((f"{bn}.{p}", 0, 1) for p in ("weight", "bias", "running_mean", "running_var"))


# ---------------------------------------------------------------- MLP


class MLP(ZooNet):
    """Two hidden ReLU layers over the flattened image."""

    arch_name = "mlp"

    def __init__(self, num_classes: int = 10, h1: int = 256, h2: int = 128) -> None:
        super().__init__(num_classes, h1=h1, h2=h2)
        self.fc1 = nn.Linear(784, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, num_classes)``."""
        x = torch.relu(self.fc1(x.flatten(1)))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)

    @property
    def head(self) -> nn.Linear:
        return self.fc3

    def replace_head(self, num_classes: int) -> None:
        self.fc3 = nn.Linear(self.fc3.in_features, num_classes)
        self.num_classes = num_classes

    def hidden_groups(self) -> list[HiddenGroup]:
        return [
            _linear_group("fc1", self.fc1.out_features, "fc1", "fc2", config_key="h1"),
            _linear_group("fc2", self.fc2.out_features, "fc2", "fc3", config_key="h2"),
        ]


@register_arch("mlp")
def mlp(num_classes: int = 10, **config: Any) -> MLP:
    """MLP 784-256-128-k (ReLU)."""
    return MLP(num_classes, **config)


# ---------------------------------------------------------------- CNNs


class CNN(ZooNet):
    """Two 3x3 conv + max-pool stages, a hidden dense layer, then the head; optional BatchNorm."""

    def __init__(
        self, num_classes: int = 10, c1: int = 16, c2: int = 32, fc: int = 64, batchnorm: bool = False
    ) -> None:
        super().__init__(num_classes, c1=c1, c2=c2, fc=fc)
        self.batchnorm = batchnorm
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c1) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c2) if batchnorm else nn.Identity()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(c2 * 49, fc)
        self.fc2 = nn.Linear(fc, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, num_classes)``."""
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)

    @property
    def head(self) -> nn.Linear:
        return self.fc2

    def replace_head(self, num_classes: int) -> None:
        self.fc2 = nn.Linear(self.fc2.in_features, num_classes)
        self.num_classes = num_classes

    def hidden_groups(self) -> list[HiddenGroup]:
        bn1 = _bn_members("bn1") if self.batchnorm else ()
        bn2 = _bn_members("bn2") if self.batchnorm else ()
        return [
            _linear_group("conv1", self.conv1.out_channels, "conv1", "conv2", extra=bn1, config_key="c1"),
            _linear_group("conv2", self.conv2.out_channels, "conv2", "fc1", repeat=49, extra=bn2, config_key="c2"),
            _linear_group("fc1", self.fc1.out_features, "fc1", "fc2", config_key="fc"),
        ]


class PlainCNN(CNN):
    """Plain CNN (no normalisation)."""

    arch_name = "cnn"

    def __init__(self, num_classes: int = 10, c1: int = 16, c2: int = 32, fc: int = 64) -> None:
        super().__init__(num_classes, c1, c2, fc, batchnorm=False)


class BNCNN(CNN):
    """CNN with BatchNorm after each convolution."""

    arch_name = "cnn_bn"

    def __init__(self, num_classes: int = 10, c1: int = 16, c2: int = 32, fc: int = 64) -> None:
        super().__init__(num_classes, c1, c2, fc, batchnorm=True)


@register_arch("cnn")
def cnn(num_classes: int = 10, **config: Any) -> PlainCNN:
    """Plain CNN: conv16-pool-conv32-pool-fc64-k."""
    return PlainCNN(num_classes, **config)


@register_arch("cnn_bn")
def cnn_bn(num_classes: int = 10, **config: Any) -> BNCNN:
    """CNN with BatchNorm: conv16-bn-pool-conv32-bn-pool-fc64-k."""
    return BNCNN(num_classes, **config)


# ---------------------------------------------------------------- residual net


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and a skip (1x1 conv projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.project = stride != 1 or c_in != c_out
        self.skip = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
            if self.project
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.skip(x))


class ResNet(ZooNet):
    """A small residual net: stem, one block at full resolution, one strided block, pooling."""

    arch_name = "resnet"

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__(num_classes, width=width)
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.block1 = BasicBlock(width, width, 1)
        self.block2 = BasicBlock(width, 2 * width, 2)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, num_classes)``."""
        x = torch.relu(self.bn(self.stem(x)))
        x = self.block2(self.block1(x))
        return self.fc(x.mean(dim=(2, 3)))

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def replace_head(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.fc.in_features, num_classes)
        self.num_classes = num_classes

    def hidden_groups(self) -> list[HiddenGroup]:
        w = self.config["width"]
        stream1 = (
            ("stem.weight", 0, 1),
            *_bn_members("bn"),
            ("block1.conv1.weight", 1, 1),
            ("block1.conv2.weight", 0, 1),
            *_bn_members("block1.bn2"),
            ("block2.conv1.weight", 1, 1),
            ("block2.skip.0.weight", 1, 1),
        )
        inner1 = (("block1.conv1.weight", 0, 1), *_bn_members("block1.bn1"), ("block1.conv2.weight", 1, 1))
        inner2 = (("block2.conv1.weight", 0, 1), *_bn_members("block2.bn1"), ("block2.conv2.weight", 1, 1))
        stream2 = (
            ("block2.conv2.weight", 0, 1),
            *_bn_members("block2.bn2"),
            ("block2.skip.0.weight", 0, 1),
            *_bn_members("block2.skip.1"),
            ("fc.weight", 1, 1),
        )
        return [
            HiddenGroup("stream1", w, stream1),
            HiddenGroup("block1.inner", w, inner1),
            HiddenGroup("block2.inner", 2 * w, inner2),
            HiddenGroup("stream2", 2 * w, stream2),
        ]


@register_arch("resnet")
def resnet(num_classes: int = 10, **config: Any) -> ResNet:
    """Small ResNet: stem16, basic block 16, strided basic block 32, global pooling."""
    return ResNet(num_classes, **config)


# ---------------------------------------------------------------- vision transformer


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block: self-attention and a GELU MLP, both residual."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output, same shape as the input."""
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))


class ViT(ZooNet):
    """A small vision transformer over 7x7 patches with a class token."""

    arch_name = "vit"

    def __init__(
        self, num_classes: int = 10, dim: int = 64, depth: int = 2, heads: int = 4, hidden: int = 128, patch: int = 7
    ) -> None:
        super().__init__(num_classes, dim=dim, depth=depth, heads=heads, hidden=hidden, patch=patch)
        n_patches = (28 // patch) ** 2
        self.patch = nn.Conv2d(1, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n_patches + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, num_classes)`` from the class token."""
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.fc(self.norm(x[:, 0]))

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def replace_head(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.fc.in_features, num_classes)
        self.num_classes = num_classes

    def hidden_groups(self) -> list[HiddenGroup]:
        dim = self.config["dim"]
        stream: list[tuple[str, int, int]] = [
            ("patch.weight", 0, 1),
            ("patch.bias", 0, 1),
            ("cls", 2, 1),
            ("pos", 2, 1),
        ]
        groups = []
        for i, block in enumerate(self.blocks):
            b = f"blocks.{i}"
            stream += [
                (f"{b}.norm1.weight", 0, 1),
                (f"{b}.norm1.bias", 0, 1),
                (f"{b}.attn.in_proj_weight", 1, 1),
                (f"{b}.attn.out_proj.weight", 0, 1),
                (f"{b}.attn.out_proj.bias", 0, 1),
                (f"{b}.norm2.weight", 0, 1),
                (f"{b}.norm2.bias", 0, 1),
                (f"{b}.fc1.weight", 1, 1),
                (f"{b}.fc2.weight", 0, 1),
                (f"{b}.fc2.bias", 0, 1),
            ]
            mlp = _linear_group(f"{b}.mlp", block.fc1.out_features, f"{b}.fc1", f"{b}.fc2")
            groups.append(replace(mlp, homogeneous=False))  # GELU
        stream += [("norm.weight", 0, 1), ("norm.bias", 0, 1), ("fc.weight", 1, 1)]
        return [HiddenGroup("stream", dim, tuple(stream), homogeneous=False), *groups]  # LayerNorm


@register_arch("vit")
def vit(num_classes: int = 10, **config: Any) -> ViT:
    """Small ViT: 7x7 patches, dim 64, 2 pre-norm blocks, 4 heads, MLP 128."""
    return ViT(num_classes, **config)
