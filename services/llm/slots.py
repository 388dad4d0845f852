"""A fair limiter of requests IN FLIGHT, for upstreams that cap concurrent calls per key.

GigaChat lets a key run N requests at once (one for individuals), and a streamed answer holds its
slot for its whole duration, seconds to minutes. As in `FairRateLimiter`, each key (user) has its
own FIFO so that one user's backlog does not delay everybody else, and a freed slot passes straight
to the next waiter, so no task is needed to hand slots out.

Users are served round-robin, in rounds: in a round every waiting user gets one slot before anybody
gets a second. A user granted a slot in this round, or holding one right now, queues for the next
round, so a user with 20 questions, one of them streaming, waits behind the users who have none,
and users who ask again right after each answer cannot keep a backlogged user waiting. A round ends
when nobody waiting for it is left. Both rounds are ordered dicts of per-user FIFOs (themselves
ordered dicts), so a grant and a cancellation are O(1).

Queue positions are reported as by `FairRateLimiter`: after `notice_after` seconds a waiter with a
callback hears its 1-based position in the service order, and again whenever it changes. One loop
timer (no task) marks waiters that passed `notice_after`; positions are recomputed at most once per
event-loop pass, and only while such a waiter exists, by walking the service order up to the last
of them.

With `shared` (replicas sharing the upstream's limit, services/shared), a caller granted a local
slot also holds a place of the shared semaphore for the body: the local queue decides WHO goes
next, the shared count decides WHEN, and all replicas together never exceed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterator
from types import TracebackType
from typing import Protocol, TypeAlias

__all__ = ["FairSlots", "SharedCount"]

log = logging.getLogger(__name__)

OnWait = Callable[[int], Awaitable[None]]


class SharedCount(Protocol):
    """A limit of holders shared with other processes."""

    def hold(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one place for the body; goes ahead when the shared state is unreachable."""
        ...


class _Waiter:
    __slots__ = (
        "enqueued_at",
        "granted",
        "key",
        "noticed",
        "on_wait",
        "position",
        "reported",
        "wake",
    )

    def __init__(
        self, key: Hashable, wake: asyncio.Future[None], now: float, on_wait: OnWait | None
    ) -> None:
        self.key = key
        self.wake = wake  # resolved on grant and on a position change worth reporting
        self.enqueued_at = now
        self.on_wait = on_wait
        self.granted = False
        self.noticed = False  # waited past notice_after: positions are reported
        self.position = 0
        self.reported = 0


