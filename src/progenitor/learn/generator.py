"""The DNA generator: gene blocks -> one compact, L2-normalised DNA vector.

Each input block (``learn.inputs.BLOCKS``) has its own small encoder; their outputs are summed
with the blocks' presence masks (a missing block contributes nothing) and projected to the DNA.
Which blocks are used is a hyperparameter (the ablations switch parts off).
"""

from __future__ import annotations

import torch
from torch import nn

from progenitor.learn.inputs import BLOCKS


class BlockEncoder(nn.Module):
    """Standardise (fitted statistics), then a two-layer MLP."""

    def __init__(self, size: int, hidden: int, out: int, dropout: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("scale", torch.ones(size))
        self.net = nn.Sequential(nn.Linear(size, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.scale)


class DNAGenerator(nn.Module):
    """Maps gene blocks to a ``dim``-dimensional unit vector: the learned Model DNA."""

    def __init__(
        self, parts: tuple[str, ...] = tuple(BLOCKS), dim: int = 64, hidden: int = 128, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.parts = tuple(parts)
        self.dim = dim
        self.encoders = nn.ModuleDict({p: BlockEncoder(BLOCKS[p], hidden, dim, dropout) for p in self.parts})
        self.project = nn.Linear(dim, dim)

    def fit_standardisation(self, blocks: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
        """Set each block's input mean and scale from the models where the block is present."""
        with torch.no_grad():
            for p, enc in self.encoders.items():
                present = blocks[p][masks[p] > 0]
                if len(present) > 1:
                    enc.mean.copy_(present.mean(0))
                    enc.scale.copy_(present.std(0).clamp_min(1e-3))

    def forward(self, blocks: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for p, enc in self.encoders.items():
            total = total + enc(blocks[p]) * masks[p][:, None]
        return nn.functional.normalize(self.project(nn.functional.gelu(total)), dim=1)
