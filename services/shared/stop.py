"""Stop across replicas: a Stop pressed on a replica that is not streaming the answer.

The replica that got the press publishes on the channel `<prefix>stop:<reply id>` who pressed
it (user id, admin flag) and where (chat id); every replica listens to `<prefix>stop:*` and
hands each message to its own chat service, which stops the reply if it streams it, after the
same permission check as a local Stop (the owner decides). The listener resubscribes after a
lost connection (one log line when it is lost, one when it is back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.shared.guard import RedisGuard

__all__ = ["StopHandler", "StopRelay"]

log = logging.getLogger(__name__)

# (chat_id, reply_id, user_id or None for a draft's own Stop, force: the presser is an admin)
StopHandler = Callable[[int, int, int | None, bool], object]

_RESUBSCRIBE_MAX = 10.0


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
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

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
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(handler), name="stop-relay-listen"
            )

    async def ready(self) -> None:
        """Wait until the listener is subscribed (tests; start-up does not need to)."""
        await self._subscribed.wait()

    async def _listen(self, handler: StopHandler) -> None:
        delay = self._resubscribe_after
        lost = False
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(f"{self._prefix}*")
                self._subscribed.set()
                if lost:
                    log.info("Stop relay subscribed again")
                    lost = False
                delay = self._resubscribe_after
                while True:
                    # A bounded wait: an idle subscription is not mistaken for a lost one.
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message is not None and message.get("type") == "pmessage":
                        _dispatch(message.get("data"), handler)
            except (RedisError, OSError) as error:
                self._subscribed.clear()
                if not lost:
                    lost = True
                    log.warning(
                        "Stop relay lost Redis (%s): Stops stay on this replica until it is back",
                        type(error).__name__,
                    )
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RESUBSCRIBE_MAX)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
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
