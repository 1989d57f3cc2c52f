"""Probe sets: files, folders, presets, hashes and fit checks."""

from __future__ import annotations

import numpy as np
import pytest

import progenitor as pg
from progenitor.models.base import InputSpec
from progenitor.probes import check_fits, from_array, list_presets, load_probes


def test_npy_and_hash(tmp_path) -> None:
    arr = np.arange(24, dtype=np.float32).reshape(3, 2, 4)
    np.save(tmp_path / "p.npy", arr)
    a = load_probes(tmp_path / "p.npy")
    assert a.kind == "tensor" and a.sample_shape == (2, 4) and len(a) == 3
    assert a.hash == from_array(arr.copy()).hash
    arr[0, 0, 0] += 1
    assert a.hash != from_array(arr).hash


def test_text_file(tmp_path) -> None:
    (tmp_path / "p.txt").write_text("first line\n\nsecond line\n", encoding="utf-8")
    p = load_probes(tmp_path / "p.txt")
    assert p.kind == "text" and p.data == ("first line", "second line")


def test_image_folder(tmp_path) -> None:
    from PIL import Image

    for i in range(3):
        Image.fromarray((np.ones((6, 5)) * i * 40).astype(np.uint8)).save(tmp_path / f"{i}.png")
    p = load_probes(tmp_path)
    assert p.sample_shape == (1, 6, 5) and p.data[2].max() == pytest.approx(80 / 255)
    Image.fromarray(np.zeros((7, 5), np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(pg.ProbeError, match="different shapes"):
        load_probes(tmp_path)


def test_presets_are_deterministic() -> None:
    assert {"smooth-noise", "sentences"} <= set(list_presets())
    a = load_probes("smooth-noise:16", InputSpec("tensor", (1, 8, 8)))
    b = load_probes("smooth-noise:16", InputSpec("tensor", (1, 8, 8)))
    assert a.hash == b.hash and a.sample_shape == (1, 8, 8) and len(a) == 16
    assert load_probes(None, InputSpec("text")).kind == "text"
    with pytest.raises(pg.ProbeError, match="input shape"):
        load_probes("smooth-noise", InputSpec("tensor", None))


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "not a readable"), (b"\x93NUMPY garbage", "not a readable")],
)
def test_bad_npy(tmp_path, content, message) -> None:
    (tmp_path / "x.npy").write_bytes(content)
    with pytest.raises(pg.ProbeError, match=message):
        load_probes(tmp_path / "x.npy")


def test_bad_arrays_and_missing(tmp_path) -> None:
    with pytest.raises(pg.ProbeError, match="NaN"):
        from_array(np.full((2, 3), np.nan))
    with pytest.raises(pg.ProbeError, match=r"\(n, \.\.\.\)"):
        from_array(np.zeros(3))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(pg.ProbeError):
        load_probes(tmp_path / "obj.npy")  # object arrays need pickle: refused
    with pytest.raises(pg.ProbeError, match="no such probe file"):
        load_probes(tmp_path / "nothing.npy")


def test_check_fits_names_both(family) -> None:
    model = pg.load(family.parent, input_shape=(1, 8, 8))
    with pytest.raises(pg.ProbeError, match=r"probe set 'array'.*\[1, 8, 8\]"):
        check_fits(from_array(np.zeros((2, 3, 4), np.float32)), model)
    with pytest.raises(pg.ProbeError, match="takes tensor"):
        check_fits(load_probes(["some text"]), model)
