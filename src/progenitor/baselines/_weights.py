"""Helpers shared by the white-box baselines: weight matrices as fingerprints, explicit pairing.

A white-box fingerprint holds the model's matrix-like weights (dense, convolution, embedding; in
forward order, viewed as units x input channels x positions, as the weight-sketch gene sees them)
plus their names and kinds. Two models' layers are paired with ``genes.weights.pair_layers``
(same kind, shape and relative depth); methods that subtract or match weights keep only pairs of
identical shape, and report what they left out, so a mismatch never passes silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from progenitor.baselines._base import BaselineNotApplicable, Fingerprint
from progenitor.genes.weights import Layer, layer_views, pair_layers
from progenitor.models.base import Model


@dataclass(frozen=True)
class WeightLayer:
    """One matrix-like weight: its Layer description and its array (units, channels, positions)."""

    layer: Layer
    weight: np.ndarray


def weight_fingerprint(model: Model) -> Fingerprint:
    """The model's matrix-like weights, with names, kinds and shapes, as fingerprint arrays."""
    views = layer_views(model.weights())
    if not views:
        raise BaselineNotApplicable(f"{model.ref} has no weight matrices")
    out: Fingerprint = {
        "layer_names": np.array([name for name, _, _ in views]),
        "layer_kinds": np.array([kind for _, kind, _ in views]),
        "layer_dims": np.array([w.shape for _, _, w in views], dtype=np.int64),
    }
    for i, (_, _, w) in enumerate(views):
        out[f"w{i}"] = np.ascontiguousarray(w.reshape(w.shape[0], -1), dtype=np.float32)
    return out


def weight_layers(fp: Fingerprint) -> list[WeightLayer]:
    """The layers of a white-box fingerprint, depth = position in forward order in [0, 1]."""
    names, kinds, dims = fp["layer_names"], fp["layer_kinds"], fp["layer_dims"]
    count = len(names)
    layers = []
    for i in range(count):
        units, channels, positions = (int(d) for d in dims[i])
        layer = Layer(
            str(names[i]), str(kinds[i]), units, (channels, positions), i / max(count - 1, 1)
        )
        layers.append(WeightLayer(layer, fp[f"w{i}"].reshape(units, channels, positions)))
    return layers


def same_shape_pairs(
    a: list[WeightLayer], b: list[WeightLayer]
) -> tuple[list[tuple[int, int]], dict[str, int]]:
    """Explicit layer pairs of identical shape, and counts of what was left unpaired."""
    pairs = pair_layers([x.layer for x in a], [x.layer for x in b])
    kept = [(i, j) for i, j in pairs if a[i].layer.shape_key() == b[j].layer.shape_key()]
    return kept, {
        "paired": len(kept),
        "shape_mismatch": len(pairs) - len(kept),
        "unpaired_source": len(a) - len(pairs),
        "unpaired_target": len(b) - len(pairs),
    }
