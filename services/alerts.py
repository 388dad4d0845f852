"""Notices for the bot's admins: a provider failing or recovering, a balance running low.

Each notice is about an event, not a level: a circuit breaker that opens gives one notice and
its closing one more (open → closed → open is three); a balance found low gives one notice and
stays quiet while it stays low, until it recovers (which is a notice too) or gets worse.

- Breakers: every provider's breaker reports its transitions (a listener hook on
  `CircuitBreaker`), synchronously and inside the request that caused them; the listener only
  queues the notice, a worker task hands it to the notifier, so no request waits for Telegram.
- Balances: checked every `check_interval` seconds (0 = never) through `AccountService`
  (every provider that reports a balance, concurrently). VseGPT's `user_status` says itself
  whether the balance is low (1) or very low (2); a prepaid token package (GigaChat) is low
  under `tokens_threshold` tokens. A provider that does not answer keeps its last state.
  The first check comes a minute after start-up (or sooner for a shorter interval): start-up
  is busy, and a bot restarted often still gets its balances checked.

What was seen lives in this process only: after a restart a balance that is still low is
reported once more. With `shared` (REDIS_URL, several replicas): one replica checks per
interval (a lease), and the last level of each balance is kept on Redis and replaced
atomically, so each change is told once for all replicas, and not again after a restart.
Breaker notices are decided by the shared breakers themselves (only the replica that made a
transition announces it). The notifier (the Telegram side) sends each admin the text in their
language and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass
from typing import Protocol

from services.account import AccountService, ProviderBalance
from services.llm import Balance, UpstreamError
from services.llm.provider import Provider, ProviderRegistry, TokenBalance

__all__ = ["Alert", "AlertKind", "AlertNotifier", "AlertService"]

log = logging.getLogger(__name__)

# The first balance check waits at most this long after start().
FIRST_CHECK_DELAY = 60.0
# On shutdown, queued notices get this long to go out before they are dropped.
CLOSE_GRACE = 2.0


class AlertKind(enum.StrEnum):
    BREAKER_OPEN = "breaker_open"  # requests keep failing: the bot stopped sending them
    BREAKER_CLOSED = "breaker_closed"  # a request went through again
    BALANCE_LOW = "balance_low"  # VseGPT's user_status 1
    BALANCE_VERY_LOW = "balance_very_low"  # user_status 2
    BALANCE_OK = "balance_ok"  # back to user_status 0 after a low one
    TOKENS_LOW = "tokens_low"  # a prepaid token package under the threshold
    TOKENS_OK = "tokens_ok"  # above it again


@dataclass(frozen=True, slots=True)
class Alert:
    kind: AlertKind
    provider: str  # the provider's title, as users see it ("VseGPT", "GigaChat")
    credits: float | None = None  # the balance, for the balance notices (if reported)
    model: str | None = None  # the token package (GigaChat's model name)
    tokens: float | None = None  # tokens left in it
    threshold: int | None = None  # what "low" means for tokens


class AlertNotifier(Protocol):
    """Implemented on the Telegram side: tell every admin. Must not raise."""

    async def notify(self, alert: Alert) -> None: ...


class SharedAlerts(Protocol):
    """Balance checks shared by replicas (services/shared/alerts.py on Redis). Calls answer
    None when the shared store is unreachable (this replica then decides alone)."""

    async def claim_check(self, seconds: float) -> bool | None: ...

    async def swap_level(self, key: str, severity: int) -> int | None: ...


# Severity of a balance level: a notice goes out when it rises, or falls back to 0.
_OK, _LOW, _VERY_LOW = 0, 1, 2
_CREDIT_KINDS = {
    _OK: AlertKind.BALANCE_OK,
    _LOW: AlertKind.BALANCE_LOW,
    _VERY_LOW: AlertKind.BALANCE_VERY_LOW,
}


def balance_severity(balance: Balance) -> int | None:
    """VseGPT's own verdict on the balance (0 ok, 1 low, 2 very low); None if it gave none."""
    status = balance.user_status
    return status if status in (_OK, _LOW, _VERY_LOW) else None


