"""progenitor._memo: values kept per live object (``per_object``), and the ``LRU`` map."""

from __future__ import annotations

import gc

import pytest

from progenitor._memo import LRU, per_object


class _Thing:
    def __init__(self, value: int) -> None:
        self.value = value


def test_per_object_keeps_values_while_the_object_lives() -> None:
    calls: list[int] = []

    def square(thing: _Thing) -> int:
        calls.append(thing.value)
        return thing.value**2

    memo = per_object(square)
    a, b = _Thing(3), _Thing(4)
    assert memo(a) == 9 and memo(a) == 9 and memo(b) == 16
    assert calls == [3, 4]  # each object computed once
    del a
    gc.collect()
    assert len(memo._store) == 1  # the dead object's value is dropped
    c = _Thing(5)  # may reuse the dead object's id: must not get its value
    assert memo(c) == 25 and calls == [3, 4, 5]
    memo.clear()
    assert memo(b) == 16 and calls == [3, 4, 5, 4]


def test_lru_keeps_the_most_recently_used_entries() -> None:
    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)  # drops "b", the least recently used
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2 and (cache.hits, cache.misses) == (3, 1)
    off: LRU[str, int] = LRU(0)
    assert off.put("a", 1) == 1 and off.get("a") is None and len(off) == 0
    with pytest.raises(ValueError, match="0 or more"):
        LRU(-1)
