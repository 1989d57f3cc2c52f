"""ModelDiff (Li, Liu, Zhang, Ma, Yang; "ModelDiff: Testing-Based DNN Similarity Comparison for
Model Reuse Detection", ISSTA 2021).

A model is described by its decision-distance vector (DDV) on a set of input pairs ``(x_i, x'_i)``:
entry ``i`` is the distance between the model's outputs on ``x_i`` and on ``x'_i``. Two models are
compared by the cosine similarity of their DDVs on the same pairs.

The pairs are searched on the source, without gradients: each ``x'_i`` starts as ``x_i`` plus a
little noise and, for ``iterations`` rounds, a random mutation of it is kept when it moves the
source's outputs further from its outputs on ``x_i`` (bounded: ``x'_i`` stays within an L-inf ball
of ``epsilon`` x the probes' value range around ``x_i``). This drives the pairs across the
source's decision boundaries, where a derived model agrees with it and an independent one need
not. Text inputs are mutated by replacing up to ``max_edits`` words with words of the probe
vocabulary (random search, best kept). Cost: ``iterations + 2`` forward passes over the pairs on
the source, two on each target; the target can only be queried once the source's pairs are known
(``source_dependent``).

Choices left open by the paper: outputs are centred per input (logits or log-probabilities minus
their mean; softmax probabilities saturate and separated a fine-tuned child from independent models
worse on the test family); the decision distance is the cosine distance between centred outputs
(absolute difference for single-output models); the search keeps per-pair improvements of that
distance; ``epsilon`` = 0.1 and 50 iterations (looked at on the test family only: the separation
changed little between 20 and 50 iterations or 0.1 and 0.3).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from progenitor.baselines._base import (
    Baseline,
    BaselineNotApplicable,
    BaselineScore,
    Fingerprint,
    register_baseline,
)
from progenitor.baselines._outputs import centred, first, run
from progenitor.genes._linalg import normalize_rows
from progenitor.models.base import Batch, Model
from progenitor.probes import ProbeSet

N_PAIRS = 100
ITERATIONS = 50
EPSILON = 0.1  # L-inf bound of a mutation, as a fraction of the probes' value range
MAX_EDITS = 2  # word substitutions per text mutation
SEED = 2021


def decision_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row distance between two output arrays: cosine distance, or |a - b| for one column."""
    if a.shape[1] == 1:
        return np.abs(a - b)[:, 0]
    return 1.0 - (normalize_rows(a) * normalize_rows(b)).sum(axis=1)


@register_baseline
class ModelDiff(Baseline):
    """Cosine similarity of decision-distance vectors on source-searched input pairs."""

    name: ClassVar[str] = "modeldiff"
    access = "black"
    paper: ClassVar[str] = (
        "Li et al., ModelDiff: Testing-Based DNN Similarity Comparison for Model Reuse Detection, "
        "ISSTA 2021"
    )
    source_dependent: ClassVar[bool] = True

    def __init__(
        self,
        n_pairs: int = N_PAIRS,
        iterations: int = ITERATIONS,
        epsilon: float = EPSILON,
        max_edits: int = MAX_EDITS,
        seed: int = SEED,
    ) -> None:
        self.n_pairs, self.iterations, self.epsilon = n_pairs, iterations, epsilon
        self.max_edits, self.seed = max_edits, seed

    def _extract(self, model: Model, probes: ProbeSet | None) -> Fingerprint:
        assert probes is not None
        seeds = first(probes, self.n_pairs)
        rng = np.random.default_rng(self.seed)
        base = centred(run(model, seeds.batch()))
        if isinstance(seeds.data, np.ndarray):
            inputs, mutants, ddv = self._search_tensors(model, seeds.data, base, rng)
        else:
            inputs, mutants, ddv = self._search_texts(model, list(seeds.data), base, rng)
        return {"inputs": inputs, "mutants": mutants, "ddv": ddv.astype(np.float32)}

    def fingerprint_target(
        self, model: Model, probes: ProbeSet | Any | None, fp_source: Fingerprint
    ) -> Fingerprint:
        """The target's DDV on the pairs searched on the source (``probes`` is not used)."""
        del probes  # the source's searched pairs are the target's inputs
        inputs, mutants = _batch(fp_source["inputs"]), _batch(fp_source["mutants"])
        ddv = decision_distance(centred(run(model, inputs)), centred(run(model, mutants)))
        return self._tagged({"ddv": ddv.astype(np.float32)})

    def _score(self, fp_source: Fingerprint, fp_target: Fingerprint) -> BaselineScore:
        a, b = fp_source["ddv"].astype(np.float64), fp_target["ddv"].astype(np.float64)
        if a.shape != b.shape:
            raise BaselineNotApplicable("the target was not queried on this source's input pairs")
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na == 0:
            raise BaselineNotApplicable(
                "the search found no pair that changes the source's outputs"
            )
        similarity = float(a @ b / (na * nb)) if nb > 0 else 0.0
        return BaselineScore(
            similarity,
            None,
            {"pairs": len(a), "source_mean_dd": float(a.mean()), "target_mean_dd": float(b.mean())},
        )

    def _search_tensors(
        self, model: Model, x: np.ndarray, base: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = float(x.min()), float(x.max())
        bound = self.epsilon * max(hi - lo, 1e-6)
        step = bound / 4  # several accepted steps are needed to reach the bound

        def mutate(current: np.ndarray) -> np.ndarray:
            cand = current + rng.normal(0.0, step, size=x.shape).astype(np.float32)
            return np.clip(np.clip(cand, x - bound, x + bound), lo, hi).astype(np.float32)

        mutants = mutate(x)
        ddv = decision_distance(base, centred(run(model, mutants)))
        for _ in range(self.iterations):
            cand = mutate(mutants)
            cand_ddv = decision_distance(base, centred(run(model, cand)))
            better = cand_ddv > ddv
            mutants[better], ddv[better] = cand[better], cand_ddv[better]
        return x.copy(), mutants, ddv

    def _search_texts(
        self, model: Model, texts: list[str], base: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vocab = sorted({w for t in texts for w in t.split()})

        def mutate() -> list[str]:
            out = []
            for text in texts:
                words = text.split()
                edits = int(rng.integers(1, self.max_edits + 1))
                for pos in rng.choice(len(words), size=min(edits, len(words)), replace=False):
                    words[int(pos)] = vocab[int(rng.integers(len(vocab)))]
                out.append(" ".join(words))
            return out

        mutants = mutate()
        ddv = decision_distance(base, centred(run(model, mutants)))
        for _ in range(self.iterations):
            cand = mutate()
            cand_ddv = decision_distance(base, centred(run(model, cand)))
            for i in np.flatnonzero(cand_ddv > ddv):
                mutants[i], ddv[i] = cand[i], cand_ddv[i]
        return np.array(texts), np.array(mutants), ddv


def _batch(stored: np.ndarray) -> Batch:
    """Stored inputs back in the form ``Model.forward`` takes (texts are kept as a str array)."""
    return [str(t) for t in stored] if stored.dtype.kind == "U" else stored