class AlertService:
    def __init__(
        self,
        registry: ProviderRegistry,
        account: AccountService,
        *,
        check_interval: float,
        tokens_threshold: int,
        shared: SharedAlerts | None = None,
    ) -> None:
        """`check_interval`: seconds between balance checks, 0 = no checks.
        `tokens_threshold`: a token package under this many tokens is low (0 = never)."""
        if check_interval < 0 or tokens_threshold < 0:
            raise ValueError("check_interval and tokens_threshold must be >= 0")
        self._account = account
        self._interval = float(check_interval)
        self._threshold = int(tokens_threshold)
        self._notifier: AlertNotifier | None = None
        self._shared = shared
        self._queue: asyncio.Queue[Alert] = asyncio.Queue()
        # The last severity seen per balance: a provider's name, or (name, package).
        self._levels: dict[str | tuple[str, str], int] = {}
        self._worker: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None
        for provider in registry.providers:
            provider.breaker.add_listener(self._breaker_listener(provider))

    def attach(self, notifier: AlertNotifier) -> None:
        self._notifier = notifier

    def start(self) -> None:
        """Start delivering notices, and the periodic balance check (if any)."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._deliver_forever(), name="admin-alerts")
        if self._checker is None and self._interval > 0:
            self._checker = asyncio.create_task(self._check_forever(), name="balance-check")

    async def close(self) -> None:
        """Stop checking; queued notices get a moment to go out, then are dropped."""
        checker, self._checker = self._checker, None
        if checker is not None:
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker
        worker, self._worker = self._worker, None
        if worker is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_GRACE):
                await self._queue.join()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    # ------------------------------------------------------------------------ breakers

    def _breaker_listener(self, provider: Provider) -> _BreakerListener:
        return _BreakerListener(self, provider.title)

    def post(self, alert: Alert) -> None:
        """Queue a notice (synchronous: callable from a breaker's listener)."""
        self._queue.put_nowait(alert)

    # ------------------------------------------------------------------------ balances

    async def check_balances(self) -> None:
        """Ask every provider for its balance and post a notice for each change of level."""
        for item in await self._account.balances():
            await self._judge(item)

    async def periodic_check(self) -> bool:
        """The periodic check: done here unless another replica holds this round's lease."""
        if self._shared is not None:
            # Shorter than the interval: the next round's claim finds it free.
            claimed = await self._shared.claim_check(self._interval * 0.9)
            if claimed is False:
                return False
        await self.check_balances()
        return True

    async def _judge(self, item: ProviderBalance) -> None:
        result = item.result
        if isinstance(result, UpstreamError):
            # Not offered, pay-as-you-go, or the provider is down: nothing new is known.
            log.info("balance check: %s did not answer (%s)", item.name, type(result).__name__)
            return
        if isinstance(result, TokenBalance):
            if self._threshold <= 0:
                return
            for model, tokens in result.per_model:
                low = tokens < self._threshold
                if await self._changed((item.name, model), _LOW if low else _OK):
                    kind = AlertKind.TOKENS_LOW if low else AlertKind.TOKENS_OK
                    alert = Alert(
                        kind, item.title, model=model, tokens=tokens, threshold=self._threshold
                    )
                    self.post(alert)
            return
        level = balance_severity(result)
        if level is not None and await self._changed(item.name, level):
            self.post(Alert(_CREDIT_KINDS[level], item.title, credits=result.credits))

    async def _changed(self, key: str | tuple[str, str], severity: int) -> bool:
        """Record `severity`; True when it deserves a notice: worse than before, or back to
        normal after a low one. The first reading is compared with "normal"."""
        before = self._levels.get(key, _OK)
        self._levels[key] = severity
        if self._shared is not None:
            name = key if isinstance(key, str) else "\x1f".join(key)
            shared = await self._shared.swap_level(name, severity)
            if shared is not None:  # what any replica saw last wins over this one's memory
                before = _OK if shared < 0 else shared
        return severity > before or (severity == _OK and before != _OK)

    # ------------------------------------------------------------------------ tasks

    async def _check_forever(self) -> None:
        delay = min(self._interval, FIRST_CHECK_DELAY)
        while True:
            await asyncio.sleep(delay)
            delay = self._interval
            try:
                await self.periodic_check()
            except Exception:
                log.exception("balance check failed")

    async def _deliver_forever(self) -> None:
        while True:
            alert = await self._queue.get()
            try:
                if self._notifier is None:
                    log.warning("admin notice dropped (no notifier): %s", alert.kind)
                else:
                    await self._notifier.notify(alert)
            except Exception:
                log.exception("admin notice %s failed", alert.kind)
            finally:
                self._queue.task_done()


class _BreakerListener:
    """A provider's breaker transitions, as notices (see CircuitBreaker.add_listener)."""

    __slots__ = ("_provider", "_service")

    def __init__(self, service: AlertService, provider: str) -> None:
        self._service = service
        self._provider = provider

    def __call__(self, opened: bool) -> None:
        kind = AlertKind.BREAKER_OPEN if opened else AlertKind.BREAKER_CLOSED
        log.warning("%s: circuit breaker %s", self._provider, "open" if opened else "closed")
        self._service.post(Alert(kind, self._provider))
