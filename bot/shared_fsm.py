"""Forms with replicas: aiogram's RedisStorage, a form opened through one replica continues on
another. Imported only with REDIS_URL (bot/shared_state.py).

aiogram reads the state of every update's chat; almost always there is none, and each replica
caches that answer, forgetting it when any replica sets a state
(services/shared/invalidation.py): the read costs no round trip to Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from aiogram.fsm.storage.base import DefaultKeyBuilder, StateType, StorageKey
from aiogram.fsm.storage.redis import RedisStorage
from redis.asyncio import Redis

from services.replica_cache import ReplicaCache
from services.shared.invalidation import InvalidationRelay

# A form left open is forgotten after a day rather than kept in Redis forever.
FORM_TTL = timedelta(days=1)
# Chats remembered as not being in a form, per replica, and for how long at most: a notice can be
# lost (a replica killed between setting a state and telling), so the answer is asked again.
NO_FORM_CACHE = 10_000
NO_FORM_MAX_AGE = 60.0


def shared_fsm_storage(
    redis: Redis,
    prefix: str,
    relay: InvalidationRelay[str],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> CachedStateRedisStorage:
    """aiogram's RedisStorage on the bot's shared client, its keys under `prefix` (which names
    the bot), with "no form open" cached (see `CachedStateRedisStorage`)."""
    return CachedStateRedisStorage(
        redis,
        relay,
        clock=clock,
        key_builder=DefaultKeyBuilder(prefix=f"{prefix}fsm"),
        state_ttl=FORM_TTL,
        data_ttl=FORM_TTL,
    )


class CachedStateRedisStorage(RedisStorage):
    """aiogram's RedisStorage that remembers which chats are not in a form.

    Only "no state" is cached: a form's state is read from Redis every time (forms are rare,
    and Redis expires a form left open, which a cached copy would not know). Setting a state
    (or clearing one) publishes the key before returning, so every replica forgets it before
    the user sees the form's question; a read under way when a key is forgotten is not cached;
    a "no form" older than `max_age` is asked again (in case a notice was lost).
    The client is shared: closed by the factory, not here (aiogram closes the FSM storage first
    on shutdown, while answers may still be finishing).
    """

    def __init__(
        self,
        redis: Redis,
        relay: InvalidationRelay[str],
        *,
        max_age: float = NO_FORM_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(redis, **kwargs)
        self._relay = relay
        # Redis keys of chats read as in no form (the relay the factory starts empties it).
        self.no_form: ReplicaCache[str, bool] = ReplicaCache(
            NO_FORM_CACHE, max_age=max_age, clock=clock
        )

    async def get_state(self, key: StorageKey) -> str | None:
        name = self.key_builder.build(key, "state")
        if self.no_form.get(name):
            return None
        stamp = self.no_form.stamp()
        state = await super().get_state(key)
        if state is None:
            self.no_form.put(name, True, stamp)
        return state

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        await super().set_state(key, state)
        name = self.key_builder.build(key, "state")
        self.no_form.forget([name])
        await self._relay.publish([name])

    async def close(self) -> None:
        """The client is shared: closed by the factory, not here."""
