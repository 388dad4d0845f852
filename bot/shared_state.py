"""The Redis side of the composition root: built only when REDIS_URL is set.

One `redis.asyncio.Redis` client (one connection pool) serves everything shared by replicas:
aiogram's FSM storage, the providers' start limiters and stream slots, Telegram's pacing and
the Stop relay, the access checks (flood, notices, the access list's version), the providers'
circuit breakers, the relays that keep the users' settings and forms' states cached
(services/shared/invalidation.py), GigaChat's OAuth token, the admins' balance checks and albums'
parts. Every key lives under `llmbot:<bot id>:`, so bots sharing a Redis never meet.
The factory imports this module only with REDIS_URL: a bot without it never loads redis-py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis

from bot.shared_fsm import CachedStateRedisStorage, shared_fsm_storage
from services.shared.access import RedisAccessState
from services.shared.albums import KEEP, RedisAlbumCollector
from services.shared.alerts import RedisAlertState
from services.shared.breaker import BreakerRelay
from services.shared.gcra import GcraLimiter, SharedStartGate
from services.shared.guard import RedisGuard
from services.shared.invalidation import InvalidationRelay
from services.shared.semaphore import RedisSemaphore
from services.shared.stop import StopRelay

if TYPE_CHECKING:  # GigaChat's code is loaded only when it is configured
    from services.shared.token import RedisTokenStore

__all__ = ["SharedState", "open_shared_state"]

# A call to Redis waits this long at most; then that call falls back to local state.
CALL_TIMEOUT = 0.5
# Connections to Redis per replica: calls take one for a round trip (well under a
# millisecond); the Stop, breaker, settings and forms relays keep one each for their
# subscriptions.
MAX_CONNECTIONS = 64
# After a failure Redis is tried again this much later (meanwhile: local state, no waiting).
RETRY_AFTER = 5.0
# A stream slot's holder expires this long after its process stopped refreshing it.
SLOT_TTL = 30.0
SLOT_REFRESH = 10.0
# An album's parts outlive a dead leader's replay: found dead after the replica timeout, the
# update is replayed at the next scan (5 s), with time to spare for an answer under way.
ALBUM_REPLAY_MARGIN = 40.0

T = TypeVar("T")


@dataclass(slots=True)
class SharedState:
    redis: Redis
    guard: RedisGuard
    rates: GcraLimiter
    stops: StopRelay
    breakers: BreakerRelay
    profiles: InvalidationRelay[int]
    forms: InvalidationRelay[str]
    prefix: str

    def start_gate(self, provider: str, per_second: float) -> SharedStartGate:
        """A provider's request starts (its *_RPS) shared by every replica."""
        return SharedStartGate(self.rates, f"llm:{provider}", per_second)

    def stream_slots(self, provider: str, limit: int) -> RedisSemaphore:
        """A provider's concurrent requests (GIGACHAT_MAX_STREAMS) shared by every replica."""
        return RedisSemaphore(
            self.redis,
            self.guard,
            key=f"{self.prefix}slots:{provider}",
            limit=limit,
            ttl=SLOT_TTL,
            refresh=SLOT_REFRESH,
        )

    def album_collector(
        self,
        window: float,
        dump: Callable[[T], str],
        load: Callable[[str], T],
        *,
        key: Callable[[T], str] | None = None,
        replica_timeout: float = 20.0,
    ) -> RedisAlbumCollector[T]:
        """Albums whose parts reached any replica, answered once (services/shared/albums.py).
        Parts are kept long enough for a dead leader's update to be replayed with them."""
        return RedisAlbumCollector(
            self.redis,
            self.guard,
            prefix=self.prefix,
            dump=dump,
            load=load,
            key=key,
            window=window,
            keep=max(KEEP, replica_timeout + ALBUM_REPLAY_MARGIN),
        )

    def fsm_storage(self) -> CachedStateRedisStorage:
        """Forms in Redis; the factory starts `forms.listen` on it once the loop runs."""
        return shared_fsm_storage(self.redis, self.prefix, self.forms)

    def access_state(self) -> RedisAccessState:
        """Flood windows, the one-time notices and the access list's version."""
        return RedisAccessState(self.redis, self.guard, prefix=self.prefix)

    def alert_state(self) -> RedisAlertState:
        """The balance check's lease and the balances' last levels."""
        return RedisAlertState(self.redis, self.guard, prefix=self.prefix)

    def gigachat_token(self, credentials: str, scope: str) -> RedisTokenStore:
        """GigaChat's OAuth token, one for every replica using the same key and scope (the key
        name carries a hash of them, never the key)."""
        from services.shared.token import RedisTokenStore

        digest = hashlib.sha256(f"{scope}\n{credentials.strip()}".encode()).hexdigest()[:16]
        return RedisTokenStore(self.redis, self.guard, key=f"{self.prefix}gigachat:token:{digest}")

    async def aclose(self) -> None:
        await self.stops.close()
        await self.breakers.close()
        await self.profiles.close()
        await self.forms.close()
        await self.redis.aclose()


def open_shared_state(redis_url: str, bot_id: int, *, prefix: str | None = None) -> SharedState:
    """The client connects on first use; nothing here waits for Redis."""
    # A blocking pool: with every connection busy a call waits (within CALL_TIMEOUT) for the
    # next one free. redis-py's default pool raises "Too many connections" instead, which
    # under a burst of updates would be taken for Redis being down.
    pool = BlockingConnectionPool.from_url(
        redis_url,
        max_connections=MAX_CONNECTIONS,
        timeout=CALL_TIMEOUT,
        socket_timeout=CALL_TIMEOUT * 2,
        socket_connect_timeout=CALL_TIMEOUT,
        health_check_interval=30,
    )
    redis = Redis.from_pool(pool)
    prefix = prefix if prefix is not None else f"llmbot:{bot_id}:"
    guard = RedisGuard(timeout=CALL_TIMEOUT, retry_after=RETRY_AFTER)
    return SharedState(
        redis=redis,
        guard=guard,
        rates=GcraLimiter(redis, guard, prefix=prefix),
        stops=StopRelay(redis, guard, prefix=prefix),
        breakers=BreakerRelay(redis, guard, prefix=prefix),
        profiles=InvalidationRelay(redis, guard, prefix=prefix, what="users' settings", parse=int),
        forms=InvalidationRelay(redis, guard, prefix=prefix, what="forms' states", parse=str),
        prefix=prefix,
    )
