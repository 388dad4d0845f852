"""FairRateLimiter. Real-time tests use fast rates and assert ORDER exactly, timing loosely."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable

import pytest

from services.llm.limiter import FairRateLimiter


class HoldableClock:
    """Real monotonic time that can be frozen while a test builds its queue.

    While held, nothing becomes due, so the queue order cannot depend on how fast the (possibly
    loaded) machine runs the setup; releasing it lets the scheduler run in real time.
    """

    def __init__(self) -> None:
        self.held: float | None = None

    def __call__(self) -> float:
        return self.held if self.held is not None else time.monotonic()

    def hold(self) -> None:
        self.held = time.monotonic()

    def release(self) -> None:
        self.held = None


async def wait_until(predicate: Callable[[], bool], within: float = 1.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polls limiter state; there is no event
            await asyncio.sleep(0.002)


async def test_zero_rate_is_unlimited() -> None:
    limiter = FairRateLimiter(0)
    started = time.monotonic()
    for i in range(1000):
        await limiter.acquire(i % 3)
    assert time.monotonic() - started < 0.5
    assert limiter.queued() == 0


def test_negative_rate_is_rejected() -> None:
    with pytest.raises(ValueError):
        FairRateLimiter(-1)


async def test_first_start_is_immediate_and_the_next_waits_its_interval() -> None:
    now = [100.0]
    limiter = FairRateLimiter(0.5, clock=lambda: now[0])
    await limiter.acquire("a")  # no await needed: granted at once
    assert limiter.queued() == 0
    now[0] += 2.0  # a whole interval later: immediate again
    await asyncio.wait_for(limiter.acquire("b"), 0.1)
    task = asyncio.create_task(limiter.acquire("c"))
    await asyncio.sleep(0.01)
    assert limiter.queued() == 1 and not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.queued() == 0


async def test_starts_are_spaced_by_the_interval() -> None:
    limiter = FairRateLimiter(50)  # 20 ms
    granted: list[float] = []

    async def one(key: Hashable) -> None:
        await limiter.acquire(key)
        granted.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(one(i % 2) for i in range(6)))
    assert len(granted) == 6
    assert granted[-1] - started >= 5 * 0.02 * 0.9
    assert granted[-1] - started < 1.0


async def test_round_robin_fairness() -> None:
    clock = HoldableClock()
    limiter = FairRateLimiter(200, clock=clock)  # 5 ms
    clock.hold()
    await limiter.acquire("warm-up")  # takes the free slot so that everybody below queues
    order: list[str] = []

    async def one(key: str, label: str) -> None:
        await limiter.acquire(key)
        order.append(label)

    tasks = [asyncio.create_task(one("heavy", f"heavy{i}")) for i in range(20)]
    tasks += [asyncio.create_task(one(f"light{i}", f"light{i}")) for i in range(5)]
    await asyncio.sleep(0.01)
    assert limiter.queued() == 25 and order == []
    clock.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 2.0)
    assert len(order) == 25
    lights = [i for i, label in enumerate(order) if label.startswith("light")]
    assert max(lights) < 6, order
    # Each key's own requests keep their FIFO order.
    heavies = [label for label in order if label.startswith("heavy")]
    assert heavies == [f"heavy{i}" for i in range(20)]


async def test_cancelled_waiter_leaves_the_queue_and_takes_no_slot() -> None:
    limiter = FairRateLimiter(5)  # 200 ms
    await limiter.acquire("warm-up")
    granted_at: dict[str, float] = {}

    async def one(key: str) -> None:
        await limiter.acquire(key)
        granted_at[key] = time.monotonic()

    a = asyncio.create_task(one("a"))
    b = asyncio.create_task(one("b"))
    started = time.monotonic()
    await asyncio.sleep(0.02)
    assert limiter.queued() == 2
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    assert limiter.queued() == 1
    await asyncio.wait_for(b, 1.0)
    assert "a" not in granted_at
    # b got the first slot (~200 ms), not the second (~400 ms).
    assert granted_at["b"] - started < 0.33


async def test_a_grant_cancelled_before_use_is_given_back() -> None:
    limiter = FairRateLimiter(4, notice_after=0.0)  # 250 ms
    await limiter.acquire("warm-up")
    blocked = asyncio.Event()
    never = asyncio.Event()

    async def stuck_callback(position: int) -> None:
        blocked.set()
        await never.wait()

    a = asyncio.create_task(limiter.acquire("a", stuck_callback))
    await asyncio.wait_for(blocked.wait(), 1.0)
    b = asyncio.create_task(limiter.acquire("b"))
    await asyncio.sleep(0)
    assert limiter.queued() == 2
    await wait_until(lambda: limiter.queued() == 1)  # a was granted while in its callback
    a.cancel()
    cancelled_at = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await a
    await asyncio.wait_for(b, 1.0)
    assert time.monotonic() - cancelled_at < 0.15  # not a whole interval later


async def test_positions_are_reported_after_notice_and_on_change() -> None:
    clock = HoldableClock()
    limiter = FairRateLimiter(20, notice_after=0.0, clock=clock)  # 50 ms
    clock.hold()
    await limiter.acquire("warm-up")
    seen: list[int] = []

    async def record(position: int) -> None:
        seen.append(position)

    tasks = [asyncio.create_task(limiter.acquire(f"k{i}")) for i in range(3)]
    tasks.append(asyncio.create_task(limiter.acquire("last", record)))
    await wait_until(lambda: seen == [4])
    clock.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 2.0)
    assert seen == [4, 3, 2, 1]


async def test_positions_follow_round_robin_order() -> None:
    clock = HoldableClock()
    limiter = FairRateLimiter(20, notice_after=0.0, clock=clock)
    clock.hold()  # never released: nothing is granted while we look
    await limiter.acquire("warm-up")
    first: dict[str, int] = {}

    def recorder(label: str) -> Callable[[int], Awaitable[None]]:
        async def record(position: int) -> None:
            first.setdefault(label, position)

        return record

    tasks = [asyncio.create_task(limiter.acquire("heavy", recorder(f"h{i}"))) for i in range(3)]
    tasks.append(asyncio.create_task(limiter.acquire("light", recorder("l0"))))
    await wait_until(lambda: len(first) == 4)
    assert first == {"h0": 1, "l0": 2, "h1": 3, "h2": 4}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert limiter.queued() == 0


async def test_notice_waits_for_notice_after() -> None:
    clock = HoldableClock()
    limiter = FairRateLimiter(20, notice_after=0.02, clock=clock)  # grants every 50 ms
    clock.hold()
    await limiter.acquire("warm-up")
    seen: list[int] = []

    async def record(position: int) -> None:
        seen.append(position)

    task = asyncio.create_task(limiter.acquire("a", record))
    await asyncio.sleep(0.08)
    assert seen == []  # held clock: the wait has not lasted 20 ms yet
    clock.held = (clock.held or 0.0) + 0.03  # past the notice, before the first grant
    await asyncio.sleep(0.08)
    assert seen == [1]
    clock.release()
    await asyncio.wait_for(task, 1.0)


async def test_no_notice_for_a_short_wait() -> None:
    limiter = FairRateLimiter(50, notice_after=5.0)
    await limiter.acquire("warm-up")
    calls: list[int] = []

    async def record(position: int) -> None:
        calls.append(position)

    await asyncio.wait_for(limiter.acquire("a", record), 1.0)
    assert calls == []


async def test_a_failing_callback_does_not_break_acquire(caplog: pytest.LogCaptureFixture) -> None:
    clock = HoldableClock()
    limiter = FairRateLimiter(20, notice_after=0.0, clock=clock)
    clock.hold()
    await limiter.acquire("warm-up")
    calls: list[int] = []

    async def broken(position: int) -> None:
        calls.append(position)
        raise RuntimeError("telegram is down")

    others = [asyncio.create_task(limiter.acquire(f"k{i}")) for i in range(2)]
    mine = asyncio.create_task(limiter.acquire("a", broken))
    await wait_until(lambda: calls == [3])
    clock.release()
    await asyncio.wait_for(asyncio.gather(mine, *others), 1.0)
    assert calls == [3]  # called once, then left alone
    assert "queue position callback failed" in caplog.text


async def test_many_waiters_are_served_by_one_scheduler() -> None:
    limiter = FairRateLimiter(1000)
    await limiter.acquire("warm-up")

    def schedulers() -> list[asyncio.Task[object]]:
        return [
            task
            for task in asyncio.all_tasks()
            if task.get_name() == "llm-rate-limiter"
            and task.get_coro().cr_frame.f_locals.get("self") is limiter  # type: ignore[union-attr]
        ]

    tasks = [asyncio.create_task(limiter.acquire(i % 7)) for i in range(50)]
    await asyncio.sleep(0)
    assert len(schedulers()) == 1
    await asyncio.wait_for(asyncio.gather(*tasks), 2.0)
    assert limiter.queued() == 0
    await wait_until(lambda: not schedulers())  # it stops once the queue is empty


async def test_a_late_arrival_is_noticed_on_time_while_the_scheduler_sleeps() -> None:
    limiter = FairRateLimiter(2, notice_after=0.05)  # 500 ms between grants
    await limiter.acquire("warm-up")
    first = asyncio.create_task(limiter.acquire("k0"))
    await asyncio.sleep(0.01)  # the scheduler is now asleep until the next grant
    noticed = asyncio.Event()
    seen: list[int] = []

    async def record(position: int) -> None:
        seen.append(position)
        noticed.set()

    late = asyncio.create_task(limiter.acquire("late", record))
    started = time.monotonic()
    await asyncio.wait_for(noticed.wait(), 1.0)
    assert time.monotonic() - started < 0.3  # long before the 500 ms grant
    assert seen == [2]
    for task in (first, late):
        task.cancel()
    await asyncio.gather(first, late, return_exceptions=True)
    await wait_until(lambda: limiter.queued() == 0)


class RecordingGate:
    """A shared start gate on a local schedule (GCRA, as on Redis) that records its bookings."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.tat = 0.0
        self.booked_at: list[float] = []

    async def book(self) -> float | None:
        now = time.monotonic()
        self.booked_at.append(now)
        slot = max(self.tat, now)
        self.tat = slot + self.interval
        return slot - now


async def test_with_a_shared_gate_the_next_start_is_booked_a_slot_ahead() -> None:
    # Booked only when due, every start would come one booking's round trip late, and the
    # shared rate would drift below the setting (3 % at LLM_RPS=10 on the benchmark).
    interval = 0.05
    gate = RecordingGate(interval)
    limiter = FairRateLimiter(1 / interval, gate=gate)
    granted: list[float] = []

    async def user(key: int) -> None:
        await limiter.acquire(key)
        granted.append(time.monotonic())

    await asyncio.gather(*(user(key) for key in range(5)))
    granted.sort()
    assert len(gate.booked_at) == 5
    for booking, previous_grant in zip(gate.booked_at[1:], granted, strict=False):
        assert booking - previous_grant < interval / 2  # right after the grant before it
