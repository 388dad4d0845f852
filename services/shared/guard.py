"""Calls to Redis that never crash nor hang the bot: a short timeout and a local fallback.

While Redis is unreachable, each caller does what it did without Redis (paces locally,
limits streams per replica): better to pace locally than to stop answering. After a failure
Redis is not asked again for `retry_after` seconds, so an outage costs one timeout, not one
per message. One log line when Redis goes away (with the kind of failure), one when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

__all__ = ["RedisGuard"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class RedisGuard:
    def __init__(
        self,
        *,
        timeout: float = 0.5,
        retry_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout
        self._retry_after = retry_after
        self._clock = clock
        self._down_until = 0.0
        self._down = False

    @property
    def down(self) -> bool:
        """Whether the last call failed (callers are on their local state)."""
        return self._down

    async def run(self, call: Callable[[], Awaitable[T]], what: str) -> T | None:
        """`call()`'s result, or None when Redis is unreachable (the caller falls back)."""
        if self._down and self._clock() < self._down_until:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                result = await call()
        except (RedisError, OSError, TimeoutError) as error:
            self._down_until = self._clock() + self._retry_after
            if not self._down:
                self._down = True
                log.warning(
                    "Redis unavailable (%s during %s): using local state, retrying every %g s",
                    type(error).__name__,
                    what,
                    self._retry_after,
                )
            return None
        if self._down:
            self._down = False
            log.info("Redis is reachable again: shared state resumed")
        return result
