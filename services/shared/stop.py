"""Stop across replicas: a Stop pressed on a replica that is not streaming the answer.

The replica that got the press publishes on the channel `<prefix>stop:<reply id>` who pressed
it (user id, admin flag) and where (chat id); every replica listens to `<prefix>stop:*` and
hands each message to its own chat service, which stops the reply if it streams it, after the
same permission check as a local Stop (the owner decides). The listener resubscribes after a
lost connection (one log line when it is lost, one when it is back).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from redis.asyncio import Redis

from services.shared.guard import RedisGuard
from services.shared.subscription import Subscription

__all__ = ["StopHandler", "StopRelay"]

log = logging.getLogger(__name__)

# (chat_id, reply_id, user_id or None for a draft's own Stop, force: the presser is an admin)
StopHandler = Callable[[int, int, int | None, bool], object]


class StopRelay:
    def __init__(
        self,
        redis: Redis,
        guard: RedisGuard,
        *,
        prefix: str,
        resubscribe_after: float = 0.5,
    ) -> None:
        self._redis = redis
        self._guard = guard
        self._prefix = f"{prefix}stop:"
        self._resubscribe_after = resubscribe_after
        self._sending: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None

    # --- sending (called by ChatService.stop, which is synchronous) ---------------------------

    def send(self, chat_id: int, reply_id: int, user_id: int | None, force: bool) -> None:
        message = json.dumps({"chat": chat_id, "reply": reply_id, "user": user_id, "admin": force})
        task = asyncio.get_running_loop().create_task(
            self._publish(f"{self._prefix}{reply_id}", message), name="stop-relay-publish"
        )
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish(self, channel: str, message: str) -> None:
        async def call() -> int:
            return int(await self._redis.publish(channel, message))

        await self._guard.run(call, "a Stop relay")

    # --- listening ----------------------------------------------------------------------------

    def listen(self, handler: StopHandler) -> None:
        """Hand every Stop published by any replica (this one too) to `handler`."""
        if self._subscription is None:
            self._subscription = Subscription(
                self._redis,
                f"{self._prefix}*",
                lambda data: _dispatch(data, handler),
                pattern=True,
                what="Stop relay",
                when_lost="Stops stay on this replica until it is back",
                resubscribe_after=self._resubscribe_after,
            )
            self._subscription.start()

    async def ready(self) -> None:
        """Wait until the listener is subscribed (tests; start-up does not need to)."""
        assert self._subscription is not None, "listen() first"
        await self._subscription.ready()

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=1.0)


def _dispatch(data: object, handler: StopHandler) -> None:
    try:
        payload = json.loads(data if isinstance(data, str | bytes) else "")
        chat_id, reply_id = int(payload["chat"]), int(payload["reply"])
        user = payload.get("user")
        user_id = None if user is None else int(user)
        force = bool(payload.get("admin", False))
    except (ValueError, TypeError, KeyError):
        log.warning("ignored a malformed Stop relay message")
        return
    try:
        handler(chat_id, reply_id, user_id, force)
    except Exception:
        log.exception("a relayed Stop failed")
