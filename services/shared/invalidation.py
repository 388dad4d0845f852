"""Caches kept by every replica, emptied of what another replica changed.

Some state is read on every update and changes rarely: a user's settings (services/users.py),
whether a chat is in the middle of a form (bot/shared_fsm.py). Each replica keeps it in memory
(services/replica_cache.py); the replica that changes it writes it to the database (or Redis)
first, then publishes the keys on `<prefix>changed:<what>`, and every replica drops those keys
from its cache and reads them again next time.

A change is published before the replica that made it answers the user, so the user's next
update, wherever it lands, finds the keys already forgotten. While the subscription is down a
replica cannot hear changes, so its cache is off (every read goes to the store) until it is
subscribed again, when it starts from an empty cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

from redis.asyncio import Redis

from services.shared.guard import RedisGuard
from services.shared.subscription import Subscription

__all__ = ["Forgetful", "InvalidationRelay"]

log = logging.getLogger(__name__)

K = TypeVar("K")
K_contra = TypeVar("K_contra", contravariant=True)


class Forgetful(Protocol[K_contra]):
    """A cache the relay drives."""

    def forget(self, keys: Iterable[K_contra]) -> None: ...

    def suspend_cache(self) -> None: ...

    def resume_cache(self) -> None: ...


class InvalidationRelay(Generic[K]):
    def __init__(
        self,
        redis: Redis,
        guard: RedisGuard,
        *,
        prefix: str,
        what: str,
        parse: Callable[[str], K],
        resubscribe_after: float = 0.5,
    ) -> None:
        self._redis = redis
        self._guard = guard
        self._channel = f"{prefix}changed:{what}"
        self._what = what
        self._parse = parse
        self._resubscribe_after = resubscribe_after
        self._subscription: Subscription | None = None

    async def publish(self, keys: Iterable[K]) -> None:
        """Tell every replica (this one too, harmlessly) to forget these keys."""
        message = "\n".join(str(key) for key in keys)
        if not message:
            return

        async def call() -> int:
            return int(await self._redis.publish(self._channel, message))

        await self._guard.run(call, f"a change of {self._what}")

    def listen(self, cache: Forgetful[K]) -> None:
        """Keep `cache` in step with every replica's changes; off until subscribed."""
        if self._subscription is not None:
            return
        cache.suspend_cache()

        async def subscribed() -> None:
            cache.resume_cache()

        self._subscription = Subscription(
            self._redis,
            self._channel,
            lambda data: self._dispatch(data, cache),
            what=f"The {self._what} relay",
            when_lost=f"{self._what}: read from the store on every update until it is back",
            on_subscribed=subscribed,
            on_lost=cache.suspend_cache,
            resubscribe_after=self._resubscribe_after,
        )
        self._subscription.start()

    async def ready(self) -> None:
        """Wait until subscribed (tests; start-up does not need to)."""
        assert self._subscription is not None, "listen() first"
        await self._subscription.ready()

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None

    def _dispatch(self, data: object, cache: Forgetful[K]) -> None:
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        try:
            keys = [self._parse(line) for line in text.split("\n")]
        except ValueError:
            # Not ours to trust: forgetting everything is always safe.
            log.warning("a malformed %s relay message: the whole cache forgotten", self._what)
            cache.resume_cache()
            return
        cache.forget(keys)
