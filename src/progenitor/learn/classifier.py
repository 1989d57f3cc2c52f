"""The provenance classifier: (source DNA, target DNA) -> P(target derived from source).

Two heads:

* relation: are the two models of one lineage? Built on symmetric features
  (``u * v``, ``|u - v|``, cosine), so it cannot depend on which side is which.
* direction: given a relation, is the source the ancestor? An antisymmetric function
  ``g(v - u, m_t - m_s) - g(u - v, m_s - m_t)`` of the DNA difference and of the weight-moment
  difference (kurtosis rises with training, sparsity with pruning), so swapping the two models
  flips its sign exactly.

P(derived) = sigmoid(relation) * sigmoid(direction / T): a child is derived from its parent, a
parent is not derived from its child. Calibrated on a held-out split by a temperature on the
relation logit (``temperature``).
"""

from __future__ import annotations

import torch
from torch import nn


class ProvenanceClassifier(nn.Module):
    """Relation and direction heads over two DNA vectors (plus weight moments when present)."""

    def __init__(self, dim: int = 64, moments: int = 12, hidden: int = 64) -> None:
        super().__init__()
        self.relation = nn.Sequential(nn.Linear(2 * dim + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.direction = nn.Sequential(nn.Linear(dim + moments + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.register_buffer("temperature", torch.ones(()))

    def relation_logit(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Symmetric relatedness logit (before calibration)."""
        cos = (u * v).sum(dim=1, keepdim=True)
        return self.relation(torch.cat([u * v, (u - v).abs(), cos], dim=1)).squeeze(1)

    def direction_logit(
        self, u: torch.Tensor, v: torch.Tensor, mu: torch.Tensor, mv: torch.Tensor, has_moments: torch.Tensor
    ) -> torch.Tensor:
        """Antisymmetric logit that the source (u) is the ancestor of the target (v)."""
        flag = has_moments[:, None]
        fwd = torch.cat([v - u, (mv - mu) * flag, flag], dim=1)
        bwd = torch.cat([u - v, (mu - mv) * flag, flag], dim=1)
        return (self.direction(fwd) - self.direction(bwd)).squeeze(1)

    def forward(
        self, u: torch.Tensor, v: torch.Tensor, mu: torch.Tensor, mv: torch.Tensor, has_moments: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(relation logit / temperature, direction logit)."""
        return self.relation_logit(u, v) / self.temperature, self.direction_logit(u, v, mu, mv, has_moments)

    def probability(
        self, u: torch.Tensor, v: torch.Tensor, mu: torch.Tensor, mv: torch.Tensor, has_moments: torch.Tensor
    ) -> torch.Tensor:
        """Calibrated P(target derived from source)."""
        rel, direc = self(u, v, mu, mv, has_moments)
        return torch.sigmoid(rel) * torch.sigmoid(direc)
