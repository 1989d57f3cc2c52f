"""Source recipes: how the roots of the zoo's families are made (trained from scratch or loaded).

A recipe is ``fn(params, seed) -> Built`` registered under a name with its defaults and version,
like a derivation but without a parent. Every root is independent of every other root: its own
random initialisation (or, for a real pretrained model, its own origin).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from progenitor.errors import ProgenitorError
from progenitor.zoo.archs import create_arch
from progenitor.zoo.data import get_part
from progenitor.zoo.derivations import Built
from progenitor.zoo.train import TrainConfig, seed_everything, train_classifier

Recipe = Callable[[dict[str, Any], int], Built]


@dataclass(frozen=True)
class SourceRecipe:
    """A registered way of making a root model."""

    name: str
    fn: Recipe
    defaults: dict[str, Any]
    version: int
    modality: str
    description: str


_RECIPES: dict[str, SourceRecipe] = {}


def register_source(
    name: str, defaults: dict[str, Any], version: int = 1, modality: str = "image"
) -> Callable[[Recipe], Recipe]:
    """Decorator registering a root recipe ``fn(params, seed) -> Built`` under ``name``."""

    def decorate(fn: Recipe) -> Recipe:
        if name in _RECIPES:
            raise ValueError(f"source recipe {name!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _RECIPES[name] = SourceRecipe(name, fn, dict(defaults), version, modality, doc[0] if doc else "")
        return fn

    return decorate


def get_source_recipe(name: str) -> SourceRecipe:
    """The recipe registered under ``name``."""
    if name not in _RECIPES:
        raise ProgenitorError(f"unknown source recipe {name!r}; known: {', '.join(sorted(_RECIPES))}")
    return _RECIPES[name]


def list_source_recipes() -> list[SourceRecipe]:
    """All registered recipes, by name."""
    return [_RECIPES[k] for k in sorted(_RECIPES)]


def resolve_source_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The recipe's defaults overridden by ``params``; unknown keys are refused."""
    recipe = get_source_recipe(name)
    unknown = sorted(set(params) - set(recipe.defaults))
    if unknown:
        raise ProgenitorError(f"source recipe {name!r} takes no parameter {unknown[0]!r}")
    return {**recipe.defaults, **params}


@register_source("train", {"arch": "cnn", "task": "fmnist", "part": "source-a", "n": 12000, "epochs": 4, "lr": 1e-3})
def train_image_source(params: dict[str, Any], seed: int) -> Built:
    """Train an image classifier from its own random initialisation."""
    data = get_part(params["task"], params["part"], params["n"])
    seed_everything(seed)
    model = create_arch(params["arch"], data.num_classes)
    config = TrainConfig(epochs=int(params["epochs"]), lr=float(params["lr"]), seed=seed)
    train_classifier(model, data.x, data.y, config)
    return Built(model, params["arch"], params["task"], data.name)
