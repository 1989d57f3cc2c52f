"""Weight-level operations on zoo models: permutation, pruning, noise, averaging, rounding, LoRA.

These are the building blocks of the derivations in :mod:`progenitor.zoo.derivations`; each one
acts on a module's state dict and documents exactly what it changes, so tests can check it.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from progenitor.zoo.archs import HiddenGroup, ZooNet, create_arch

# Leaf modules whose ``weight`` is a dense or convolutional kernel (pruned, quantized, LoRA'd).
KERNEL_TYPES = (nn.Linear, nn.Conv2d)


def kernel_names(model: nn.Module) -> list[str]:
    """State-dict keys of the model's dense and convolution kernels, in module order."""
    names = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, KERNEL_TYPES)]
    names += [f"{n}.in_proj_weight" for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    return names


def _expand(units: torch.Tensor, repeat: int) -> torch.Tensor:
    """Indices of the features that ``units`` occupy when each unit spans ``repeat`` features."""
    if repeat == 1:
        return units
    return (units[:, None] * repeat + torch.arange(repeat)[None, :]).reshape(-1)


def _take(state: dict[str, torch.Tensor], group: HiddenGroup, units: torch.Tensor) -> None:
    for key, axis, repeat in group.members:
        state[key] = state[key].index_select(axis, _expand(units, repeat)).contiguous()


def permute_units(model: ZooNet, generator: torch.Generator) -> dict[str, list[int]]:
    """Permute every hidden group of ``model`` in place (function unchanged); returns the perms."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    perms = {}
    for group in model.hidden_groups():
        perm = torch.randperm(group.size, generator=generator)
        _take(state, group, perm)
        perms[group.name] = perm.tolist()
    model.load_state_dict(state)
    return perms


def _log_uniform(n: int, generator: torch.Generator, low: float, high: float) -> torch.Tensor:
    """``n`` factors drawn log-uniformly in ``[low, high]``."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.exp(np.log(low) + u * (np.log(high) - np.log(low)))


def _axis_scale(tensor: torch.Tensor, axis: int, factors: torch.Tensor) -> torch.Tensor:
    """``tensor`` with its slices along ``axis`` multiplied by ``factors``."""
    shape = [1] * tensor.dim()
    shape[axis] = len(factors)
    return (tensor.double() * factors.reshape(shape)).to(tensor.dtype)


def _prefix(key: str) -> str:
    return key.rpartition(".")[0]


def rescale_units(model: ZooNet, generator: torch.Generator, low: float = 0.25, high: float = 4.0) -> dict[str, Any]:
    """Rescale hidden units in place where the function provably stays the same.

    Three exact reparameterisations, each unit with its own factor drawn log-uniformly in
    ``[low, high]``:

    * **before BatchNorm**: a dense/conv layer registered right before a BatchNorm of its width
      has output channel ``k`` multiplied by ``a``; the BatchNorm's running mean is multiplied by
      ``a`` and its running variance set to ``a^2 var + eps (a^2 - 1)``, so that
      ``(a z - a mu) / sqrt(var' + eps)`` equals the old normalised value (``a`` is replaced by
      ``1/a`` where the new variance would not be positive);
    * **homogeneous hidden groups** (``HiddenGroup.homogeneous``: ReLU, pooling, residual sums):
      the members producing unit ``k`` (dense/conv rows and biases, or the affine weight and bias
      of the BatchNorm that produces it) are multiplied by ``c``, the members consuming it (input
      columns of the next layers) divided by ``c``;
    * **attention**: per feature of every ``nn.MultiheadAttention``, the query projection row
      (and bias) times ``c``, the key row divided by ``c`` (scores unchanged), and the value row
      times ``c'`` with the output projection's column divided by ``c'``.

    Groups behind GELU or LayerNorm are left alone and listed under ``not_rescaled``.
    Returns facts: units rescaled per layer before a norm, per group and per attention module
    (features), and the groups not rescaled.
    """
    modules = dict(model.named_modules())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    facts: dict[str, Any] = {"before_norm": {}, "groups": {}, "attention": {}, "not_rescaled": []}

    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    for (name, layer), (bn_name, bn) in itertools.pairwise(leaves):
        if not (isinstance(layer, KERNEL_TYPES) and isinstance(bn, nn.modules.batchnorm._BatchNorm)):
            continue
        if bn.running_var is None or layer.weight.shape[0] != bn.num_features:
            continue
        a = _log_uniform(bn.num_features, generator, low, high)
        var = state[f"{bn_name}.running_var"].double()
        new_var = a**2 * var + bn.eps * (a**2 - 1)
        a = torch.where(new_var > 0, a, 1 / a)
        state[f"{name}.weight"] = _axis_scale(state[f"{name}.weight"], 0, a)
        if f"{name}.bias" in state:
            state[f"{name}.bias"] = _axis_scale(state[f"{name}.bias"], 0, a)
        state[f"{bn_name}.running_mean"] = _axis_scale(state[f"{bn_name}.running_mean"], 0, a)
        state[f"{bn_name}.running_var"] = (a**2 * var + bn.eps * (a**2 - 1)).to(bn.running_var.dtype)
        facts["before_norm"][name] = bn.num_features

    for group in model.hidden_groups():
        if not group.homogeneous:
            facts["not_rescaled"].append(group.name)
            continue
        c = _log_uniform(group.size, generator, low, high)
        norms = {_prefix(k) for k, _, _ in group.members if k.endswith(".running_mean")}
        for key, axis, repeat in group.members:
            factors = c.repeat_interleave(repeat)
            if _prefix(key) in norms:
                if key.endswith((".weight", ".bias")):  # the BatchNorm's affine output
                    state[key] = _axis_scale(state[key], axis, factors)
            elif axis == 1:  # a consumer: input columns of the next layer
                state[key] = _axis_scale(state[key], axis, 1 / factors)
            elif axis == 0 and not norms:  # a producer with nothing normalising after it
                state[key] = _axis_scale(state[key], axis, factors)
            elif axis != 0:
                raise ValueError(f"{group.name}: cannot rescale member {key} (axis {axis})")
        facts["groups"][group.name] = group.size

    for name, module in modules.items():
        if not isinstance(module, nn.MultiheadAttention) or not module._qkv_same_embed_dim:
            continue
        dim = module.embed_dim
        qk, v = _log_uniform(dim, generator, low, high), _log_uniform(dim, generator, low, high)
        rows = torch.cat([qk, 1 / qk, v])
        state[f"{name}.in_proj_weight"] = _axis_scale(state[f"{name}.in_proj_weight"], 0, rows)
        if module.in_proj_bias is not None:
            state[f"{name}.in_proj_bias"] = _axis_scale(state[f"{name}.in_proj_bias"], 0, rows)
        state[f"{name}.out_proj.weight"] = _axis_scale(state[f"{name}.out_proj.weight"], 1, 1 / v)
        facts["attention"][name] = dim
    model.load_state_dict(state)
    return facts


def drop_units(model: ZooNet, fraction: float) -> tuple[ZooNet, dict[str, int]]:
    """Structured pruning: a narrower copy without the ``fraction`` weakest units of each group.

    Only groups with a ``config_key`` shrink. A unit's strength is the L2 norm of the weights that
    produce it (the group's first member). Returns the new model and the new widths.
    """
    state = {k: v.clone() for k, v in model.state_dict().items()}
    config = dict(model.config)
    widths = {}
    for group in model.hidden_groups():
        if group.config_key is None:
            continue
        key, axis, _ = group.members[0]
        producer = state[key].transpose(0, axis).reshape(group.size, -1)
        keep_n = max(1, round(group.size * (1 - fraction)))
        keep = torch.argsort(producer.norm(dim=1), descending=True, stable=True)[:keep_n]
        _take(state, group, torch.sort(keep).values)
        config[group.config_key] = keep_n
        widths[group.config_key] = keep_n
    smaller = create_arch(model.arch_name, model.num_classes, **config)
    smaller.load_state_dict(state)
    smaller.eval()
    return smaller, widths


def magnitude_masks(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Per-kernel masks keeping the largest-magnitude ``1 - sparsity`` of each kernel's weights."""
    state = model.state_dict()
    masks = {}
    for name in kernel_names(model):
        weight = state[name]
        n_zero = round(sparsity * weight.numel())
        mask = torch.ones(weight.numel(), dtype=torch.bool)
        if n_zero:
            order = torch.argsort(weight.abs().reshape(-1), stable=True)
            mask[order[:n_zero]] = False
        masks[name] = mask.reshape(weight.shape)
    return masks


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked-out kernel weights in place."""
    tensors = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            tensors[name].mul_(mask.to(tensors[name].dtype))


def kernel_sparsity(state: dict[str, np.ndarray] | dict[str, torch.Tensor], names: list[str]) -> float:
    """Fraction of exactly-zero entries over the named kernels."""
    zeros = total = 0
    for name in names:
        value = np.asarray(state[name])
        zeros += int((value == 0).sum())
        total += value.size
    return zeros / max(total, 1)


def add_noise(model: nn.Module, relative_std: float, generator: torch.Generator) -> None:
    """Add Gaussian noise to every parameter, std = ``relative_std`` x that tensor's own std."""
    with torch.no_grad():
        for param in model.parameters():
            scale = float(param.std()) if param.numel() > 1 else float(param.abs().mean())
            noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
            param.add_(noise * (relative_std * scale))


def average_states(models: list[nn.Module]) -> dict[str, torch.Tensor]:
    """Uniform average of the models' float tensors (integer buffers taken from the first)."""
    states = [m.state_dict() for m in models]
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = torch.stack([s[key] for s in states]).mean(dim=0)
        else:
            out[key] = first.clone()
    return out


def round_int8(model: nn.Module) -> dict[str, float]:
    """Round every kernel to symmetric per-output-channel int8 and back (weight-only int8).

    Returns the max absolute rounding error per kernel (at most half a quantization step).
    """
    errors = {}
    tensors = dict(model.named_parameters())
    with torch.no_grad():
        for name in kernel_names(model):
            weight = tensors[name]
            flat = weight.reshape(weight.shape[0], -1)
            scale = flat.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
            rounded = (torch.round(flat / scale).clamp(-127, 127) * scale).reshape(weight.shape)
            errors[name] = float((rounded - weight).abs().max())
            weight.copy_(rounded)
    return errors


def round_fp16(model: nn.Module) -> None:
    """Round every float parameter and buffer to float16 and back, in place."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


class LowRankDelta(nn.Module):
    """A LoRA parametrization: ``W + (B @ A) * scale`` over the kernel flattened to 2-D."""

    def __init__(self, shape: torch.Size, rank: int, alpha: float) -> None:
        super().__init__()
        fan_in = int(np.prod(shape[1:]))
        self.shape = shape
        self.scale = alpha / rank
        self.A = nn.Parameter(torch.randn(rank, fan_in) / np.sqrt(fan_in))
        self.B = nn.Parameter(torch.zeros(shape[0], rank))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The adapted weight."""
        return weight + (self.B @ self.A).reshape(self.shape) * self.scale


def attach_lora(model: nn.Module, rank: int, alpha: float) -> list[nn.Parameter]:
    """Attach LoRA to every Linear/Conv2d kernel (wider than ``rank``); return the new params."""
    params = []
    for module in model.modules():
        if isinstance(module, KERNEL_TYPES) and min(module.weight.shape[0], module.weight[0].numel()) > rank:
            delta = LowRankDelta(module.weight.shape, rank, alpha)
            parametrize.register_parametrization(module, "weight", delta)
            params += [delta.A, delta.B]
    return params


def merge_lora(model: nn.Module, like: nn.Module) -> nn.Module:
    """Fold every LoRA delta into its kernel; returns a copy of ``like`` holding the result.

    Removing a parametrization re-registers the weight after the bias; loading the merged state
    into a copy of the original module keeps the state dict in forward order.
    """
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    merged = clone(like)
    merged.load_state_dict(model.state_dict())
    return merged


def clone(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode."""
    copied = copy.deepcopy(model)
    copied.eval()
    return copied
