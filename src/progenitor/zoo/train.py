"""Deterministic training, fine-tuning and distillation loops for the zoo's image models.

Every loop seeds torch from its ``seed`` argument and shuffles with a numpy generator of that seed,
so the same call with the same thread count gives bit-identical weights. The builder pins torch to
a fixed number of threads (:func:`pinned_threads`) because a different count changes the sums.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from progenitor.errors import ProgenitorError

ZOO_THREADS = 2
THREADS_ENV = "PROGENITOR_ZOO_THREADS"


def zoo_threads() -> int:
    """Torch threads the zoo trains with: 2, or ``$PROGENITOR_ZOO_THREADS``.

    The count is part of every model's spec hash: the same seed gives bit-identical weights only
    with the same thread count. On a machine shared with other jobs one thread can be several
    times faster than two (no waiting at thread barriers).
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return ZOO_THREADS
    if not value.isdigit() or int(value) < 1:
        raise ProgenitorError(f"{THREADS_ENV} must be a positive integer, not {value!r}")
    return int(value)


@contextlib.contextmanager
def pinned_threads(n: int | None = None) -> Iterator[None]:
    """Run the block with torch pinned to ``n`` intra-op threads and denormals flushed to zero.

    Soft targets of a trained teacher hold probabilities small enough that the distillation loss
    computes on denormal floats, which run 10-20x slower on x86 CPUs; flushing them keeps every
    loop fast and changes no result that matters. The thread count is restored afterwards and
    flushing is switched off again.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n or zoo_threads())
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(before)


def seed_everything(seed: int) -> None:
    """Seed torch's global generator (initialisation, dropout)."""
    torch.manual_seed(seed)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training loop.

    Attributes:
        epochs: passes over the data.
        lr: Adam learning rate.
        batch_size: minibatch size.
        weight_decay: Adam weight decay.
        seed: seeds initialisation of anything new and the shuffling order.
    """

    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 128
    weight_decay: float = 0.0
    seed: int = 0


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def fit(
    model: nn.Module,
    x: np.ndarray,
    loss_fn: Callable[[torch.Tensor, np.ndarray], torch.Tensor],
    config: TrainConfig,
    params: list[nn.Parameter] | None = None,
    after_step: Callable[[], None] | None = None,
    perturb: Callable[[nn.Module, torch.Tensor, np.ndarray], torch.Tensor] | None = None,
    freeze_norm_stats: bool = False,
) -> nn.Module:
    """The one training loop: Adam over minibatches of ``x`` for ``config.epochs`` epochs.

    Args:
        model: trained in place (and returned), left in eval mode.
        x: inputs, ``(n, ...)`` float32.
        loss_fn: ``loss_fn(logits, index)`` for the minibatch at rows ``index``.
        config: epochs, learning rate, batch size, seed.
        params: the parameters to train (default: all of the model's).
        after_step: called after every optimiser step (e.g. to re-apply a pruning mask).
        perturb: ``perturb(model, xb, index)`` returns the inputs to train on (adversarial).
        freeze_norm_stats: keep BatchNorm running statistics fixed (for head-only training).
    """
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    trainable = list(params) if params is not None else list(model.parameters())
    optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    data = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    for _ in range(config.epochs):
        for index in _batches(len(x), config.batch_size, rng):
            xb = data[index]
            if perturb is not None:
                xb = perturb(model, xb, index)
            model.train()
            if freeze_norm_stats:
                for module in model.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
            loss = loss_fn(model(xb), index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                with torch.no_grad():
                    after_step()
    model.eval()
    return model


def train_classifier(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    params: list[nn.Parameter] | None = None,
    after_step: Callable[[], None] | None = None,
    perturb: Callable[[nn.Module, torch.Tensor, np.ndarray], torch.Tensor] | None = None,
    freeze_norm_stats: bool = False,
) -> nn.Module:
    """Cross-entropy training on labels ``y`` (see :func:`fit` for the arguments)."""
    labels = torch.from_numpy(np.asarray(y, np.int64))

    def loss(logits: torch.Tensor, index: np.ndarray) -> torch.Tensor:
        return F.cross_entropy(logits, labels[index])

    return fit(model, x, loss, config, params, after_step, perturb, freeze_norm_stats)


def distill(
    student: nn.Module,
    x: np.ndarray,
    teacher_logits: np.ndarray,
    config: TrainConfig,
    temperature: float = 4.0,
    labels: np.ndarray | None = None,
    alpha: float = 0.5,
) -> nn.Module:
    """Knowledge distillation: KL to the teacher's softened outputs (plus CE on ``labels``).

    Args:
        student: trained in place.
        x: transfer inputs.
        teacher_logits: the teacher's logits on ``x``.
        config: loop hyperparameters.
        temperature: softmax temperature for both sides.
        labels: true labels, mixed in with weight ``1 - alpha`` when given.
        alpha: weight of the distillation term when ``labels`` are given.
    """
    soft = torch.from_numpy(np.asarray(teacher_logits, np.float32))
    hard = None if labels is None else torch.from_numpy(np.asarray(labels, np.int64))

    def loss(logits: torch.Tensor, index: np.ndarray) -> torch.Tensor:
        target = F.softmax(soft[index] / temperature, dim=1)
        kd = F.kl_div(F.log_softmax(logits / temperature, dim=1), target, reduction="batchmean")
        kd = kd * temperature**2
        if hard is None:
            return kd
        return alpha * kd + (1 - alpha) * F.cross_entropy(logits, hard[index])

    return fit(student, x, loss, config)


def fgsm_perturb(epsilon: float, labels: np.ndarray) -> Callable[[nn.Module, torch.Tensor, np.ndarray], torch.Tensor]:
    """A ``perturb`` hook for :func:`fit`: half of each batch replaced by FGSM examples."""
    y = torch.from_numpy(np.asarray(labels, np.int64))

    def perturb(model: nn.Module, xb: torch.Tensor, index: np.ndarray) -> torch.Tensor:
        model.eval()
        adv = xb.clone().requires_grad_(True)
        loss = F.cross_entropy(model(adv), y[index])
        (grad,) = torch.autograd.grad(loss, adv)
        adv = (xb + epsilon * grad.sign()).clamp(0.0, 1.0).detach()
        half = len(xb) // 2
        return torch.cat([xb[:half], adv[half:]])

    return perturb


def predict_logits(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of ``model`` on ``x`` (eval mode, no gradients), float32 ``(n, k)``."""
    model.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], np.float32))
            outs.append(model(xb).float().numpy())
    return np.concatenate(outs)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows whose arg-max is the label."""
    return float((np.argmax(logits, axis=1) == y).mean())
