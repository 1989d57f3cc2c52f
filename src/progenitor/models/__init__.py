"""Loaders: every model format opened into one ``Model`` handle.

References are resolved by ``load``: an explicit ``prefix:`` wins (``torchscript:``, ``torch:``,
``safetensors:``, ``hf:``, ``onnx:``, ``py:module:callable``); ``http://`` and ``https://`` are
black-box endpoints; otherwise a path is recognised by what it is (a ``.safetensors`` file beside
a ``config.json`` opens as its Hugging Face directory, unless ``arch`` is given). Ambiguity is an
error that suggests the prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from progenitor.errors import ModelLoadError
from progenitor.models import torch_files  # noqa: F401  (registers torch formats)
from progenitor.models._device import on_device
from progenitor.models._registry import candidates_for, get_format, list_formats, register_format
from progenitor.models.base import ACCESS_LEVELS, Access, InputSpec, Model

# Optional formats register themselves on import; their heavy dependencies load lazily.
for _optional in ("onnx_format", "hf", "http"):
    try:
        __import__(f"progenitor.models.{_optional}")
    except ModuleNotFoundError as _exc:  # the module itself not written yet, not a missing extra
        if _exc.name != f"progenitor.models.{_optional}":
            raise

__all__ = [
    "ACCESS_LEVELS",
    "Access",
    "InputSpec",
    "Model",
    "list_formats",
    "load",
    "register_format",
]


def load(ref: Any, device: str | None = None, **options: Any) -> Model:
    """Open a model reference (path, prefixed reference, URL, Model or torch module) as a Model.

    Args:
        ref: what to open; see the module docstring for how strings are resolved.
        device: where a torch model runs (``cpu``, ``cuda``, ``cuda:N`` or ``auto``; default
            the CPU); other formats accept only ``cpu``.
        **options: format options, e.g. ``arch="module:callable"`` for state dicts,
            ``input_shape=(1, 28, 28)``, ``timeout=`` for endpoints.

    Raises:
        ModelLoadError: missing file, unknown or ambiguous format, unreadable content, a device
            that is not here or that the format cannot use.
    """
    model = _load(ref, options)
    return model if device is None else on_device(model, device)


def _load(ref: Any, options: dict[str, Any]) -> Model:
    if isinstance(ref, Model):
        return ref
    if not isinstance(ref, str | Path):
        from progenitor.models.callable import from_object

        return from_object(ref, **options)
    text = str(ref)
    if text.startswith(("http://", "https://")):
        return _open("http", text, options)
    prefix, sep, rest = text.partition(":")
    if sep and get_format(prefix) is not None and len(prefix) > 1:
        return _open(prefix, rest, options)
    path = Path(text)
    if not path.exists():
        raise ModelLoadError(f"{text}: no such file or directory")
    if path.suffix.lower() == ".dna":
        raise ModelLoadError(f"{text} is a stored DNA, not a model: use progenitor.load_dna")
    if path.is_dir() and not (path / "config.json").exists() and (path / "adapter_config.json").exists():
        raise ModelLoadError(
            f"{text}: a LoRA/PEFT adapter without its base model; merge it into the base model "
            "(peft's merge_and_unload) and save that"
        )
    in_hf_directory = path.suffix.lower() == ".safetensors" and (path.parent / "config.json").is_file()
    if in_hf_directory and not options.get("arch") and get_format("hf") is not None:
        # A weight file of a Hugging Face directory: the directory knows its layer order (a raw
        # .safetensors file keeps none) and how to run it.
        return _open("hf", str(path.parent), options)
    found = candidates_for(path)
    if not found:
        names = ", ".join(f"{s.name}:" for s in list_formats())
        raise ModelLoadError(f"{text}: unknown model format; name it with a prefix ({names})")
    if len(found) > 1:
        names = " or ".join(f"{s.name}:{text}" for s in found)
        raise ModelLoadError(f"{text}: ambiguous format; say which with {names}")
    return _open(found[0].name, text, options)


def _open(name: str, target: str, options: dict[str, Any]) -> Model:
    spec = get_format(name)
    if spec is None:
        raise ModelLoadError(f"format {name!r} is not available in this installation")
    if name not in ("http", "py") and not Path(target).exists():
        raise ModelLoadError(f"{target}: no such file or directory")
    return spec.open(target, **options)
