"""Rate limits shared by replicas: GCRA (the generic cell rate algorithm) in one Lua script.

Each key stores its theoretical arrival time (TAT) in Redis' own clock, so replicas on
machines whose clocks differ still agree. A call BOOKS one start for all the keys it names at
once (Telegram: the bot's overall rate and the chat's) and returns how long to wait for it;
the next call books the start after it. Bookings are atomic (one script), so however many
replicas ask together, starts are never closer than a key's interval (minus its burst
tolerance); a replica that keeps one booking ahead while it has waiters keeps the rate full.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from services.shared.guard import RedisGuard
from services.shared.rate import Rate

__all__ = ["GcraLimiter", "Rate", "SharedStartGate"]

# KEYS: one TAT key per limit; ARGV: per key its interval and burst tolerance (seconds).
# Returns the wait in microseconds (Lua numbers become integers in replies). Each key books
# its own next place, as the local pacer's buckets do: a chat that must wait a second for its
# own turn takes one place of the overall rate now, and does not push everyone else's back.
_BOOK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tats = {}
local start = now
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  local earliest = tat - tonumber(ARGV[2 * i])
  if earliest > start then start = earliest end
end
for i, key in ipairs(KEYS) do
  local tat = tats[i] + tonumber(ARGV[2 * i - 1])
  redis.call('SET', key, string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
end
return math.ceil((start - now) * 1000000)
"""


class GcraLimiter:
    """Books starts on Redis; `book()` answers None when Redis is unreachable."""

    def __init__(self, redis: Redis, guard: RedisGuard, *, prefix: str) -> None:
        self._script = redis.register_script(_BOOK)
        self._guard = guard
        self._prefix = prefix

    async def book(self, rates: Sequence[Rate]) -> float | None:
        """Book one start under every rate; seconds to wait for it, None to pace locally."""
        keys = [f"{self._prefix}rate:{rate.key}" for rate in rates]
        args: list[float] = []
        for rate in rates:
            args += (rate.interval, rate.tolerance)

        async def call() -> float:
            micros = await self._script(keys=keys, args=args)
            return max(0, int(micros)) / 1_000_000

        return await self._guard.run(call, "a rate booking")


class SharedStartGate:
    """One provider's request starts (LLM_RPS) across replicas: `FairRateLimiter`'s gate."""

    def __init__(self, limiter: GcraLimiter, key: str, per_second: float) -> None:
        self._limiter = limiter
        self._rates = (Rate(key, per_second),)

    async def book(self) -> float | None:
        return await self._limiter.book(self._rates)
