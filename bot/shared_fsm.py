"""Forms with replicas: aiogram's RedisStorage, a form opened through one replica continues on
another. Imported only with REDIS_URL (bot/shared_state.py).

aiogram reads the state of every update's chat; almost always there is none, and each replica
caches that answer, forgetting it when any replica sets a state
(services/shared/invalidation.py): the read costs no round trip to Redis.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from aiogram.fsm.storage.base import DefaultKeyBuilder, StateType, StorageKey
from aiogram.fsm.storage.redis import RedisStorage
from redis.asyncio import Redis

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
        self._max_age = max_age
        self._clock = clock
        # key → when "no form" was read
        self._no_form: OrderedDict[str, float] = OrderedDict()
        self._caching = True
        self._generation = 0

    async def get_state(self, key: StorageKey) -> str | None:
        name = self.key_builder.build(key, "state")
        read_at = self._no_form.get(name)
        if read_at is not None:
            if self._clock() - read_at <= self._max_age:
                self._no_form.move_to_end(name)
                return None
            del self._no_form[name]
        generation = self._generation
        state = await super().get_state(key)
        if state is None and self._caching and generation == self._generation:
            self._no_form[name] = self._clock()
            if len(self._no_form) > NO_FORM_CACHE:
                self._no_form.popitem(last=False)
        return state

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        await super().set_state(key, state)
        name = self.key_builder.build(key, "state")
        self.forget([name])
        await self._relay.publish([name])

    def forget(self, keys: Iterable[str]) -> None:
        self._generation += 1
        for name in keys:
            self._no_form.pop(name, None)

    def suspend_cache(self) -> None:
        self._generation += 1
        self._caching = False
        self._no_form.clear()

    def resume_cache(self) -> None:
        self._generation += 1
        self._caching = True
        self._no_form.clear()

    async def close(self) -> None:
        """The client is shared: closed by the factory, not here."""
