"""Access checks shared by replicas: per-user flood windows, one-time notices, the list version.

- Flood: each user's paid messages of the last window are members of a sorted set scored by
  Redis' own clock. One Lua script drops the old ones and either takes the message or refuses
  it, and for a refusal decides whether this is the first of the burst (a "told" key living
  until the window frees a place): one notice in total, whichever replica refuses.
- `once(key, seconds)`: True for the first caller in `seconds` across replicas (the "this bot is
  private" notice at most once a minute, the one ban notice).
- Quota reservations: each user's answers in flight are members of a sorted set scored by
  their expiry, so a reservation left by a dead replica frees itself; `reserve` adds one and
  counts the live ones in one script.
- The access list version: a random token replaced by every /allow, /deny, /ban, /unban and
  /limit. Each replica keeps the list in memory with the version it read it under and compares
  it on every paid message (read in the flood script's own round trip, `admit`, or with one GET
  when no flood limit is set), so a lever pulled on one replica holds on every other at the
  very next message; a random token (not a counter) cannot come back to an old value after
  Redis lost its data.

Every call returns None when Redis is unreachable: the caller uses its local state.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from services.access import FloodDecision
from services.shared.guard import RedisGuard

__all__ = ["FloodDecision", "RedisAccessState"]

# KEYS: the user's window (sorted set), the user's "told" key. ARGV: limit, window (s), member.
# flood() returns {taken (1/0), ms until a place frees (refusals), notify (1/0)}.
_FLOOD_FUNCTION = """
local function flood()
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], string.format('%.6f', now), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return {1, 0, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait_ms = math.max(1, math.ceil((tonumber(oldest[2]) + window - now) * 1000))
local told = redis.call('SET', KEYS[2], '1', 'NX', 'PX', wait_ms)
return {0, wait_ms, told and 1 or 0}
end
"""
_FLOOD = _FLOOD_FUNCTION + "return flood()"
# The same, and the access list's version (KEYS[3]; "" before any change) as a fourth element.
_ADMIT = (
    _FLOOD_FUNCTION
    + """
local decision = flood()
decision[4] = redis.call('GET', KEYS[3]) or ''
return decision
"""
)


# KEYS[1]: the user's answers in flight (sorted set of holders by expiry); ARGV: holder,
# seconds. Adds the holder and returns how many live ones there are, this one included.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], string.format('%.6f', now + tonumber(ARGV[2])), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
return redis.call('ZCARD', KEYS[1])
"""


class RedisAccessState:
    """`services.access.SharedAccess` on Redis."""

    def __init__(self, redis: Redis, guard: RedisGuard, *, prefix: str) -> None:
        self._redis = redis
        self._guard = guard
        self._prefix = f"{prefix}access:"
        self._version_key = f"{self._prefix}version"
        self._flood = redis.register_script(_FLOOD)
        self._admit = redis.register_script(_ADMIT)
        self._reserve = redis.register_script(_RESERVE)

    def _flood_keys(self, user_id: int) -> list[str]:
        return [f"{self._prefix}flood:{user_id}", f"{self._prefix}flood-told:{user_id}"]

    async def flood(self, user_id: int, limit: int, window: float) -> FloodDecision | None:
        """Take one paid message of `user_id` into its window, or refuse it."""

        async def call() -> FloodDecision:
            reply = await self._flood(
                keys=self._flood_keys(user_id), args=[limit, window, uuid.uuid4().hex]
            )
            return _decision(reply)

        return await self._guard.run(call, "a flood check")

    async def admit(
        self, user_id: int, limit: int, window: float
    ) -> tuple[str, FloodDecision] | None:
        """`list_version()` and `flood(...)` in one round trip: (version, decision)."""

        async def call() -> tuple[str, FloodDecision]:
            keys = [*self._flood_keys(user_id), self._version_key]
            reply = await self._admit(keys=keys, args=[limit, window, uuid.uuid4().hex])
            return _text(reply[3]), _decision(reply)

        return await self._guard.run(call, "a flood check")

    async def once(self, key: str, seconds: float) -> bool | None:
        """True for the first caller within `seconds` (on any replica)."""

        async def call() -> bool:
            name = f"{self._prefix}once:{key}"
            return bool(await self._redis.set(name, "1", nx=True, px=max(1, int(seconds * 1000))))

        return await self._guard.run(call, "a notice check")

    async def reserve(self, user_id: int, holder: str, seconds: float) -> int | None:
        """Hold one of the user's answers in flight; how many are held now (this included)."""

        async def call() -> int:
            reply = await self._reserve(keys=[self._in_flight_key(user_id)], args=[holder, seconds])
            return int(reply)

        return await self._guard.run(call, "a quota reservation")

    async def unreserve(self, user_id: int, holder: str) -> None:
        async def call() -> None:
            await self._redis.zrem(self._in_flight_key(user_id), holder)

        await self._guard.run(call, "a quota release")

    def _in_flight_key(self, user_id: int) -> str:
        return f"{self._prefix}in-flight:{user_id}"

    async def list_version(self) -> str | None:
        """The access list's current version ("" before any change); None: Redis unreachable."""

        async def call() -> str:
            value = await self._redis.get(self._version_key)
            return "" if value is None else _text(value)

        return await self._guard.run(call, "an access list check")

    async def list_changed(self) -> None:
        """Tell every replica that the list changed (after it was written to storage)."""

        async def call() -> None:
            await self._redis.set(self._version_key, uuid.uuid4().hex)

        await self._guard.run(call, "an access list change")


def _decision(reply: list[object]) -> FloodDecision:
    taken, wait_ms, notify = (int(str(value)) for value in reply[:3])
    return FloodDecision(bool(taken), wait_ms / 1000, bool(notify))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
