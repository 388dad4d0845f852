"""A fair limiter of request STARTS shared by the whole bot.

VseGPT's base plan accepts one request per 2 s per account, so the bot as a whole must pace its
starts; a plain FIFO would let one chatty user delay everybody else by his whole backlog. Each key
(user) gets its own FIFO, and keys are served round-robin.

One scheduler task per limiter (alive only while someone waits) grants the starts; waiters never
sleep on their own. A grant is O(1) amortised: cancelled waiters are skipped lazily. Queue
positions are computed only while some waiter has waited past `notice_after` and has a callback,
by walking the round-robin order up to the last such waiter, once per grant or notice deadline.

With a `gate` (replicas sharing one rate, services/shared), this queue still decides WHO starts
next and the gate decides WHEN: while anyone waits, the scheduler books one start on the gate
(one booking ahead per replica, so the shared rate stays full), sleeps until it, and grants it
to the head of the fair order. A gate that cannot answer (Redis down) returns None and that
start is paced locally, as without a gate.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Protocol

__all__ = ["FairRateLimiter", "StartGate"]

log = logging.getLogger(__name__)

OnWait = Callable[[int], Awaitable[None]]


class StartGate(Protocol):
    """A rate shared with other processes."""

    async def book(self) -> float | None:
        """Book the next start: seconds until it, or None when the shared state is
        unreachable (the caller paces this start locally)."""


class _Waiter:
    __slots__ = (
        "enqueued_at",
        "gone",
        "granted",
        "noticed",
        "on_wait",
        "position",
        "reported",
        "wake",
    )

    def __init__(self, wake: asyncio.Future[None], now: float, on_wait: OnWait | None) -> None:
        self.wake = wake  # resolved on grant and on a position change worth reporting
        self.enqueued_at = now
        self.on_wait = on_wait
        self.granted = False
        self.gone = False  # cancelled: left in the queues, skipped by the scheduler
        self.noticed = False  # waited past notice_after: positions are reported
        self.position = 0
        self.reported = 0


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class FairRateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        notice_after: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        gate: StartGate | None = None,
    ) -> None:
        """`rate` = starts per second for the whole bot; 0 means unlimited. `gate`: the same
        rate shared with other replicas (unused when unlimited)."""
        if math.isnan(rate) or rate < 0:
            raise ValueError("rate must be >= 0")
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._notice_after = notice_after
        self._clock = clock
        self._queues: dict[Hashable, deque[_Waiter]] = {}
        self._ring: deque[Hashable] = deque()  # keys with waiters; the head is served next
        self._unnoticed: deque[_Waiter] = deque()  # waiters with on_wait, oldest first
        self._live = 0  # waiting, neither granted nor cancelled
        self._noticed_live = 0
        self._next_at = -math.inf  # earliest time of the next grant
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.Future[None] | None = None  # the scheduler's sleep
        self._wake_at = math.inf  # when that sleep ends
        self._gate = gate if self._interval else None
        self._booked = False  # the time of the next grant (_next_at) is decided for a waiter
        # Told how long each granted caller waited, in seconds (the bot's metrics).
        self.on_grant: Callable[[float], None] | None = None

    def queued(self) -> int:
        return self._live

    def __repr__(self) -> str:
        rate = 1.0 / self._interval if self._interval else 0
        return f"FairRateLimiter(rate={rate:g}, queued={self._live})"

    async def acquire(self, key: Hashable, on_wait: OnWait | None = None) -> None:
        """Wait for this caller's turn to start a request.

        After `notice_after` seconds of waiting, `on_wait(position)` is awaited, and again when
        the position changes; position 1 means "the next grant is yours". A failing callback is
        logged and not called again. Cancelled while waiting, the caller leaves the queue; if it
        was cancelled right after being granted, the slot is given back.
        """
        if not self._interval:
            return
        now = self._clock()
        if not self._live and now >= self._next_at and self._gate is None:
            self._next_at = now + self._interval
            if self.on_grant is not None:
                self.on_grant(0.0)
            return
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), now, on_wait)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._ring.append(key)
        queue.append(waiter)
        self._live += 1
        if on_wait is not None:
            self._unnoticed.append(waiter)
            if now + self._notice_after < self._wake_at and self._timer is not None:
                _resolve(self._timer)  # the scheduler sleeps past this waiter's notice time
        if self._task is None:
            self._task = loop.create_task(self._run(), name="llm-rate-limiter")
        try:
            while True:
                await waiter.wake
                while not waiter.granted and waiter.on_wait and waiter.position != waiter.reported:
                    waiter.reported = waiter.position
                    try:
                        await waiter.on_wait(waiter.position)
                    except Exception:
                        log.warning("queue position callback failed", exc_info=True)
                        waiter.on_wait = None
                if waiter.granted:
                    if self.on_grant is not None:
                        self.on_grant(self._clock() - waiter.enqueued_at)
                    return
                waiter.wake = loop.create_future()
        except BaseException:
            if waiter.granted:
                self._refund()
            else:
                self._forget(waiter)
            raise

    # --- internals ---------------------------------------------------------------------------

    def _forget(self, waiter: _Waiter) -> None:
        if waiter.gone:
            return
        waiter.gone = True
        self._live -= 1
        if waiter.noticed:
            self._noticed_live -= 1
        if not self._live and self._timer is not None:
            _resolve(self._timer)  # nobody left: let the scheduler exit and drop the leftovers

    def _refund(self) -> None:
        if self._gate is not None:
            return  # a shared start is booked for its moment: a later use might crowd the next
        # The grant was never used: let the next waiter have the slot at once.
        self._next_at -= self._interval
        if self._timer is not None:
            _resolve(self._timer)

    def _pop_next(self) -> _Waiter | None:
        ring, queues = self._ring, self._queues
        while ring:
            key = ring.popleft()
            queue = queues[key]
            chosen = None
            while queue:
                candidate = queue.popleft()
                if not candidate.gone:
                    chosen = candidate
                    break
            if queue:
                ring.append(key)
            else:
                del queues[key]
            if chosen is not None:
                return chosen
        return None

    def _promote(self, now: float) -> bool:
        pending = self._unnoticed
        deadline = now - self._notice_after
        promoted = False
        while pending:
            waiter = pending[0]
            if waiter.granted or waiter.gone:
                pending.popleft()
                continue
            if waiter.enqueued_at > deadline:
                break
            pending.popleft()
            waiter.noticed = True
            self._noticed_live += 1
            promoted = True
        return promoted

    def _update_positions(self) -> None:
        """Walk the round-robin order until every noticed waiter has its position."""
        remaining = self._noticed_live
        position = 0
        active: list[Iterator[_Waiter]] = [iter(self._queues[key]) for key in self._ring]
        while active and remaining:
            still: list[Iterator[_Waiter]] = []
            for queue_iter in active:
                for waiter in queue_iter:
                    if waiter.gone:
                        continue
                    position += 1
                    if waiter.noticed:
                        remaining -= 1
                        if waiter.position != position:
                            waiter.position = position
                            if waiter.on_wait is not None and position != waiter.reported:
                                _resolve(waiter.wake)
                    still.append(queue_iter)
                    break
            active = still

    def _grant(self, waiter: _Waiter, now: float) -> None:
        # max(): after idling the next slot starts now; never grant two within one interval.
        self._next_at = max(now, self._next_at) + self._interval
        self._booked = False
        waiter.granted = True
        self._live -= 1
        if waiter.noticed:
            self._noticed_live -= 1
        _resolve(waiter.wake)

    async def _sleep(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        timer = self._timer = loop.create_future()
        handle = loop.call_later(delay, _resolve, timer)
        try:
            await timer
        finally:
            handle.cancel()
            self._timer = None

    async def _book(self) -> None:
        # A start booked on the shared gate; when the gate cannot answer, the local
        # schedule (_next_at, kept by every grant) paces this one.
        delay = await self._gate.book() if self._gate is not None else None
        if delay is not None:
            self._next_at = self._clock() + delay
        self._booked = True

    async def _run(self) -> None:
        try:
            while self._live:
                if self._gate is not None and not self._booked:
                    await self._book()
                    continue  # waiters may have left meanwhile
                now = self._clock()
                changed = False
                if now >= self._next_at:
                    waiter = self._pop_next()
                    if waiter is not None:
                        self._grant(waiter, now)
                        changed = True
                if self._unnoticed and self._promote(now):
                    changed = True
                if changed and self._noticed_live:
                    self._update_positions()
                if not self._live:
                    break
                if self._gate is not None and not self._booked:
                    # The next start is booked now, a slot ahead: booked when it is due, each
                    # start would come a round trip late and the rate would drift below.
                    continue
                wake_at = self._next_at
                if self._unnoticed:
                    wake_at = min(wake_at, self._unnoticed[0].enqueued_at + self._notice_after)
                self._wake_at = wake_at
                await self._sleep(max(0.0, wake_at - now))
        except Exception as exc:
            # A bug here must not leave callers hanging forever.
            log.exception("rate limiter scheduler failed")
            for queue in self._queues.values():
                for waiter in queue:
                    if not waiter.gone and not waiter.wake.done():
                        waiter.wake.set_exception(exc)
        finally:
            self._task = None
            self._booked = False  # an unused booking is given up: the next waiter books anew
            if not self._live:
                # Only cancelled leftovers remain: drop them now rather than on a later grant.
                self._queues.clear()
                self._ring.clear()
                self._unnoticed.clear()
