"""Text families of the zoo: a tiny spec (few epochs) built once, checked through the hf loader."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest.importorskip("transformers")
pytest.importorskip("gensim")

from progenitor.models import load
from progenitor.zoo import build_zoo
from progenitor.zoo.spec import SpecBuilder, ZooSpec
from progenitor.zoo.text import _vocabulary, make_tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.real]


def tiny_text_spec() -> ZooSpec:
    """One BERT classifier, a GPT-2 and a Llama LM (two epochs each) with derived children."""
    b = SpecBuilder("text-tiny")
    bert = b.source("bert-ng-s0", "text_classifier", arch="bert-tiny", split="train", epochs=3)
    b.source("bert-ng-s1", "text_classifier", seed=1, arch="bert-tiny", split="test", epochs=3)
    ft = b.derive(bert, "ft", "text_finetune", epochs=1)
    b.derive(bert, "prune50", "text_prune", sparsity=0.5)
    b.derive(bert, "permute", "text_permute", seed=3)
    b.derive(bert, "distill-llama", "text_distill", arch="llama-tiny", epochs=1)
    b.derive(ft, "fp16", "text_fp16")
    gpt = b.source("gpt2-lee-s0", "causal_lm", arch="gpt2-tiny", split="val", epochs=2)
    b.derive(gpt, "permute", "text_permute", seed=3)
    b.derive(gpt, "distill-llama", "text_distill", arch="llama-tiny", epochs=1)
    llama = b.source("llama-lee-s0", "causal_lm", arch="llama-tiny", split="val", epochs=2)
    b.derive(llama, "permute", "text_permute", seed=3)
    b.derive(llama, "noise1", "text_noise", seed=4)
    b.probe("text-probe", ("polarity", 5), ("newsgroups", 5), ("lee", 5))
    return b.build(held_out_archs=("llama-tiny",), held_out_kinds=("permute",))


@pytest.fixture(scope="module")
def text_zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("zoo-text")
    return out, build_zoo(tiny_text_spec(), out, progress=False)


def _open(out: Path, manifest: dict[str, Any], mid: str) -> Any:
    entry = next(m for m in manifest["models"] if m["id"] == mid)
    return load(str(out / entry["path"]), **entry["load"])


def test_vocabulary_is_deterministic_and_covers_every_character() -> None:
    vocab = _vocabulary()
    assert len(vocab) == len(set(vocab)) == 3000
    tokenizer = make_tokenizer()
    ids = tokenizer("Zyxwvut quasars!")["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert make_tokenizer(causal=True)("hello")["input_ids"][-1] != tokenizer.sep_token_id


def test_every_text_model_loads_and_runs_on_the_text_probes(
    text_zoo: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = text_zoo
    probe = manifest["probes"][0]
    texts = (out / probe["path"]).read_text("utf-8").splitlines()
    assert len(texts) == probe["n"] == 15
    for entry in manifest["models"]:
        assert entry["format"] == "hf" and entry["modality"] == "text"
        model = load(str(out / entry["path"]))
        y = model.forward(texts)
        assert y.shape == (15, entry["num_classes"]), entry["id"]
        assert np.isfinite(y).all()


def test_text_permutations_preserve_the_function(text_zoo: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = text_zoo
    texts = (out / manifest["probes"][0]["path"]).read_text("utf-8").splitlines()
    for edge in (e for e in manifest["edges"] if e["operation"] == "text_permute"):
        parent, child = _open(out, manifest, edge["parent"]), _open(out, manifest, edge["child"])
        np.testing.assert_allclose(child.forward(texts), parent.forward(texts), atol=1e-4)
        pw, cw = parent.weights(), child.weights()
        assert any(not np.array_equal(pw[k], cw[k]) for k in pw)


def test_text_prune_fp16_and_distill_do_what_they_say(
    text_zoo: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = text_zoo
    models = {m["id"]: m for m in manifest["models"]}
    pruned = _open(out, manifest, "bert-ng-s0.prune50").weights()
    layer = [w for k, w in pruned.items() if ".layer." in k and w.ndim == 2]
    assert sum((w == 0).sum() for w in layer) / sum(w.size for w in layer) == pytest.approx(0.5, abs=0.01)
    half = _open(out, manifest, "bert-ng-s0.ft.fp16").weights()
    for w in half.values():
        np.testing.assert_array_equal(w, w.astype(np.float16).astype(np.float32))
    for sid in ("bert-ng-s0.distill-llama", "gpt2-lee-s0.distill-llama"):
        assert models[sid]["architecture"] == "llama-tiny"
        assert models[sid]["num_classes"] == models[sid.split(".")[0]]["num_classes"]


def test_text_pairs_and_rebuild(text_zoo: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = text_zoo
    kinds = {p["kind"] for p in manifest["pairs"]}
    assert {"derived", "same-arch-same-data-other-seed", "other-arch", "sibling"} <= kinds
    again = build_zoo(tiny_text_spec(), out, progress=False)
    assert again["build"]["built"] == 0 and again["models"] == manifest["models"]