# One user's waiters, oldest first; a dict rather than a deque so that a cancelled waiter leaves
# in O(1) instead of lingering until its turn.
_Queue: TypeAlias = "OrderedDict[_Waiter, None]"
# Users in service order, each with a non-empty queue.
_Round: TypeAlias = "OrderedDict[Hashable, _Queue]"


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class FairSlots:
    def __init__(
        self,
        limit: int,
        *,
        notice_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedCount | None = None,
    ) -> None:
        """`limit` = requests in flight at once for the whole bot (per upstream key);
        `shared`: the same limit across replicas."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if not notice_after >= 0:  # also rejects NaN
            raise ValueError("notice_after must be >= 0")
        self._limit = limit
        self._notice_after = notice_after
        self._clock = clock
        self._in_use = 0
        self._holding: dict[Hashable, int] = {}  # slots held per user: at most `limit` entries
        self._this_round: _Round = OrderedDict()  # users not yet served in this round
        self._next_round: _Round = OrderedDict()  # users already served (or holding) that wait
        self._served: set[Hashable] = set()  # users granted a slot in this round
        self._live = 0  # waiting, neither granted nor cancelled
        self._unnoticed: OrderedDict[_Waiter, None] = OrderedDict()  # with on_wait, oldest first
        self._noticed_live = 0
        self._notice_timer: asyncio.TimerHandle | None = None
        self._positions_pending: asyncio.Handle | None = None
        self._shared = shared

    @property
    def in_use(self) -> int:
        """Slots held now, counting a slot granted to a waiter that has not resumed yet."""
        return self._in_use

    @property
    def queued(self) -> int:
        """Waiters not yet granted."""
        return self._live

    def __repr__(self) -> str:
        return f"FairSlots(limit={self._limit}, in_use={self._in_use}, queued={self._live})"

    def hold(
        self, key: Hashable, on_wait: OnWait | None = None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one slot for the body of `async with`, waiting for it fairly among users.

        After `notice_after` seconds of waiting, `on_wait(position)` is awaited, and again when
        the position changes; position 1 means "the next free slot is yours". A failing callback
        is logged and not called again. Cancelled while waiting, the caller leaves the queue; if
        it was cancelled just as it was granted, the slot goes to the next waiter. The slot is
        released when the body ends, however it ends.
        """
        return _Hold(self, key, on_wait)

    # --- internals ---------------------------------------------------------------------------

    async def _acquire(self, key: Hashable, on_wait: OnWait | None) -> None:
        if self._in_use < self._limit:
            # A release hands its slot straight to a waiter, so a free slot means that nobody
            # waits: a new round begins and this caller takes the slot at once.
            self._served.clear()
            self._in_use += 1
            self._count_holder(key)
            return
        loop = asyncio.get_running_loop()
        now = self._clock()
        waiter = _Waiter(key, loop.create_future(), now, on_wait)
        self._enqueue(waiter)
        if on_wait is not None:
            self._unnoticed[waiter] = None
            if self._notice_timer is None:
                self._arm_notice_timer(now)
        self._positions_changed()  # a newcomer goes ahead of those waiting for the next round
        try:
            while True:
                await waiter.wake
                while (
                    not waiter.granted
                    and waiter.on_wait is not None
                    and waiter.position != waiter.reported
                ):
                    waiter.reported = waiter.position
                    try:
                        await waiter.on_wait(waiter.position)
                    except Exception:
                        # The notice is a courtesy to the user; waiting goes on without it.
                        log.debug("queue position callback failed", exc_info=True)
                        waiter.on_wait = None
                if waiter.granted:
                    return
                waiter.wake = loop.create_future()
        except BaseException:
            if waiter.granted:
                self._release(key)  # granted as it was cancelled: the slot goes on, never lost
            else:
                self._forget(waiter)
            raise

    def _release(self, key: Hashable) -> None:
        held = self._holding[key] - 1
        if held:
            self._holding[key] = held
        else:
            del self._holding[key]
        if self._live:
            self._grant(self._pop_next())  # the slot passes on; in_use stays the same
            self._positions_changed()
        else:
            self._in_use -= 1

    def _count_holder(self, key: Hashable) -> None:
        self._holding[key] = self._holding.get(key, 0) + 1

    def _enqueue(self, waiter: _Waiter) -> None:
        key = waiter.key
        queue = self._this_round.get(key)
        if queue is None:
            queue = self._next_round.get(key)
        if queue is None:
            had_turn = key in self._served or key in self._holding
            queue = OrderedDict()
            (self._next_round if had_turn else self._this_round)[key] = queue
        queue[waiter] = None
        self._live += 1

    def _forget(self, waiter: _Waiter) -> None:
        key = waiter.key
        round_ = self._this_round if key in self._this_round else self._next_round
        queue = round_[key]
        del queue[waiter]
        if not queue:
            del round_[key]
        self._settle(waiter)
        self._positions_changed()

    def _pop_next(self) -> _Waiter:
        """The next waiter in service order; there must be one."""
        if not self._this_round:
            # Everybody waiting for this round has been served: the next round begins.
            self._this_round, self._next_round = self._next_round, self._this_round
            self._served.clear()
        key, queue = self._this_round.popitem(last=False)
        waiter, _ = queue.popitem(last=False)
        if queue:
            self._next_round[key] = queue
        self._served.add(key)
        return waiter

    def _grant(self, waiter: _Waiter) -> None:
        waiter.granted = True
        self._settle(waiter)
        self._count_holder(waiter.key)
        _resolve(waiter.wake)

    def _settle(self, waiter: _Waiter) -> None:
        """Count out a waiter that is no longer waiting (granted or cancelled)."""
        self._live -= 1
        if waiter.noticed:
            self._noticed_live -= 1
        elif waiter in self._unnoticed:
            del self._unnoticed[waiter]
            if not self._unnoticed and self._notice_timer is not None:
                self._notice_timer.cancel()
                self._notice_timer = None

    def _arm_notice_timer(self, now: float) -> None:
        first = next(iter(self._unnoticed))
        delay = max(0.0, first.enqueued_at + self._notice_after - now)
        self._notice_timer = asyncio.get_running_loop().call_later(delay, self._notice_due)

    def _notice_due(self) -> None:
        # Measured with `clock`, so a timer that fires early (an injected clock) just re-arms.
        self._notice_timer = None
        now = self._clock()
        deadline = now - self._notice_after
        promoted = False
        while self._unnoticed:
            waiter = next(iter(self._unnoticed))
            if waiter.enqueued_at > deadline:
                break
            self._unnoticed.popitem(last=False)
            waiter.noticed = True
            self._noticed_live += 1
            promoted = True
        if self._unnoticed:
            self._arm_notice_timer(now)
        if promoted:
            self._positions_changed()

    def _positions_changed(self) -> None:
        # Coalesced: a burst of arrivals, grants or cancellations costs one walk.
        if self._noticed_live and self._positions_pending is None:
            loop = asyncio.get_running_loop()
            self._positions_pending = loop.call_soon(self._update_positions)

    def _update_positions(self) -> None:
        """Walk the service order until every noticed waiter has its position."""
        self._positions_pending = None
        remaining = self._noticed_live
        if not remaining:
            return
        for position, waiter in enumerate(self._service_order(), 1):
            if not waiter.noticed:
                continue
            if waiter.position != position:
                waiter.position = position
                if waiter.on_wait is not None and position != waiter.reported:
                    _resolve(waiter.wake)
            remaining -= 1
            if not remaining:
                return

    def _service_order(self) -> Iterator[_Waiter]:
        """Waiters in the order they would be granted if nobody came or left meanwhile.

        This round serves the head of each of its users; after that, every round serves the
        users of the next round, then those of this one, one waiter each, in the same order.
        """
        this_round = [iter(queue) for queue in self._this_round.values()]
        for queue_iter in this_round:
            yield next(queue_iter)  # queues in a round are never empty
        active = [iter(queue) for queue in self._next_round.values()] + this_round
        while active:
            still: list[Iterator[_Waiter]] = []
            for queue_iter in active:
                waiter = next(queue_iter, None)
                if waiter is not None:
                    yield waiter
                    still.append(queue_iter)
            active = still


class _Hold:
    """One slot for the body of one `async with`."""

    __slots__ = ("_held", "_key", "_on_wait", "_shared", "_slots")

    def __init__(self, slots: FairSlots, key: Hashable, on_wait: OnWait | None) -> None:
        self._slots = slots
        self._key = key
        self._on_wait = on_wait
        self._held = False
        self._shared: contextlib.AbstractAsyncContextManager[None] | None = None

    async def __aenter__(self) -> None:
        if self._held:
            raise RuntimeError("this hold already has its slot")
        await self._slots._acquire(self._key, self._on_wait)
        if self._slots._shared is not None:
            shared = self._slots._shared.hold()
            try:
                await shared.__aenter__()
            except BaseException:
                self._slots._release(self._key)  # cancelled while waiting for a shared place
                raise
            self._shared = shared
        self._held = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._held:
            self._held = False
            shared, self._shared = self._shared, None
            try:
                if shared is not None:
                    await shared.__aexit__(exc_type, exc, tb)
            finally:
                self._slots._release(self._key)
