"""Outbound pacing: token buckets, one global and one per key (chat).

Telegram limits a bot to about 30 messages per second overall and about one per
second in a chat, 20 per minute in a group. Waiting here is cheaper than a 429,
which stalls the whole chat for `retry_after` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBucket:
    """A bucket of `burst` tokens refilled at `rate` per second.

    `reserve()` takes a token now or books the next one and says how long to wait,
    so callers queue in arrival order without a lock or a polling loop.
    """

    __slots__ = ("_bucket", "_clock", "burst", "rate")

    def __init__(
        self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock = clock
        self._bucket = _Bucket(self.burst, clock())

    def reserve(self) -> float:
        now = self._clock()
        bucket = self._bucket
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        bucket.tokens -= 1.0
        return 0.0 if bucket.tokens >= 0 else -bucket.tokens / self.rate

    def is_full(self) -> bool:
        elapsed = self._clock() - self._bucket.updated
        return self._bucket.tokens + elapsed * self.rate >= self.burst


class KeyedPacer:
    """A global bucket plus one bucket per key, with idle buckets forgotten.

    Per-key state is bounded: once there are more than `max_keys` buckets, the
    ones that are full again (idle chats) are dropped; a full bucket carries no
    information, so dropping it changes nothing.
    """

    def __init__(
        self,
        global_rate: float,
        key_rate: float,
        *,
        global_burst: float | None = None,
        key_burst: float = 3.0,
        group_rate: float | None = 20 / 60,
        group_burst: float = 20.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._global = TokenBucket(global_rate, global_burst or global_rate, clock)
        self._key_rate = key_rate
        self._key_burst = key_burst
        self._group_rate = group_rate
        self._group_burst = group_burst
        self._buckets: dict[Hashable, TokenBucket] = {}
        self._max_keys = max_keys

    def _bucket(self, key: Hashable, group: bool) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_idle()
            if group and self._group_rate:
                bucket = TokenBucket(self._group_rate, self._group_burst, self._clock)
            else:
                bucket = TokenBucket(self._key_rate, self._key_burst, self._clock)
            self._buckets[key] = bucket
        return bucket

    def _forget_idle(self) -> None:
        for key in [k for k, b in self._buckets.items() if b.is_full()]:
            del self._buckets[key]

    def delay_for(self, key: Hashable | None, *, group: bool = False) -> float:
        """Book a send for `key` and return how long to wait before doing it."""
        wait = self._global.reserve()
        if key is not None:
            wait = max(wait, self._bucket(key, group).reserve())
        return wait

    async def wait(self, key: Hashable | None, *, group: bool = False) -> None:
        delay = self.delay_for(key, group=group)
        if delay > 0:
            await asyncio.sleep(delay)

    def __len__(self) -> int:
        return len(self._buckets)
