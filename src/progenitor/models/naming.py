"""What weight names say about a model's layout, where nothing else does.

A state dict from a module keeps the module's order; a raw ``.safetensors`` file does not (its
tensors come back sorted by name: ``layers.10`` before ``layers.2``, GPT-2's ``wte`` after its
blocks). ``forward_order`` restores what names can: embedding tables first, then numbered blocks
in numeric order.
"""

from __future__ import annotations

# Names of embedding tables' modules (the last part of a weight's name before ``.weight``):
# ``word_embeddings``, ``embed_tokens``, GPT-2's ``wte``/``wpe``, T5's ``shared`` and its
# ``relative_attention_bias`` (rows are distance buckets, fixed like token ids). A projection
# named after embeddings (ELECTRA's ``embeddings_project``, ALBERT's
# ``embedding_hidden_mapping_in``) is a dense layer.
_EMBEDDING_NAMES = (
    "wte", "wpe", "shared", "tok_emb", "pos_emb", "embed", "embedding", "embeddings", "relative_attention_bias"
)
_EMBEDDING_SUFFIXES = ("_emb", "_embed", "embedding", "embeddings")


def module_leaf(name: str) -> str:
    """The last part of a weight's module name, lower case (``...self.query.weight`` -> ``query``)."""
    return name.lower().removesuffix(".weight").rsplit(".", 1)[-1]


def is_embedding(name: str) -> bool:
    """Whether a 2-D weight of this name is an embedding table (rows are token ids)."""
    leaf = module_leaf(name)
    return leaf in _EMBEDDING_NAMES or leaf.startswith("embed_") or leaf.endswith(_EMBEDDING_SUFFIXES)


# A module's own tensors in the order torch's modules register them.
_PARAMETER_ORDER = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, "num_batches_tracked": 4}


def forward_order(names: list[str]) -> list[str]:
    """``names`` in the order a forward pass likely meets them: embedding tables first, then by
    name with numbered parts compared as numbers, a module's weight before its bias."""

    def key(name: str) -> tuple[bool, list[tuple[int, int | str]]]:
        *path, last = name.split(".")
        parts = [(0, int(p)) if p.isdigit() else (1, p) for p in path]
        parts.append((0, _PARAMETER_ORDER[last]) if last in _PARAMETER_ORDER else (1, last))
        return (not is_embedding(name), parts)

    return sorted(names, key=key)
