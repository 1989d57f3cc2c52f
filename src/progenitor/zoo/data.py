"""Real, offline datasets for the zoo, with deterministic disjoint splits.

Image data share one input shape, ``(n, 1, 28, 28)`` float32 in ``[0, 1]``, so every image model
in the zoo can be shown the same probes:

* ``fmnist``: Fashion-MNIST (70,000 images, 10 classes) from the Debian package
  ``dataset-fashion-mnist`` (gzipped IDX files, parsed with numpy).
* ``fmnist-coarse``: the same images with 4 coarse classes (tops, bottoms, footwear, bags), used
  for transfer to new classes.
* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images), upsampled to 28x28.

Text data come from the test data shipped in the ``gensim`` wheel:

* ``polarity``: 200 movie-review sentences labelled negative/positive (``pang_lee_polarity.cor``).
* ``newsgroups``: 200 newsgroup posts from ``alt.atheism`` and ``sci.space`` (``mini_newsgroup``).
* ``lee``: 300 unlabelled news documents (``lee_background.cor``), for language modelling.

Every dataset is cut into named, disjoint parts by a fixed permutation (:func:`split`):
``source`` (what sources train on; ``source-a``/``source-b`` are its two halves), ``derive``
(data a derivation may use that the source never saw), ``probe`` (the zoo's probe sets) and
``test`` (accuracy). A missing source raises :class:`DataUnavailableError` naming what to install.
"""

from __future__ import annotations

import gzip
import hashlib
import pickletools
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from progenitor.errors import ProgenitorError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SHAPE = (1, 28, 28)
PARTS = ("source", "source-a", "source-b", "derive", "probe", "test")
# Coarse Fashion-MNIST classes: tops, bottoms (trouser, dress), footwear, bags.
FMNIST_COARSE = (0, 1, 0, 1, 0, 2, 0, 2, 3, 2)
FMNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


class DataUnavailableError(ProgenitorError):
    """A dataset's files are not installed; the message names the package that provides them."""


@dataclass(frozen=True)
class Dataset:
    """A labelled dataset: images ``x`` ``(n, 1, 28, 28)`` float32 or ``texts``; labels ``y``."""

    name: str
    y: np.ndarray
    classes: tuple[str, ...]
    x: np.ndarray | None = field(default=None, repr=False)
    texts: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def modality(self) -> str:
        """``image`` or ``text``."""
        return "text" if self.texts is not None else "image"

    @property
    def num_classes(self) -> int:
        """Number of classes (1 for unlabelled text)."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray, name: str | None = None) -> Dataset:
        """The rows at ``index`` (in that order)."""
        return Dataset(
            name=name or self.name,
            y=self.y[index],
            classes=self.classes,
            x=None if self.x is None else self.x[index],
            texts=None if self.texts is None else tuple(self.texts[i] for i in index),
        )


# ---------------------------------------------------------------- images


def _read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (magic, dims, big-endian sizes, then unsigned bytes)."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataUnavailableError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@cache
def _fashion_mnist_raw(root: Path = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray, int]:
    """All 70,000 images (uint8) and labels; the first 60,000 are the official training set."""
    names = (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DataUnavailableError(
            f"Fashion-MNIST not found in {root} (missing {missing[0]}); "
            "install it with: apt-get install dataset-fashion-mnist"
        )
    x_train, y_train, x_test, y_test = (_read_idx(root / n) for n in names)
    x = np.concatenate([x_train, x_test])
    y = np.concatenate([y_train, y_test]).astype(np.int64)
    return x, y, len(x_train)


def load_fashion_mnist(coarse: bool = False) -> Dataset:
    """Fashion-MNIST, all 70,000 images as ``(n, 1, 28, 28)`` float32 in ``[0, 1]``.

    Args:
        coarse: relabel the 10 classes into 4 (tops, bottoms, footwear, bags).
    """
    raw, y, _ = _fashion_mnist_raw()
    x = (raw.astype(np.float32) / 255.0)[:, None]
    if coarse:
        return Dataset("fmnist-coarse", np.asarray(FMNIST_COARSE)[y], ("tops", "bottoms", "footwear", "bags"), x=x)
    return Dataset("fmnist", y, FMNIST_CLASSES, x=x)


def load_digits28() -> Dataset:
    """scikit-learn's 1,797 bundled 8x8 digits, upsampled (bilinear) and padded to 28x28."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataUnavailableError(
            "scikit-learn is not installed; install it with: pip install 'progenitor[data]'"
        ) from exc
    import torch
    import torch.nn.functional as F

    bunch = load_digits()
    small = torch.from_numpy(np.asarray(bunch.images, np.float32) / 16.0)[:, None]
    big = F.interpolate(small, size=(24, 24), mode="bilinear", align_corners=False)
    x = F.pad(big, (2, 2, 2, 2)).clamp(0.0, 1.0).numpy().astype(np.float32)
    return Dataset("digits", np.asarray(bunch.target, np.int64), tuple(str(i) for i in range(10)), x=x)


# ---------------------------------------------------------------- text


def gensim_test_data(name: str) -> Path:
    """Path of a file in the gensim wheel's test data."""
    try:
        import gensim
    except ImportError as exc:
        raise DataUnavailableError(
            "gensim is not installed (its wheel carries the text data); install it with: pip install 'progenitor[data]'"
        ) from exc
    path = Path(gensim.__file__).parent / "test" / "test_data" / name
    if not path.exists():
        raise DataUnavailableError(
            f"{name} is missing from gensim's test data at {path.parent}; "
            "reinstall it with: pip install --force-reinstall 'progenitor[data]'"
        )
    return path


