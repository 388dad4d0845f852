"""Outbound pacing: token buckets, one global and one per key (chat).

Telegram limits a bot to about 30 messages per second overall and about one per
second in a chat, 20 per minute in a group. Waiting here is cheaper than a 429,
which stalls the whole chat for `retry_after` seconds.

With replicas (REDIS_URL), `KeyedPacer` is given the shared limiter: each send books its turn
under the bot's overall rate and its chat's rate there, for all replicas together; when Redis
cannot answer, that send is paced by the local buckets as without it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.shared.rate import Rate


class SharedRates(Protocol):
    """Rate limits shared with other processes (services/shared/gcra.py)."""

    async def book(self, rates: Sequence[Rate]) -> float | None:
        """Book one send under every rate: seconds to wait, None to pace locally."""
        ...


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

    def _refill(self) -> _Bucket:
        now = self._clock()
        bucket = self._bucket
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        return bucket

    def reserve(self) -> float:
        bucket = self._refill()
        bucket.tokens -= 1.0
        return 0.0 if bucket.tokens >= 0 else -bucket.tokens / self.rate

    def available(self) -> bool:
        """Whether a token can be taken now, without booking one ahead."""
        return self._refill().tokens >= 1.0

    def take(self) -> None:
        """Take a token that `available()` said is there."""
        self._bucket.tokens -= 1.0

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
        shared: SharedRates | None = None,
    ) -> None:
        self._clock = clock
        self._global = TokenBucket(global_rate, global_burst or global_rate, clock)
        self._shared = shared
        self._shared_global = Rate("tg:all", global_rate, global_burst or global_rate)
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

    def try_spare(self) -> bool:
        """Take one token of the overall budget only if it is free now: what is left over
        by the sends that wait for their turn (they book tokens ahead of time)."""
        if not self._global.available():
            return False
        self._global.take()
        return True

    def _shared_rates(self, key: Hashable | None, group: bool) -> tuple[Rate, ...]:
        if key is None:
            return (self._shared_global,)
        if group and self._group_rate:
            chat = Rate(f"tg:chat:{key}", self._group_rate, self._group_burst)
        else:
            chat = Rate(f"tg:chat:{key}", self._key_rate, self._key_burst)
        return (self._shared_global, chat)

    async def wait(self, key: Hashable | None, *, group: bool = False) -> None:
        if self._shared is not None:
            shared_delay = await self._shared.book(self._shared_rates(key, group))
            if shared_delay is not None:
                # Counted locally too: drafts use only what this replica's sends leave free.
                self._global.reserve()
                if shared_delay > 0:
                    await asyncio.sleep(shared_delay)
                return
        delay = self.delay_for(key, group=group)
        if delay > 0:
            await asyncio.sleep(delay)

    def __len__(self) -> int:
        return len(self._buckets)


class DraftBudget:
    """A shared, non-blocking budget for drafts (and other live progress calls).

    Drafts are previews: one that cannot go out now is simply skipped, and the next one
    (newer content) replaces it. Every draft takes a token of the drafts' own bucket
    (their configured share of Telegram's overall limit); progress drafts (a queue
    position, "working…") also take one of a smaller progress bucket, so a crowd of
    waiting users cannot crowd out the answers being written. With `overall`, a draft
    also needs a spare token of the bot's overall pacer: messages book theirs ahead, so
    drafts only use what messages leave free and the bot's total stays within its rate.
    """

    def __init__(
        self,
        rate: float,
        progress_rate: float,
        *,
        overall: KeyedPacer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A second's worth of burst: a few answers starting together all show a draft.
        self._drafts = TokenBucket(rate, max(rate, 1.0), clock)
        self._progress = TokenBucket(progress_rate, max(progress_rate, 1.0), clock)
        self._overall = overall
        self.skipped = 0  # drafts not sent for want of budget (for tests and profiling)

    def allow(self, *, progress: bool = False) -> bool:
        """Take the budget for one draft now, or say it must be skipped."""
        if (progress and not self._progress.available()) or not self._drafts.available():
            self.skipped += 1
            return False
        if self._overall is not None and not self._overall.try_spare():
            self.skipped += 1
            return False
        self._drafts.take()
        if progress:
            self._progress.take()
        return True
