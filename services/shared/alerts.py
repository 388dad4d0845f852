"""The admins' balance notices with several replicas: one check per interval, one notice each.

- `claim_check(seconds)`: a lease (`SET NX PX`) on the periodic balance check; the replica
  that gets it checks, the others skip this round. A replica that died frees it when it expires.
- `swap_level(key, severity)`: the last level seen of one balance, replaced atomically by the
  new one; the caller compares what it gets back with what it saw, so two replicas checking
  at once (a lease that expired meanwhile) still notify once, and a restart does not repeat a
  notice that was given already.

Each call returns None when Redis is unreachable: the caller uses its own lease-less check and
its own memory of levels (the bot's behaviour without Redis).
"""

from __future__ import annotations

from redis.asyncio import Redis

from services.shared.guard import RedisGuard

__all__ = ["RedisAlertState"]

# Levels are forgotten after this long without a check (a provider removed, say).
LEVELS_TTL_MS = 30 * 86400 * 1000

# KEYS[1]: the levels hash. ARGV: field, level, ttl ms. The previous level, -1 if none.
_SWAP = """
local before = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if before then return tonumber(before) end
return -1
"""


class RedisAlertState:
    """`services.alerts.SharedAlerts` on Redis."""

    def __init__(self, redis: Redis, guard: RedisGuard, *, prefix: str) -> None:
        self._redis = redis
        self._guard = guard
        self._lease = f"{prefix}alerts:balance-check"
        self._levels = f"{prefix}alerts:levels"
        self._swap = redis.register_script(_SWAP)

    async def claim_check(self, seconds: float) -> bool | None:
        async def call() -> bool:
            px = max(1, int(seconds * 1000))
            return bool(await self._redis.set(self._lease, "1", nx=True, px=px))

        return await self._guard.run(call, "a balance check lease")

    async def swap_level(self, key: str, severity: int) -> int | None:
        async def call() -> int:
            return int(await self._swap(keys=[self._levels], args=[key, severity, LEVELS_TTL_MS]))

        return await self._guard.run(call, "a balance level")