def _read_text(path: Path) -> str:
    """A text file as UTF-8, or as Windows-1252 (some gensim files hold its dashes and quotes)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def load_polarity() -> Dataset:
    """200 movie-review sentences labelled ``neg`` (0) / ``pos`` (1)."""
    texts, labels = [], []
    for line in _read_text(gensim_test_data("pang_lee_polarity.cor")).splitlines():
        label, _, text = line.partition(" ")
        if label in ("__label__neg", "__label__pos") and text.strip():
            texts.append(text.strip())
            labels.append(int(label == "__label__pos"))
    return Dataset("polarity", np.asarray(labels, np.int64), ("neg", "pos"), texts=tuple(texts))


def _read_protocol0_bunch(raw: bytes) -> tuple[list[str], np.ndarray, list[str]]:
    """Texts, targets and target names from gensim's pickled sklearn ``Bunch``, without unpickling.

    The file is a protocol-0 pickle; walking its opcodes with ``pickletools.genops`` reads the
    string and byte constants it holds and runs none of the code a real unpickle would.
    """
    texts: list[str] = []
    strings: list[str] = []
    for opcode, arg, _ in pickletools.genops(raw):
        if opcode.name == "UNICODE":
            texts.append(str(arg))
        elif opcode.name == "STRING":
            strings.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
    key = strings.index("target")
    # After "target": numpy reconstruct args ("b", "i8", "<") then the raw int64 buffer.
    buffer = next(s for s in strings[key + 1 :] if len(s) == 8 * len(texts))
    target = np.frombuffer(buffer.encode("latin-1"), dtype="<i8").astype(np.int64)
    names_at = strings.index("target_names")
    names = strings[names_at + 1 : names_at + 1 + int(target.max()) + 1]
    return texts, target, names


def load_newsgroups() -> Dataset:
    """200 newsgroup posts (headers stripped), labelled ``alt.atheism`` / ``sci.space``."""
    raw = zlib.decompress(gensim_test_data("mini_newsgroup").read_bytes())
    texts, target, names = _read_protocol0_bunch(raw)
    bodies = tuple(_strip_headers(t) for t in texts)
    return Dataset("newsgroups", target, tuple(names), texts=bodies)


def _strip_headers(post: str) -> str:
    """The body of a news post: everything after the first blank line, whitespace collapsed."""
    _, sep, body = post.partition("\n\n")
    return " ".join((body if sep else post).split())


def load_lee() -> Dataset:
    """300 unlabelled news documents (label 0 for all), for language modelling."""
    lines = _read_text(gensim_test_data("lee_background.cor")).splitlines()
    docs = tuple(" ".join(d.split()) for d in lines if d.strip())
    return Dataset("lee", np.zeros(len(docs), np.int64), ("text",), texts=docs)


# ---------------------------------------------------------------- registry and splits

LOADERS = {
    "fmnist": load_fashion_mnist,
    "fmnist-coarse": lambda: load_fashion_mnist(coarse=True),
    "digits": load_digits28,
    "polarity": load_polarity,
    "newsgroups": load_newsgroups,
    "lee": load_lee,
}
# Fractions of each dataset per part: source (cut in halves a/b), derive, probe; test is the rest.
SPLIT_FRACTIONS = {"source": 0.55, "derive": 0.25, "probe": 0.05}
SPLIT_SEED = 20240801


def list_datasets() -> list[str]:
    """Names of the datasets :func:`load_dataset` knows."""
    return sorted(LOADERS)


@cache
def load_dataset(name: str) -> Dataset:
    """A dataset by name (cached per process)."""
    if name not in LOADERS:
        raise ProgenitorError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    return LOADERS[name]()


def _base_name(name: str) -> str:
    """Datasets that are relabellings of one another share one split."""
    return "fmnist" if name == "fmnist-coarse" else name


@cache
def split_indices(name: str) -> dict[str, np.ndarray]:
    """Disjoint index arrays per part (see module docstring), fixed for a dataset name.

    The order comes from a permutation seeded by ``SPLIT_SEED`` and the dataset's base name, so
    ``fmnist`` and ``fmnist-coarse`` share the same images in each part. For Fashion-MNIST the
    official test images are the ``test`` part and the rest is cut from the official training set.
    """
    base = _base_name(name)
    n = len(load_dataset(base))
    seed = int.from_bytes(hashlib.sha256(f"{SPLIT_SEED}:{base}".encode()).digest()[:4], "big")
    rng = np.random.default_rng(seed)
    if base == "fmnist":
        n_official_train = _fashion_mnist_raw()[2]
        order = rng.permutation(n_official_train)
        test = np.arange(n_official_train, n)
        n_pool = n_official_train
    else:
        order = rng.permutation(n)
        n_pool = n
        test = None
    cuts = {}
    start = 0
    fractions = dict(SPLIT_FRACTIONS)
    # Without a separate test pool the fractions are of everything; with one, of the pool alone.
    scale = 1.0 if test is None else 1.0 / sum(fractions.values())
    for part, frac in fractions.items():
        size = round(frac * scale * n_pool)
        cuts[part] = order[start : start + size]
        start += size
    cuts["test"] = order[start:] if test is None else test
    half = len(cuts["source"]) // 2
    cuts["source-a"] = cuts["source"][:half]
    cuts["source-b"] = cuts["source"][half:]
    return {k: np.sort(v) if k == "test" else v for k, v in cuts.items()}


def get_part(name: str, part: str, limit: int | None = None) -> Dataset:
    """Part ``part`` of dataset ``name``, optionally its first ``limit`` rows (a fixed subset)."""
    if part not in PARTS:
        raise ProgenitorError(f"unknown data part {part!r}; known: {', '.join(PARTS)}")
    index = split_indices(name)[part]
    if limit is not None:
        index = index[:limit]
    return load_dataset(name).subset(index, name=f"{name}:{part}")
