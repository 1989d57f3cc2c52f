"""Hugging Face ``transformers`` model directories (local only: nothing is fetched from a hub).

A directory holding ``config.json`` is opened with the Auto class its ``architectures`` name:

* ``...ForSequenceClassification``: forward gives the logits ``(n, num_labels)``;
* ``...ForCausalLM`` / ``...LMHeadModel``: forward gives the log-softmax next-token distribution
  after the last real token of each text ``(n, vocab)``;
* anything else (an encoder such as ``BertModel``): the base class ``architectures`` names (e.g.
  ``T5EncoderModel``), else ``AutoModel``; forward gives the attention-mask mean-pooled last hidden
  state ``(n, hidden)``. Task heads of other architectures (masked LM, token classification, ...)
  are not loaded, so their weights are not in ``weights()``.

Texts are tokenized by the directory's own tokenizer, truncated to 128 tokens, and run in batches
of 32. ``features`` gives every layer's hidden state (embeddings first), mean-pooled over real
tokens, as ``hidden_states.{i}``. Models that read anything but token ids (a ``ViTModel`` reads
``pixel_values``) are refused at load, naming what they read.
"""

from __future__ import annotations

import contextlib
import pickle
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from progenitor._extras import require
from progenitor.errors import ModelLoadError, ProbeError, UnsafeFileError
from progenitor.models._registry import register_format
from progenitor.models.base import Batch, InputSpec, Model, as_float32, file_sha256, text_batch

Kind = Literal["encoder", "classifier", "causal-lm"]
BATCH_SIZE = 32
MAX_LENGTH = 128
# Files any of which means the directory ships a tokenizer; without one AutoTokenizer would only
# fail later with a less helpful message.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)
_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, AttributeError, ImportError)


def _is_hf_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _kind(architectures: list[str] | None) -> Kind:
    """Which of the supported model kinds the config's architectures name."""
    for arch in architectures or []:
        if arch.endswith("ForSequenceClassification"):
            return "classifier"
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal-lm"
    return "encoder"


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """Silence transformers' progress bars and load reports; we report problems ourselves."""
    logging = transformers.utils.logging
    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


