"""A Redis pub/sub subscription that stays up: what the Stop and breaker relays listen with.

Redis drops subscribers silently when it restarts or the connection breaks. This loop
subscribes again with a growing pause (up to 10 s), runs `on_lost` when the subscription
drops (for a listener whose state is only right while it hears every message) and
`on_subscribed` after each (re)subscription (to catch up on what was missed), and logs one line
when the subscription is lost and one when it is back, never one per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RESUBSCRIBE_MAX = 10.0


class Subscription:
    def __init__(
        self,
        redis: Redis,
        channel: str,
        on_message: Callable[[object], None],
        *,
        what: str,
        when_lost: str,
        pattern: bool = False,
        on_subscribed: Callable[[], Awaitable[None]] | None = None,
        on_lost: Callable[[], None] | None = None,
        resubscribe_after: float = 0.5,
    ) -> None:
        self._redis = redis
        self._channel = channel
        self._on_message = on_message
        self._what = what  # "Stop relay": the subject of the log lines
        self._when_lost = when_lost  # what the operator should know while it is down
        self._pattern = pattern
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost
        self._resubscribe_after = resubscribe_after
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"{self._what} subscription"
            )

    async def ready(self) -> None:
        """Wait until subscribed (and caught up): tests; start-up does not need to."""
        await self._subscribed.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = self._resubscribe_after
        lost = False
        kind = "pmessage" if self._pattern else "message"
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                if self._pattern:
                    await pubsub.psubscribe(self._channel)
                else:
                    await pubsub.subscribe(self._channel)
                if self._on_subscribed is not None:
                    await self._on_subscribed()
                self._subscribed.set()
                if lost:
                    log.info("%s subscribed again", self._what)
                    lost = False
                delay = self._resubscribe_after
                while True:
                    # A bounded wait: an idle subscription is not mistaken for a lost one.
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message is not None and message.get("type") == kind:
                        self._on_message(message.get("data"))
            except (RedisError, OSError) as error:
                self._subscribed.clear()
                if self._on_lost is not None:
                    self._on_lost()
                if not lost:
                    lost = True
                    log.warning(
                        "%s lost Redis (%s): %s", self._what, type(error).__name__, self._when_lost
                    )
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX)
