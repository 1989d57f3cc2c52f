"""The ``text`` preset: tiny BERT classifiers, tiny GPT-2/Llama LMs and the real MiniLM family."""

from __future__ import annotations

from progenitor.zoo.presets import register_preset
from progenitor.zoo.spec import SPLITS, SpecBuilder, ZooSpec

_OTHER_LM = {"gpt2-tiny": "llama-tiny", "llama-tiny": "gpt2-tiny"}


def _small_battery(b: SpecBuilder, root: str, other_arch: str, full: bool) -> None:
    """Fine-tune, prune, noise, fp16, permutation, distillation (and a chain when ``full``)."""
    ft = b.derive(root, "ft", "text_finetune")
    b.derive(root, "prune50", "text_prune", sparsity=0.5)
    b.derive(root, "noise1", "text_noise", seed=22)
    if full:
        b.derive(root, "fp16", "text_fp16")
        b.derive(root, "permute", "text_permute", seed=21)
        b.derive(root, "distill-same", "text_distill", seed=11)
        b.derive(root, f"distill-{other_arch}", "text_distill", seed=12, arch=other_arch)
        b.derive(ft, "prune50", "text_prune", sparsity=0.5)


@register_preset(
    "text",
    "117 text models: tiny BERT classifiers, tiny GPT-2/Llama LMs, the real all-MiniLM-L6-v2 and derived children",
)
def text() -> ZooSpec:
    """Text families.

    * ``bert-tiny`` classifiers on newsgroups (seeds 0-3) and one on polarity (other data);
    * ``gpt2-tiny`` and ``llama-tiny`` causal LMs on lee (seeds 0-3 each) and one of each on
      newsgroups documents (other data);
    * the real all-MiniLM-L6-v2 with fine-tunes, pruned, noised, fp16, permuted and distilled
      children, and the MiniLM architecture trained from scratch twice (independent look-alikes).
    """
    b = SpecBuilder("text", "text zoo: tiny transformers and the real MiniLM family")
    for seed in range(4):
        root = b.source(
            f"bert-ng-s{seed}",
            "text_classifier",
            seed=seed,
            split=SPLITS[seed % 3],
            arch="bert-tiny",
            task="newsgroups",
        )
        _small_battery(b, root, "llama-tiny", full=seed < 3)
    root = b.source("bert-pol-s100", "text_classifier", seed=100, split="train", arch="bert-tiny", task="polarity")
    _small_battery(b, root, "llama-tiny", full=False)
    for i, arch in enumerate(("gpt2-tiny", "llama-tiny")):
        tag = arch.split("-")[0]
        for seed in range(4):
            root = b.source(f"{tag}-lee-s{seed}", "causal_lm", seed=seed, split=SPLITS[seed % 3], arch=arch, task="lee")
            _small_battery(b, root, _OTHER_LM[arch], full=seed < 3)
        root = b.source(
            f"{tag}-ng-s100", "causal_lm", seed=100, split=SPLITS[(i + 1) % 3], arch=arch, task="newsgroups"
        )
        _small_battery(b, root, _OTHER_LM[arch], full=False)
    mini = b.source("minilm", "pretrained_minilm", split="test")
    ft = b.derive(mini, "ft-ng", "text_finetune", task="newsgroups", part="source", epochs=2, lr=2e-5)
    b.derive(mini, "ft-pol", "text_finetune", seed=1, task="polarity", part="source", epochs=2, lr=5e-5)
    b.derive(mini, "prune30", "text_prune", sparsity=0.3)
    b.derive(mini, "prune50", "text_prune", sparsity=0.5)
    b.derive(mini, "noise1", "text_noise", seed=22)
    b.derive(mini, "fp16", "text_fp16")
    b.derive(mini, "permute", "text_permute", seed=21)
    b.derive(mini, "distill-2layer", "text_distill", seed=11, task="lee", part="source", epochs=4, lr=2e-4)
    b.derive(ft, "prune30", "text_prune", sparsity=0.3)
    for seed, split in ((0, "test"), (1, "train")):
        b.source(f"minilm-scratch-s{seed}", "scratch_minilm", seed=seed, split=split)
    b.probe("text-probe", ("polarity", 10), ("newsgroups", 10), ("lee", 15), max_chars=400)
    return b.build(held_out_archs=("llama-tiny",), held_out_kinds=("permute", "distill"))
