"""An access token shared by replicas (GigaChat's OAuth): one token request for all of them.

The token lives under `<key>` until its refresh time (Redis expires it then). A replica that
needs one runs one script: the token if there is one, else the refresh lock `<key>:lock` if
nobody holds it (this replica then requests the token and stores it, which frees the lock),
else "wait": another replica is requesting it; the caller polls briefly and reads it. A lock
whose holder died expires after `lock_seconds`. The token is kept in Redis and in memory only:
never in a key name, a log line or an error.
"""

from __future__ import annotations

from redis.asyncio import Redis

from services.llm.gigachat.auth import TokenClaim
from services.shared.guard import RedisGuard

__all__ = ["RedisTokenStore"]

# KEYS: token, lock. ARGV: holder, lock ms. {1, token, ms left} | {2} (locked for us) | {0}.
_CLAIM = """
local token = redis.call('GET', KEYS[1])
if token then return {1, token, redis.call('PTTL', KEYS[1])} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
"""
# KEYS: token, lock. ARGV: holder, token, ms to keep it.
_STORE = """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""
# KEYS[1]: a key; ARGV[1]: the value it must still have to be deleted.
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisTokenStore:
    """`services.llm.gigachat.auth.SharedToken` on Redis."""

    def __init__(self, redis: Redis, guard: RedisGuard, *, key: str) -> None:
        self._guard = guard
        self._keys = [key, f"{key}:lock"]
        self._claim = redis.register_script(_CLAIM)
        self._store = redis.register_script(_STORE)
        self._delete_if = redis.register_script(_DELETE_IF)

    async def claim(self, holder: str, lock_seconds: float) -> TokenClaim | None:
        async def call() -> TokenClaim:
            reply = await self._claim(keys=self._keys, args=[holder, int(lock_seconds * 1000)])
            if int(reply[0]) == 1:
                token = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
                return TokenClaim(token, max(0, int(reply[2])) / 1000, locked=False)
            return TokenClaim(None, 0.0, locked=int(reply[0]) == 2)

        return await self._guard.run(call, "a shared token read")

    async def store(self, holder: str, token: str, seconds: float) -> None:
        async def call() -> None:
            await self._store(keys=self._keys, args=[holder, token, max(1, int(seconds * 1000))])

        await self._guard.run(call, "a shared token write")

    async def release(self, holder: str) -> None:
        async def call() -> None:
            await self._delete_if(keys=[self._keys[1]], args=[holder])

        await self._guard.run(call, "a shared token lock release")

    async def drop(self, token: str) -> None:
        async def call() -> None:
            await self._delete_if(keys=[self._keys[0]], args=[token])

        await self._guard.run(call, "a shared token drop")
