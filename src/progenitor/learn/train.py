"""Joint training of the DNA generator and the provenance classifier on labelled model pairs.

The whole training set is small (hundreds of models), so every step embeds every training model
(full batch) and takes the loss over all pairs: the DNA similarity loss on derived pairs with
mined hard negatives, plus the classifier's losses (P(derived) on every labelled pair, the
relation head on related/independent pairs, and the direction head on ancestor/descendant pairs
in both orders). The epoch count is chosen on the validation split; the classifier's relation
temperature is then fitted there, and the logits of the validation split's independent pairs are
kept as the null of the learned evidence.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from progenitor.dna import DNA
from progenitor.errors import ProgenitorError
from progenitor.learn.bundle import LearnedDNA, build
from progenitor.learn.inputs import BLOCKS, stack_inputs
from progenitor.learn.losses import dna_similarity_loss

DEFAULTS: dict[str, Any] = {
    "parts": list(BLOCKS),
    "dim": 64,
    "hidden": 128,
    "dropout": 0.1,
    "epochs": 300,
    "lr": 2e-3,
    "weight_decay": 1e-3,
    "temperature_loss": 0.1,
    "hard_negatives": 8,
    "lambda_similarity": 1.0,
    "seed": 0,
    "eval_every": 10,
}


@dataclass
class Pairs:
    """Labelled pairs over a list of models, by index."""

    source: np.ndarray
    target: np.ndarray
    derived: np.ndarray  # target descends from source
    related: np.ndarray  # same family (derived, reversed, siblings, cousins)

    def __len__(self) -> int:
        return len(self.source)

    @staticmethod
    def of(rows: list[tuple[int, int, bool, bool]]) -> Pairs:
        """From ``(source, target, derived, related)`` rows."""
        a = np.array(rows, dtype=np.int64).reshape(-1, 4)
        return Pairs(a[:, 0], a[:, 1], a[:, 2].astype(bool), a[:, 3].astype(bool))


@dataclass
class TrainingSet:
    """DNAs of every model, their family ids, and pairs per split (``train``, ``val``)."""

    dnas: list[DNA]
    families: list[str]
    pairs: dict[str, Pairs]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties counted half); NaN when one class is missing."""
    labels = labels.astype(bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    allv = np.concatenate([pos, neg])
    for value in np.unique(allv):  # average ranks of ties
        idx = allv == value
        ranks[idx] = ranks[idx].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


class _Model:
    """Tensors of a training set and the forward pass over pairs."""

    def __init__(self, data: TrainingSet, bundle: LearnedDNA, device: torch.device) -> None:
        self.device = device
        blocks, masks = stack_inputs(data.dnas)
        self.blocks = {k: self.tensor(v) for k, v in blocks.items()}
        self.masks = {k: self.tensor(v) for k, v in masks.items()}
        self.families = np.array(data.families)
        self.bundle = bundle

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        """``array`` as a tensor on the training device."""
        return torch.from_numpy(array).to(self.device)

    def probabilities(
        self, pairs: Pairs, z: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(relation logit, direction logit, P(derived)) for each pair."""
        if z is None:
            z = self.bundle.generator(self.blocks, self.masks)
        s, t = self.tensor(pairs.source), self.tensor(pairs.target)
        mom = self.blocks["moments"]
        has = self.masks["moments"][s] * self.masks["moments"][t]
        rel, direc = self.bundle.classifier(z[s], z[t], mom[s], mom[t], has)
        return rel, direc, torch.sigmoid(rel) * torch.sigmoid(direc)


def _loss(m: _Model, pairs: Pairs, cfg: dict[str, Any]) -> torch.Tensor:
    z = m.bundle.generator(m.blocks, m.masks)
    rel, direc, prob = m.probabilities(pairs, z)
    derived = m.tensor(pairs.derived).float()
    related = m.tensor(pairs.related).float()
    bce = torch.nn.functional.binary_cross_entropy
    loss = bce(prob.clamp(1e-6, 1 - 1e-6), derived)
    loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(rel, related)
    lineage = m.tensor(pairs.related & (pairs.derived | _reversed(pairs)))
    if lineage.any():
        loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(direc[lineage], derived[lineage])
    d = pairs.derived
    if d.any():
        anchors = m.tensor(pairs.source[d])
        negatives = m.tensor(m.families[None, :] != m.families[pairs.source[d]][:, None])
        loss = loss + cfg["lambda_similarity"] * dna_similarity_loss(
            z, anchors, m.tensor(pairs.target[d]), negatives, cfg["temperature_loss"], cfg["hard_negatives"]
        )
    return loss


def _reversed(pairs: Pairs) -> np.ndarray:
    """Pairs whose reverse is a derived pair (ancestor as target)."""
    forward = set(zip(pairs.source[pairs.derived].tolist(), pairs.target[pairs.derived].tolist(), strict=True))
    return np.array([(t, s) in forward for s, t in zip(pairs.source.tolist(), pairs.target.tolist(), strict=True)])


def with_reversed(pairs: Pairs) -> Pairs:
    """Add every derived pair in reverse (the child as source: related, not derived)."""
    d = pairs.derived
    existing = set(zip(pairs.source.tolist(), pairs.target.tolist(), strict=True))
    extra = [
        (t, s, False, True)
        for s, t in zip(pairs.source[d].tolist(), pairs.target[d].tolist(), strict=True)
        if (t, s) not in existing
    ]
    rows = (
        list(
            zip(
                pairs.source.tolist(),
                pairs.target.tolist(),
                pairs.derived.tolist(),
                pairs.related.tolist(),
                strict=True,
            )
        )
        + extra
    )
    return Pairs.of(rows)


def fit_temperature(rel: np.ndarray, direc: np.ndarray, derived: np.ndarray) -> float:
    """Temperature on the relation logit minimising the validation NLL of P(derived) (grid)."""
    best, best_t = math.inf, 1.0
    sig = 1 / (1 + np.exp(-direc))
    for t in np.exp(np.linspace(np.log(0.2), np.log(20), 60)):
        p = np.clip(sig / (1 + np.exp(-rel / t)), 1e-9, 1 - 1e-9)
        nll = -np.mean(derived * np.log(p) + (1 - derived) * np.log(1 - p))
        if nll < best:
            best, best_t = nll, float(t)
    return best_t


def fit(
    data: TrainingSet,
    config: dict[str, Any] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    device: str = "cpu",
) -> tuple[LearnedDNA, dict[str, Any]]:
    """Train a LearnedDNA on ``data.pairs["train"]``, select and calibrate on ``data.pairs["val"]``.

    Returns the bundle (on the CPU) and a metrics dict (validation AUC of the selected epoch,
    temperature, epochs). Deterministic for a seed and a device: torch's deterministic algorithms
    are on while it trains (the backward of indexing with repeated indices accumulates in a
    thread-dependent order otherwise, and two runs on 2 threads gave different weights). On a GPU
    (``device="cuda"``) the weights differ from the CPU's in rounding; the shipped bundle is the
    CPU's.
    """
    from progenitor.models._device import torch_device

    train = data.pairs.get("train")
    if train is None or len(set(train.derived.tolist())) < 2:
        raise ProgenitorError("the training split needs derived and independent pairs (a zoo of more families)")
    where = torch_device(device)
    if where.type == "cuda":  # cuBLAS is deterministic only with a fixed workspace
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with _deterministic():
        bundle, metrics = _fit(data, config, progress, where)
    bundle.generator.cpu()
    bundle.classifier.cpu()
    return bundle, metrics


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """torch's deterministic algorithms on, and the previous setting restored after."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _fit(
    data: TrainingSet,
    config: dict[str, Any] | None,
    progress: Callable[[int, int, float], None] | None,
    device: torch.device,
) -> tuple[LearnedDNA, dict[str, Any]]:
    cfg = {**DEFAULTS, **(config or {})}
    torch.manual_seed(cfg["seed"])
    bundle = build(cfg)
    bundle.generator.to(device)
    bundle.classifier.to(device)
    m = _Model(data, bundle, device)
    bundle.generator.fit_standardisation(m.blocks, m.masks)
    train, val = with_reversed(data.pairs["train"]), with_reversed(data.pairs["val"])
    if len(set(val.derived.tolist())) < 2:  # a tiny zoo (smoke) may lack a usable validation split
        val = train
    params = list(bundle.generator.parameters()) + list(bundle.classifier.parameters())
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    best_auc, best_state, best_epoch = -1.0, None, 0
    for epoch in range(1, cfg["epochs"] + 1):
        bundle.generator.train()
        bundle.classifier.train()
        opt.zero_grad()
        loss = _loss(m, train, cfg)
        loss.backward()
        opt.step()
        if epoch % cfg["eval_every"] == 0 or epoch == cfg["epochs"]:
            auc = _evaluate(m, val)
            if progress:
                progress(epoch, cfg["epochs"], float(loss))
            if auc > best_auc + 1e-6:
                best_auc, best_epoch = auc, epoch
                best_state = (
                    {k: v.clone() for k, v in bundle.generator.state_dict().items()},
                    {k: v.clone() for k, v in bundle.classifier.state_dict().items()},
                )
    assert best_state is not None
    bundle.generator.load_state_dict(best_state[0])
    bundle.classifier.load_state_dict(best_state[1])
    bundle.generator.eval()
    bundle.classifier.eval()
    with torch.no_grad():
        rel, direc, _ = m.probabilities(val)
    temperature = fit_temperature(rel.cpu().numpy(), direc.cpu().numpy(), val.derived.astype(float))
    bundle.classifier.temperature.fill_(temperature)
    with torch.no_grad():
        _, _, prob = m.probabilities(val)
    p = prob.cpu().numpy().clip(1e-9, 1 - 1e-9)
    independent = ~val.related
    bundle.config.update(
        {k: cfg[k] for k in DEFAULTS},
        null_logits=[round(float(v), 5) for v in np.log(p / (1 - p))[independent]],
    )
    metrics = {
        "val_auc": round(best_auc, 4),
        "selected_epoch": best_epoch,
        "temperature": round(temperature, 4),
        "train_pairs": len(train),
        "val_pairs": len(val),
    }
    return bundle, metrics


def _evaluate(m: _Model, pairs: Pairs) -> float:
    m.bundle.generator.eval()
    m.bundle.classifier.eval()
    with torch.no_grad():
        _, _, prob = m.probabilities(pairs)
    return roc_auc(prob.cpu().numpy(), pairs.derived)
