"""Values computed from an object, kept while the object lives (``per_object``), and a small
least-recently-used map (``LRU``).

Parent search and lineage trees compare one DNA with many others; what the learned Model DNA
derives from a DNA (its input blocks and embedding) is the same in every comparison. DNAs are not
changed once extracted, so such values can be kept beside them, keyed by identity, and dropped
when the DNA is garbage-collected.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
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


K = TypeVar("K")


class LRU(Generic[K, T]):
    """A mapping that keeps its ``size`` most recently used entries (``size`` 0: keeps nothing)."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"an LRU size must be 0 or more, not {size}")
        self.size = size
        self._items: OrderedDict[K, T] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> T | None:
        """The value kept for ``key`` (now the most recently used), or None."""
        value = self._items.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: T) -> T:
        """Keep ``value`` for ``key``, dropping the least recently used beyond ``size``; returns it."""
        if self.size:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop every entry."""
        self._items.clear()
