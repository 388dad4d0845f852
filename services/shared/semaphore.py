"""A counting semaphore shared by replicas, whose holders expire when their process dies.

The holders are members of a sorted set scored by their expiry time (Redis' clock). Taking a
place first drops expired holders, then adds this one if fewer than `limit` remain, in one Lua
script. A holder refreshes its expiry every `refresh` seconds while it holds; a process that
died (or lost Redis) stops refreshing and its place frees itself after `ttl` seconds.

When Redis is unreachable a hold goes ahead without a shared place (the caller's local limit
still holds): better a stream too many for a moment than no answers at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from services.shared.guard import RedisGuard

__all__ = ["RedisSemaphore"]

log = logging.getLogger(__name__)

# KEYS[1]: the holders; ARGV: holder, limit, ttl (s). 1 = held (taken or refreshed), 0 = full.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], string.format('%.6f', now + ttl), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 1000)
return 1
"""


class RedisSemaphore:
    def __init__(
        self,
        redis: Redis,
        guard: RedisGuard,
        *,
        key: str,
        limit: int,
        ttl: float = 30.0,
        refresh: float = 10.0,
        poll: float = 0.1,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if not 0 < refresh < ttl:
            raise ValueError("refresh must be shorter than ttl")
        self._redis = redis
        self._take = redis.register_script(_TAKE)
        self._guard = guard
        self._key = key
        self._limit = limit
        self._ttl = ttl
        self._refresh = refresh
        self._poll = poll

    def __repr__(self) -> str:
        return f"RedisSemaphore({self._key!r}, limit={self._limit})"

    async def holders(self) -> int:
        """Live holders now (for tests and diagnostics)."""
        now_s, now_us = await self._redis.time()
        now = now_s + now_us / 1_000_000
        return int(await self._redis.zcount(self._key, f"({now}", "+inf"))

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold one place for the body, waiting for one (polling every `poll` seconds)."""
        holder = uuid.uuid4().hex
        shared = await self._acquire(holder)
        refresher = None
        if shared:
            refresher = asyncio.create_task(self._keep(holder), name="redis-semaphore-refresh")
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
                # Shielded: a cancelled holder still gives its place back at once (if Redis
                # fails here, the place expires after `ttl`).
                await asyncio.shield(self._release(holder))

    async def _try(self, holder: str) -> bool | None:
        async def call() -> bool:
            return bool(await self._take(keys=[self._key], args=[holder, self._limit, self._ttl]))

        return await self._guard.run(call, "a stream slot")

    async def _acquire(self, holder: str) -> bool:
        """True once a shared place is held; False when Redis is unreachable (go ahead)."""
        while True:
            taken = await self._try(holder)
            if taken is None:
                return False
            if taken:
                return True
            await asyncio.sleep(self._poll)

    async def _keep(self, holder: str) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            if await self._try(holder) is False:
                # Our place expired (the loop stalled past the ttl) and others took it.
                log.warning("a shared stream slot expired while held; the limit may be exceeded")

    async def _release(self, holder: str) -> None:
        async def call() -> int:
            return int(await self._redis.zrem(self._key, holder))

        await self._guard.run(call, "a stream slot release")
