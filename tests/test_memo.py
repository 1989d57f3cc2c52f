"""progenitor._memo.per_object: values kept per live object, recomputed for a new one."""

from __future__ import annotations

import gc

from progenitor._memo import per_object


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
