"""The DNA similarity loss: pull a source's DNA towards its descendants', push it from independents.

A pure function of tensors, unit-tested on hand-made vectors (``tests/test_learn.py``).
"""

from __future__ import annotations

import torch


def dna_similarity_loss(
    dna: torch.Tensor,
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negative_mask: torch.Tensor,
    temperature: float = 0.1,
    hard_negatives: int = 8,
) -> torch.Tensor:
    """Contrastive (InfoNCE) loss with mined hard negatives.

    Args:
        dna: ``(m, d)`` L2-normalised DNA vectors of every model in the batch.
        anchors: ``(p,)`` indices of sources, one per derived pair.
        positives: ``(p,)`` indices of their descendants.
        negative_mask: ``(p, m)`` bool, True where model ``j`` is independent of the pair's source
            (a different family); only these can be negatives.
        temperature: softmax temperature on cosine similarities.
        hard_negatives: per anchor, only the most similar negatives count (hard negative
            mining: same architecture and data, other seed, are usually the ones found).

    Returns:
        The mean over pairs of ``-log(e^{s+/t} / (e^{s+/t} + sum_hard e^{s-/t}))``.
    """
    sims = dna[anchors] @ dna.T / temperature  # (p, m)
    pos = sims.gather(1, positives[:, None]).squeeze(1)
    neg = sims.masked_fill(~negative_mask, float("-inf"))
    k = min(hard_negatives, int(negative_mask.sum(dim=1).min().item()) if len(anchors) else 0)
    if k == 0:
        return -pos.mean() * 0.0
    hardest = neg.topk(k, dim=1).values
    logits = torch.cat([pos[:, None], hardest], dim=1)
    return (torch.logsumexp(logits, dim=1) - pos).mean()
