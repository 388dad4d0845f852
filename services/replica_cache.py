"""A bounded in-memory cache that other replicas' changes can empty.

What every update reads and rarely changes (users' settings, whether a chat is in a form) is
kept in memory. With replicas, another process may change it: the change's notice
(services/shared/invalidation.py) makes every replica `forget` the keys. A read that was under
way when keys were forgotten may predate the change, so it is kept only if nothing was
forgotten meanwhile (`stamp()` before the read, `put(..., stamp)` after). While notices cannot
be heard the cache is off (`suspend_cache`); it starts empty when they can (`resume_cache`).
A notice can still be lost (a replica killed between its write and its notice), so with
`max_age` an entry that old is read again.

No Redis here: a single process uses the same cache, never suspended, without `max_age`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["ReplicaCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ReplicaCache(Generic[K, V]):
    def __init__(
        self,
        size: int,
        *,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._size = size
        self._max_age = max_age
        self._clock = clock
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._caching = True
        # Bumped whenever entries may be out of date: a read stamped before is not kept.
        self._generation = 0

    def get(self, key: K) -> V | None:
        """The cached value (None: not cached, or too old: read it again)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, kept_at = entry
        if self._max_age is not None and self._clock() - kept_at > self._max_age:
            del self._entries[key]  # aged out: nothing changed elsewhere is implied
            return None
        self._entries.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        """The cached value whatever its age, without touching its place (to update it)."""
        entry = self._entries.get(key)
        return entry[0] if entry is not None else None

    def stamp(self) -> int:
        """Taken before reading what `put` will keep."""
        return self._generation

    def put(self, key: K, value: V, stamp: int) -> V:
        """Keep `value`, read after `stamp()`, unless keys were forgotten since; returns it."""
        if not self._caching or stamp != self._generation:
            return value
        self._entries[key] = (value, self._clock())
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return value

    def forget(self, keys: Iterable[K]) -> None:
        """These changed (here or elsewhere): read them again next time."""
        self._generation += 1
        for key in keys:
            self._entries.pop(key, None)

    def suspend_cache(self) -> None:
        """Changes elsewhere cannot be heard: nothing is kept until `resume_cache`."""
        self._generation += 1
        self._caching = False
        self._entries.clear()

    def resume_cache(self) -> None:
        """Changes elsewhere are heard again: cache anew (what was missed is not cached)."""
        self._generation += 1
        self._caching = True
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