@dataclass
class HFModel(Model):
    """A local transformers model: weights, forward and per-layer hidden states on texts."""

    module: torch.nn.Module | None = field(default=None, repr=False)
    kind: Kind = "encoder"
    directory: Path = field(default_factory=Path)
    batch_size: int = BATCH_SIZE
    max_length: int = MAX_LENGTH
    missing_keys: frozenset[str] = frozenset()
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _tokenizer: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.module is None:
            raise ValueError("HFModel needs a module")
        self.module.eval()
        self.capabilities = frozenset({"weights", "forward", "features"})

    def weights(self) -> dict[str, np.ndarray]:
        """The state dict as float32, torch layout, forward order.

        GPT-2 style ``Conv1D`` weights, stored ``(in, out)``, are transposed to ``(out, in)``.
        A tied weight appears once, under its first name (as ``save_pretrained`` writes it);
        weights the files did not hold (freshly initialized) and integer buffers are left out.
        """
        assert self.module is not None
        conv1d = require("transformers.pytorch_utils", "hf").Conv1D
        transposed = {f"{name}.weight" for name, mod in self.module.named_modules() if isinstance(mod, conv1d)}
        out: dict[str, np.ndarray] = {}
        seen: set[tuple[int, tuple[int, ...]]] = set()
        for name, tensor in self.module.state_dict().items():
            if not tensor.is_floating_point() or name in self.missing_keys:
                continue
            key = (tensor.data_ptr(), tuple(tensor.shape))
            if key in seen:
                continue
            seen.add(key)
            array = tensor.detach().to(torch.float32).cpu().numpy()
            out[name] = as_float32(array.T if name in transposed else array)
        return out

    def forward(self, batch: Batch) -> np.ndarray:
        """Logits, next-token log-probabilities or mean-pooled embeddings, one row per text."""
        rows = []
        with torch.no_grad():
            for inputs in self._encoded(batch):
                rows.append(self._output(inputs))
        return np.concatenate(rows).astype(np.float32)

    def features(self, batch: Batch) -> dict[str, np.ndarray]:
        """Each layer's hidden state mean-pooled over real tokens: ``hidden_states.{i}``."""
        return self.forward_and_features(batch)[1]

    def forward_and_features(
        self,
        batch: Batch,
        feature_rows: int | None = None,
        select: Callable[[list[tuple[str, int]]], list[str]] | None = None,  # noqa: ARG002 - all layers are cheap
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Outputs for the batch and hidden states of its first ``feature_rows`` texts, in one pass
        per chunk (``forward`` and ``features`` separately ran the model twice over those texts).

        Chunks are the same as ``forward``'s and ``features``'s own (``batch_size`` texts, padded
        to the longest of the chunk), so the values are theirs bit for bit; a chunk that straddles
        ``feature_rows`` keeps the hidden states of its first rows only.
        """
        wanted = len(self._texts(batch)) if feature_rows is None else feature_rows
        rows: list[np.ndarray] = []
        collected: list[list[np.ndarray]] = []
        done = 0
        with torch.no_grad():
            for inputs in self._encoded(batch):
                assert self.module is not None
                keep = min(len(inputs["input_ids"]), max(wanted - done, 0))
                result = self.module(**inputs, output_hidden_states=bool(keep))
                rows.append(self._output_of(result, inputs))
                if keep:
                    if not collected:
                        collected = [[] for _ in result.hidden_states]
                    mask = inputs["attention_mask"][:keep]
                    for sink, state in zip(collected, result.hidden_states, strict=True):
                        sink.append(_mean_pool(state[:keep], mask))
                done += len(inputs["input_ids"])
        features = {f"hidden_states.{i}": np.concatenate(v).astype(np.float32) for i, v in enumerate(collected)}
        return np.concatenate(rows).astype(np.float32), features

    def _output(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        assert self.module is not None
        return self._output_of(self.module(**inputs), inputs)

    def _output_of(self, result: Any, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        """The row of outputs ``forward`` gives, from a module result on ``inputs``."""
        mask = inputs["attention_mask"]
        if self.kind == "classifier":
            return result.logits.float().cpu().numpy()
        if self.kind == "causal-lm":
            # Right padding: the last real token sits at (number of real tokens - 1).
            last = mask.sum(dim=1) - 1
            logits = result.logits[torch.arange(len(last), device=last.device), last].float()
            return torch.log_softmax(logits, dim=-1).cpu().numpy()
        return _mean_pool(result.last_hidden_state, mask)

    def _texts(self, batch: Batch) -> list[str]:
        texts = text_batch(batch, self.ref)
        if not texts:
            raise ProbeError(f"{self.ref}: the probe set is empty")
        return texts

    def tokenizer(self) -> Any:
        """The directory's own tokenizer, loaded on first use (ProbeError if there is none)."""
        if self._tokenizer is None:
            if not any((self.directory / name).is_file() for name in _TOKENIZER_FILES):
                raise ProbeError(
                    f"{self.ref} has no tokenizer: text probes need the model's own tokenizer files in the directory"
                )
            transformers = require("transformers", "hf")
            try:
                with _quiet(transformers):
                    self._tokenizer = transformers.AutoTokenizer.from_pretrained(
                        str(self.directory), local_files_only=True, trust_remote_code=False
                    )
            except _LOAD_ERRORS as exc:
                raise ProbeError(f"{self.ref}: its tokenizer cannot be loaded ({_first_line(exc)})") from exc
        return self._tokenizer

    def _encoded(self, batch: Batch) -> Iterator[dict[str, torch.Tensor]]:
        """Tokenized, right-padded tensors for each chunk of ``batch_size`` texts."""
        texts = self._texts(batch)
        tokenizer = self.tokenizer()
        # Padding by hand needs no pad token (GPT-2 has none); padded positions are masked out.
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # A text that tokenizes to nothing (an empty string for GPT-2) gets one start token, so
        # every row has a last real token and a non-empty mean.
        start = next(
            (
                t
                for t in (
                    tokenizer.bos_token_id,
                    tokenizer.eos_token_id,
                    tokenizer.cls_token_id,
                    tokenizer.unk_token_id,
                )
                if t is not None
            ),
            pad_id,
        )
        for begin in range(0, len(texts), self.batch_size):
            encoding = tokenizer(texts[begin : begin + self.batch_size], truncation=True, max_length=self.max_length)
            yield {key: value.to(self.device) for key, value in _pad(dict(encoding), pad_id, start).items()}


def _pad(encoding: dict[str, list[list[int]]], pad_id: int, start: int) -> dict[str, torch.Tensor]:
    """Right-pad token lists to one length; ids with ``pad_id``, masks and type ids with 0."""
    ids = [list(row) or [start] for row in encoding["input_ids"]]
    masks = [list(row) or [1] for row in encoding.get("attention_mask", [[1] * len(r) for r in ids])]
    width = max(len(row) for row in ids)
    out = {
        "input_ids": torch.tensor([r + [pad_id] * (width - len(r)) for r in ids]),
        "attention_mask": torch.tensor([r + [0] * (width - len(r)) for r in masks]),
    }
    if "token_type_ids" in encoding:
        types = [list(row) or [0] for row in encoding["token_type_ids"]]
        out["token_type_ids"] = torch.tensor([r + [0] * (width - len(r)) for r in types])
    return out


def _mean_pool(state: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Mean of ``state`` (n, t, d) over the positions where ``mask`` (n, t) is 1."""
    weights = mask.unsqueeze(-1).to(state.dtype)
    total = (state * weights).sum(dim=1)
    return (total / weights.sum(dim=1).clamp(min=1.0)).float().cpu().numpy()


def _model_class(transformers: Any, kind: Kind, architectures: list[str] | None) -> Any:
    """The class to load: the Auto class of the kind, or for an encoder the base class
    ``architectures`` names when transformers has it (``T5EncoderModel``: ``AutoModel`` would build
    the whole encoder-decoder and find half its tensors missing)."""
    if kind == "encoder":
        for arch in architectures or []:
            named = getattr(transformers, arch, None) if arch.endswith("Model") and "For" not in arch else None
            if isinstance(named, type):
                return named
    return {
        "classifier": transformers.AutoModelForSequenceClassification,
        "causal-lm": transformers.AutoModelForCausalLM,
        "encoder": transformers.AutoModel,
    }[kind]


def _max_length(config: Any, requested: int) -> int:
    """``requested``, capped by the model's position table (tiny models have short ones)."""
    limits = [getattr(config, a, None) for a in ("max_position_embeddings", "n_positions")]
    usable = [int(x) for x in limits if isinstance(x, int) and x > 0]
    return min([requested, *usable])


def _check_fit(target: str, module: torch.nn.Module, info: dict[str, Any]) -> None:
    """ModelLoadError when the stored tensors do not fit the architecture config.json describes."""
    mismatched = sorted(info.get("mismatched_keys", ()), key=lambda item: item[0])
    if mismatched:
        key, stored, needed = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise ModelLoadError(
            f"{target}: the weight files do not fit config.json: {key} is stored as "
            f"{list(stored)} but {type(module).__name__} needs {list(needed)}{more}"
        )
    missing = info.get("missing_keys", ())
    # A directory whose weights mostly do not fit the architecture would run on random weights.
    if missing and len(missing) * 2 > len(module.state_dict()):
        raise ModelLoadError(
            f"{target}: the weight files do not fit {type(module).__name__} "
            f"({len(missing)} tensors missing, e.g. {sorted(missing)[0]})"
        )


@register_format("hf", detect=_is_hf_dir, description="Hugging Face transformers directory")
def open_hf(target: str, batch_size: int = BATCH_SIZE, max_length: int = MAX_LENGTH, **_: Any) -> Model:
    """A local transformers directory (encoder, sequence classifier or causal LM)."""
    transformers = require("transformers", "hf")
    directory = Path(target)
    if not _is_hf_dir(directory):
        raise ModelLoadError(f"{target}: not a Hugging Face model directory (no config.json)")
    try:
        with _quiet(transformers):
            config = transformers.AutoConfig.from_pretrained(
                str(directory), local_files_only=True, trust_remote_code=False
            )
    except _LOAD_ERRORS as exc:
        raise ModelLoadError(f"{target}: unreadable config.json ({_first_line(exc)})") from exc
    if getattr(config, "is_encoder_decoder", False):
        raise ModelLoadError(f"{target}: encoder-decoder models are not supported")
    architectures = getattr(config, "architectures", None)
    kind = _kind(architectures)
    try:
        with _quiet(transformers):
            module, info = _model_class(transformers, kind, architectures).from_pretrained(
                str(directory),
                config=config,
                local_files_only=True,
                trust_remote_code=False,
                dtype=torch.float32,
                output_loading_info=True,
                # Mismatches are reported below, naming the tensor, instead of pointing to a
                # load report that _quiet hides.
                ignore_mismatched_sizes=True,
            )
    except pickle.UnpicklingError as exc:  # transformers reads .bin weights with weights_only=True
        raise UnsafeFileError(
            f"{target}: refused, its weight file needs arbitrary Python objects to load; use safetensors weights"
        ) from exc
    except _LOAD_ERRORS as exc:
        raise ModelLoadError(f"{target}: cannot load the model weights ({_first_line(exc)})") from exc
    reads = getattr(module, "main_input_name", "input_ids")
    if reads != "input_ids":  # a vision or audio model: text probes cannot drive it
        raise ModelLoadError(
            f"{target}: {type(module).__name__} reads {reads}, not text; transformers directories are "
            "supported for text models only (export other models to ONNX)"
        )
    _check_fit(target, module, info)
    missing = frozenset(info.get("missing_keys", ()))
    if missing:
        # Left out of weights(); said aloud because forward may use them (random values).
        warnings.warn(
            f"{target}: {len(missing)} tensors not in the weight files were freshly initialized "
            f"(e.g. {sorted(missing)[0]}); they are left out of weights()",
            stacklevel=2,
        )
    return HFModel(
        ref=target,
        format="hf",
        input_spec=InputSpec("text"),
        sha256=file_sha256(directory),
        module=module,
        kind=kind,
        directory=directory,
        batch_size=max(1, int(batch_size)),
        max_length=_max_length(config, int(max_length)),
        missing_keys=missing,
    )
