"""A trained Model DNA: generator + classifier + calibration, saved as a directory.

Layout (never a pickle)::

    manifest.json     format, version, hyperparameters, gene versions, zoo hash, probe hash,
                      metrics, calibration (temperature, null of independent pairs), file hashes
    weights.safetensors
    MODEL_CARD.md

``load_learned()`` without a path opens the default that ships in the package
(``progenitor/data/learned``); ``progenitor train`` reproduces it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from progenitor._io import write_atomic
from progenitor._memo import per_object
from progenitor.dna import DNA
from progenitor.errors import ProgenitorError
from progenitor.learn.classifier import ProvenanceClassifier
from progenitor.learn.generator import DNAGenerator
from progenitor.learn.inputs import moments_input, stack_inputs
from progenitor.models.base import ACCESS_LEVELS
from progenitor.stats import NullModel, clustered_null

BUNDLE_FORMAT = "progenitor-learned-dna"
BUNDLE_VERSION = 1


@dataclass
class LearnedDNA:
    """The learned parts of the Model DNA and how to use them."""

    generator: DNAGenerator
    classifier: ProvenanceClassifier
    config: dict[str, Any] = field(default_factory=dict)
    # Each DNA's embedding and moments, kept while the DNA lives (``_encoded``).
    _memo: per_object = field(init=False, repr=False, compare=False)
    _null: tuple[Any, NullModel | None] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._memo = per_object(self._encode)

    @property
    def spec(self) -> dict[str, Any]:
        """What a DNA records about the generator that made its vector."""
        return {
            "generator": "progenitor-dna",
            "version": BUNDLE_VERSION,
            "parts": list(self.generator.parts),
            "dim": self.generator.dim,
            "hash": self.config.get("weights_sha256", "untrained")[:16],
        }

    def embed(self, dnas: list[DNA]) -> np.ndarray:
        """DNA vectors ``(n, dim)`` for DNAs (from their genes; nothing is re-extracted)."""
        blocks, masks = _tensors(dnas)
        _inference(self.generator)
        with torch.no_grad():
            return self.generator(blocks, masks).numpy()

    def assess(self, source: DNA, target: DNA) -> dict[str, float]:
        """Calibrated P(target derived from source), its logit, and the relation/direction parts.

        Two DNAs of different access are assessed as the access both have extracts them
        (``DNA.at_access``), as their genes are compared: a white-box DNA against a black-box
        one would otherwise give the classifier four input blocks on one side and one on the
        other, and its direction head read the difference as the black-box model being the
        ancestor (on the standard zoo's test pairs, 47 of the 87 white-box parents the genes
        found for black-box children were made ``inconclusive``; assessed alike, one).
        """
        if source.access != target.access:
            common = min(source.access, target.access, key=ACCESS_LEVELS.index)
            source, target = source.at_access(common), target.at_access(common)
        (u, s_moments, s_has), (v, t_moments, t_has) = self._encoded(source), self._encoded(target)
        _inference(self.classifier)
        with torch.no_grad():
            rel, direc = self.classifier(u, v, s_moments, t_moments, s_has * t_has)
            p = torch.sigmoid(rel) * torch.sigmoid(direc)
        prob = float(p.clamp(1e-9, 1 - 1e-9))
        return {
            "probability": prob,
            "logit": float(np.log(prob / (1 - prob))),
            "relation": float(torch.sigmoid(rel)),
            "direction": float(torch.sigmoid(direc)),
            "cosine": float((u * v).sum()),
        }

    def _encoded(self, dna: DNA) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The DNA's embedding, moments block and moments mask, kept while the DNA lives (a
        search or a tree assesses one DNA against many)."""
        return self._memo(dna)

    def _encode(self, dna: DNA) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if dna.vector is not None and dna.vector_spec == self.spec:
            # The stored vector is this generator's output on these genes (``embed``).
            moments, has = moments_input(dna)
            return (torch.from_numpy(np.asarray(dna.vector, np.float32)[None]),
                    torch.from_numpy(moments[None]), torch.tensor([has], dtype=torch.float32))
        blocks, masks = _tensors([dna])
        _inference(self.generator)
        with torch.no_grad():
            return self.generator(blocks, masks), blocks["moments"], masks["moments"]

    def null_logits(self) -> list[float]:
        """Logits of independent pairs on the validation split (the learned evidence's null)."""
        return list(self.config.get("null_logits", []))

    def null_model(self) -> NullModel | None:
        """The Student-t predictive null of ``null_logits`` (None with fewer than 3), summarised
        once: every verdict that fuses the classifier asks for it."""
        logits = self.config.get("null_logits", [])
        # Keyed by the list object itself (held, so its identity cannot be reused): training
        # replaces the list when it sets a new null.
        if self._null is None or self._null[0] is not logits:
            self._null = (logits, clustered_null(logits) if len(logits) >= 3 else None)
        return self._null[1]

    def save(self, out: str | Path, card: str = "") -> Path:
        """Write the directory (weights, manifest with file hash, model card)."""
        from safetensors.torch import save as save_bytes

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        state = {f"generator.{k}": v.contiguous() for k, v in self.generator.state_dict().items()}
        state |= {f"classifier.{k}": v.contiguous() for k, v in self.classifier.state_dict().items()}
        raw = save_bytes(state)
        self.config["weights_sha256"] = hashlib.sha256(raw).hexdigest()
        write_atomic(out / "weights.safetensors", raw)
        manifest = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, **self.config}
        write_atomic(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        write_atomic(out / "MODEL_CARD.md", card or _card(manifest))
        return out


def _inference(module: torch.nn.Module) -> None:
    """Put ``module`` in eval mode (dropout off) unless it is already: ``Module.eval()`` walks
    every submodule, which a search assessing thousands of pairs would pay each time."""
    if module.training:
        module.eval()


def _tensors(dnas: list[DNA]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    blocks, masks = stack_inputs(dnas)
    return ({k: torch.from_numpy(v) for k, v in blocks.items()}, {k: torch.from_numpy(v) for k, v in masks.items()})


def build(config: dict[str, Any]) -> LearnedDNA:
    """Untrained networks for a configuration (``parts``, ``dim``, ``hidden``, ``dropout``)."""
    gen = DNAGenerator(tuple(config["parts"]), config["dim"], config["hidden"], config.get("dropout", 0.1))
    return LearnedDNA(gen, ProvenanceClassifier(config["dim"]), config)


def load_learned(path: str | Path | None = None) -> LearnedDNA:
    """Open a trained Model DNA directory, or the packaged default when ``path`` is None."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    root = resources.files("progenitor.data").joinpath("learned") if path is None else Path(path)
    try:
        manifest = json.loads(root.joinpath("manifest.json").read_text())
        raw = root.joinpath("weights.safetensors").read_bytes()
    except (OSError, ValueError) as exc:
        raise ProgenitorError(f"learned DNA {root}: cannot read ({exc})") from exc
    if manifest.get("format") != BUNDLE_FORMAT or int(manifest.get("version", 0)) != BUNDLE_VERSION:
        raise ProgenitorError(f"learned DNA {root}: unknown format or version")
    if hashlib.sha256(raw).hexdigest() != manifest.get("weights_sha256"):
        raise ProgenitorError(f"learned DNA {root}: weights do not match the manifest's hash")
    bundle = build({k: v for k, v in manifest.items() if k not in ("format", "version")})
    try:
        state = load_bytes(raw)
    except SafetensorError as exc:
        raise ProgenitorError(f"learned DNA {root}: corrupt weights ({exc})") from exc
    bundle.generator.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("generator.")})
    bundle.classifier.load_state_dict({k[11:]: v for k, v in state.items() if k.startswith("classifier.")})
    bundle.generator.eval()
    bundle.classifier.eval()
    return bundle


def _card(manifest: dict[str, Any]) -> str:
    metrics = manifest.get("metrics", {})
    lines = [
        "# progenitor learned Model DNA",
        "",
        f"Generator parts: {', '.join(manifest.get('parts', []))}; DNA dimension {manifest.get('dim')} "
        f"({4 * int(manifest.get('dim', 0))} bytes as float32).",
        f"Trained on zoo `{manifest.get('zoo_name')}` (hash {str(manifest.get('zoo_hash'))[:16]}), "
        f"train split; selected and calibrated on the validation split. Seed {manifest.get('seed')}.",
        f"Reproduce: `{manifest.get('command', 'progenitor train --zoo DIR --out DIR')}`",
        "",
        "Intended use: a learned, compact DNA vector for indexing and a calibrated P(derived) that the",
        "verdict fuses with the training-free genes. Limits: trained on small image models of the zoo;",
        "on other domains its probability is a weaker signal than the genes' calibrated p-values.",
        "",
        "## Validation metrics",
        "",
        *[f"- {k}: {v}" for k, v in sorted(metrics.items())],
        "",
    ]
    return "\n".join(lines)
