"""The lineage zoo: model families with known ground truth, built locally from real data.

``build_zoo(preset, out_dir)`` trains sources, applies registered derivations, writes every model
in a portable format and a manifest with the lineage edges, probe sets, labelled pairs and splits.
See docs/ZOO.md.
"""

from __future__ import annotations

from progenitor.zoo.build import build_zoo, load_manifest, open_model, resolve_spec
from progenitor.zoo.presets import get_preset, list_presets

__all__ = ["build_zoo", "get_preset", "list_presets", "load_manifest", "open_model", "resolve_spec"]
