"""Values computed from an object, kept while the object lives (``per_object``).

Parent search and lineage trees compare one DNA with many others; what the learned Model DNA
derives from a DNA (its input blocks and embedding) is the same in every comparison. DNAs are not
changed once extracted, so such values can be kept beside them, keyed by identity, and dropped
when the DNA is garbage-collected.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class per_object(Generic[T]):  # noqa: N801 - used like a function decorator
    """Memoise ``fn(obj)`` by the identity of ``obj`` for as long as ``obj`` lives."""

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn
        self._store: dict[int, tuple[weakref.ref[Any], T]] = {}

    def __call__(self, obj: Any) -> T:
        key = id(obj)
        hit = self._store.get(key)
        if hit is not None and hit[0]() is obj:
            return hit[1]
        value = self.fn(obj)
        self._store[key] = (weakref.ref(obj, lambda ref, key=key: self._forget(key, ref)), value)
        return value

    def _forget(self, key: int, ref: weakref.ref[Any]) -> None:
        # Only the entry of the object that died: its id may already belong to a newer object.
        if key in self._store and self._store[key][0] is ref:
            del self._store[key]

    def clear(self) -> None:
        """Drop every kept value."""
        self._store.clear()
