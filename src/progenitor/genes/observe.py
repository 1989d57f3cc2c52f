"""One model observed once: weights, outputs and features computed lazily and shared by genes."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import numpy as np

from progenitor.models.base import Model
from progenitor.probes import ProbeSet, check_fits


class Observation:
    """Lazily computed views of a model on a probe set, so each forward pass runs once."""

    def __init__(self, model: Model, probes: ProbeSet | None, data: ProbeSet | None = None) -> None:
        self.model = model
        self.probes = probes
        self.data = data  # a sample of the model's training data, when the user gives one
        # Set by extract when a gene will read features: outputs then come from the same pass.
        self.want_features = False
        # Set by extract too: the genes that read features use only the first this many probes,
        # and only the features this selects (``Gene.select_features``; None: all).
        self.feature_rows: int | None = None
        self.feature_select: Callable[[list[tuple[str, int]]], list[str]] | None = None
        if probes is not None and model.can("forward"):
            check_fits(probes, model)

    @cached_property
    def weights(self) -> dict[str, np.ndarray]:
        """The model's weights (white-box)."""
        return self.model.weights()

    @cached_property
    def _outputs_and_features(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        assert self.probes is not None
        return self.model.forward_and_features(self.probes.batch(), self.feature_rows, self.feature_select)

    @cached_property
    def outputs(self) -> np.ndarray:
        """Outputs on the probe set (black-box)."""
        assert self.probes is not None
        if self.want_features and self.model.can("features"):
            out = self._outputs_and_features[0]
        else:
            out = self.model.forward(self.probes.batch())
        if out.shape[0] != len(self.probes):
            raise ValueError(f"{self.model.ref} gave {out.shape[0]} outputs for {len(self.probes)} probes")
        return out

    @cached_property
    def features(self) -> dict[str, np.ndarray]:
        """Hidden activations on the probe set (gray-box)."""
        assert self.probes is not None
        return self._outputs_and_features[1]
