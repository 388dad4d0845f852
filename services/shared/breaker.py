"""Circuit breakers shared by replicas: one open/closed state per provider, one notice each.

A provider's breaker is open while the key `<prefix>breaker:<provider>` exists (its value: when
it opened, on Redis' clock). A replica whose own breaker opens runs one script that creates the
key only if it is absent; a replica whose breaker closes (its probe succeeded) one that deletes
it only if present. Only the replica whose script changed the key announces the transition
(the admins' notice), and the script publishes it on `<prefix>breakers`, so every other
replica's breaker follows at once: when one replica opens it, the others stop sending too.

The listener resubscribes after a lost connection and then reads the keys again (a breaker
opened meanwhile is followed; a close it missed is found by its own probe, which succeeds and
then finds the key gone: no second notice). While Redis is unreachable, a replica's transition
is its own and announced by it (the bot's behaviour without Redis).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from services.shared.guard import RedisGuard
from services.shared.subscription import Subscription

if TYPE_CHECKING:
    from services.llm.breaker import CircuitBreaker

__all__ = ["BreakerRelay"]

log = logging.getLogger(__name__)


# KEYS[1]: the breaker's key; ARGV: channel, provider, origin. 1 = this call opened it.
_OPEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if redis.call('SET', KEYS[1], string.format('%.6f', now), 'NX') then
  redis.call('PUBLISH', ARGV[1], cjson.encode({name = ARGV[2], open = true, origin = ARGV[3]}))
  return 1
end
return 0
"""
# 1 = this call closed it.
_CLOSE = """
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('PUBLISH', ARGV[1], cjson.encode({name = ARGV[2], open = false, origin = ARGV[3]}))
  return 1
end
return 0
"""
# KEYS: the breakers' keys. Returns Redis' time and each key's value (false when closed).
_READ = """
local t = redis.call('TIME')
local values = {tonumber(t[1]) + tonumber(t[2]) / 1000000}
for i, key in ipairs(KEYS) do values[i + 1] = redis.call('GET', key) or '' end
values[1] = string.format('%.6f', values[1])
return values
"""


class _Link:
    """One provider's breaker as `services.llm.breaker.SharedBreaker`."""

    __slots__ = ("_name", "_relay")

    def __init__(self, relay: BreakerRelay, name: str) -> None:
        self._relay = relay
        self._name = name

    def attach(self, breaker: CircuitBreaker) -> None:
        self._relay._breakers[self._name] = breaker

    def transition(self, breaker: CircuitBreaker, opened: bool) -> None:
        self._relay._transition(self._name, breaker, opened)


class BreakerRelay:
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
        self._keys = f"{prefix}breaker:"
        self._channel = f"{prefix}breakers"
        self._open = redis.register_script(_OPEN)
        self._close = redis.register_script(_CLOSE)
        self._read = redis.register_script(_READ)
        self._origin = uuid.uuid4().hex  # this replica: its own messages are not followed
        self._breakers: dict[str, CircuitBreaker] = {}
        self._deciding: set[asyncio.Task[None]] = set()
        # A breaker opened while this replica was not listening is found by the catch-up.
        self._subscription = Subscription(
            redis,
            self._channel,
            self._follow,
            on_subscribed=self._catch_up,
            what="circuit breaker relay",
            when_lost="breakers are per replica until it is back",
            resubscribe_after=resubscribe_after,
        )

    def share(self, provider: str) -> _Link:
        """The shared state of `provider`'s breaker (pass it as the breaker's `shared`)."""
        return _Link(self, provider)

    # --- transitions made here ----------------------------------------------------------------

    def _transition(self, name: str, breaker: CircuitBreaker, opened: bool) -> None:
        task = asyncio.get_running_loop().create_task(
            self._decide(name, breaker, opened), name="breaker-transition"
        )
        self._deciding.add(task)
        task.add_done_callback(self._deciding.discard)

    async def _decide(self, name: str, breaker: CircuitBreaker, opened: bool) -> None:
        script = self._open if opened else self._close

        async def call() -> bool:
            key = f"{self._keys}{name}"
            made = await script(keys=[key], args=[self._channel, name, self._origin])
            return bool(int(made))

        made = await self._guard.run(call, "a circuit breaker transition")
        if made is None or made:  # Redis unreachable: this replica's own transition
            breaker.announce(opened)

    async def settled(self) -> None:
        """Wait until the transitions made so far are decided (tests, shutdown)."""
        if self._deciding:
            await asyncio.wait(set(self._deciding), timeout=2.0)

    # --- transitions made elsewhere -----------------------------------------------------------

    def listen(self) -> None:
        """Follow the other replicas' transitions (from now until `close`)."""
        self._subscription.start()

    async def ready(self) -> None:
        """Wait until the listener is subscribed and caught up (tests)."""
        await self._subscription.ready()

    async def _catch_up(self) -> None:
        names = list(self._breakers)
        if not names:
            return
        values = await self._read(keys=[f"{self._keys}{name}" for name in names])
        now = float(values[0])
        for name, value in zip(names, values[1:], strict=True):
            if value:  # open: followed; a close missed meanwhile is found by the probe
                self._breakers[name].follow(True, now - float(value))

    def _follow(self, data: object) -> None:
        try:
            payload = json.loads(data if isinstance(data, str | bytes) else "")
            name, opened, origin = str(payload["name"]), bool(payload["open"]), payload["origin"]
        except (ValueError, TypeError, KeyError):
            log.warning("ignored a malformed circuit breaker message")
            return
        breaker = self._breakers.get(name)
        if breaker is not None and origin != self._origin:
            breaker.follow(opened)

    async def close(self) -> None:
        await self._subscription.close()
        await self.settled()
