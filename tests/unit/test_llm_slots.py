"""FairSlots: the limit, fair order, cancellation, and queue position notices.

Order is asserted exactly; holders leave when a test tells them to, so no test depends on how
fast the machine runs. Real waits are under a tenth of a second.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable, Hashable

import pytest

from services.llm.slots import FairSlots

OnWait = Callable[[int], Awaitable[None]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def wait_until(predicate: Callable[[], bool], within: float = 1.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polls limiter state; there is no event
            await asyncio.sleep(0.002)


class Requests:
    """Requests that hold their slot until the test lets them go; `order` = who got in when."""

    def __init__(self, slots: FairSlots) -> None:
        self.slots = slots
        self.order: list[str] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._leave: dict[str, asyncio.Event] = {}

    def start(self, key: Hashable, label: str, on_wait: OnWait | None = None) -> None:
        leave = self._leave[label] = asyncio.Event()

        async def run() -> None:
            async with self.slots.hold(key, on_wait):
                self.order.append(label)
                await leave.wait()

        self.tasks[label] = asyncio.create_task(run(), name=label)

    async def let_go(self, label: str) -> None:
        """Let a holder finish; the next holder, if any, enters before this returns."""
        entered = len(self.order)
        self._leave[label].set()
        await self.tasks[label]
        if self.slots.queued:
            await wait_until(lambda: len(self.order) > entered)

    async def serve_all(self) -> None:
        while any(not self.tasks[label].done() for label in self.order):
            await self.let_go(next(lb for lb in self.order if not self.tasks[lb].done()))

    async def cancel_all(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


def recorder(seen: list[int]) -> OnWait:
    async def record(position: int) -> None:
        seen.append(position)

    return record


@pytest.mark.parametrize(("limit", "notice_after"), [(0, 1.0), (-1, 1.0), (1, -0.5), (1, math.nan)])
def test_bad_settings_are_rejected(limit: int, notice_after: float) -> None:
    with pytest.raises(ValueError):
        FairSlots(limit, notice_after=notice_after)


async def test_holders_up_to_the_limit_enter_at_once_and_the_rest_queue() -> None:
    slots = FairSlots(2)
    requests = Requests(slots)
    for label in ("a", "b", "c"):
        requests.start(label, label)
    await wait_until(lambda: slots.queued == 1)
    assert requests.order == ["a", "b"]
    assert slots.in_use == 2
    await requests.let_go("a")
    assert requests.order == ["a", "b", "c"]
    assert (slots.in_use, slots.queued) == (2, 0)
    await requests.serve_all()
    assert (slots.in_use, slots.queued) == (0, 0)


async def test_the_limit_holds_under_200_concurrent_holders() -> None:
    slots = FairSlots(3)
    rng = random.Random(7)
    inside = 0
    most = 0

    async def one(key: int, turns: int) -> None:
        nonlocal inside, most
        async with slots.hold(key):
            inside += 1
            most = max(most, inside)
            assert inside <= 3 and slots.in_use <= 3
            for _ in range(turns):  # random durations, in event-loop turns
                await asyncio.sleep(0)
            inside -= 1

    tasks = [asyncio.create_task(one(i % 9, rng.randrange(30))) for i in range(200)]
    await asyncio.wait_for(asyncio.gather(*tasks), 5.0)
    assert most == 3
    assert (slots.in_use, slots.queued) == (0, 0)


async def test_random_cancellations_never_lose_or_add_a_slot() -> None:
    slots = FairSlots(3)
    rng = random.Random(11)
    inside = 0

    async def one(key: int, turns: int) -> None:
        nonlocal inside
        async with slots.hold(key):
            inside += 1
            try:
                assert inside <= 3
                for _ in range(turns):
                    await asyncio.sleep(0)
            finally:
                inside -= 1

    tasks = [asyncio.create_task(one(i % 9, rng.randrange(30))) for i in range(200)]
    victims = rng.sample(tasks, 70)
    for victim in victims:  # cancelled at random moments: some wait, some hold
        for _ in range(rng.randrange(5)):
            await asyncio.sleep(0)
        victim.cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5.0)
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
    assert (slots.in_use, slots.queued) == (0, 0)
    # All three slots are still there: three holders get in at once, a fourth waits.
    requests = Requests(slots)
    for i in range(4):
        requests.start(i, f"r{i}")
    await wait_until(lambda: slots.queued == 1)
    assert requests.order == ["r0", "r1", "r2"]
    await requests.serve_all()


async def test_a_user_holding_a_slot_waits_behind_users_who_have_none() -> None:
    slots = FairSlots(1)
    requests = Requests(slots)
    for i in range(10):
        requests.start("A", f"A{i}")  # A0 takes the free slot, nine wait
    requests.start("B", "B")
    requests.start("C", "C")
    await wait_until(lambda: slots.queued == 11)
    await requests.serve_all()
    assert requests.order[0] == "A0"
    assert set(requests.order[1:3]) == {"B", "C"}  # the next two grants
    assert [label for label in requests.order if label[0] == "A"] == [f"A{i}" for i in range(10)]


async def test_a_backlog_does_not_delay_users_who_arrive_after_it() -> None:
    slots = FairSlots(1)
    requests = Requests(slots)
    requests.start("warm-up", "warm-up")
    for i in range(20):
        requests.start("heavy", f"heavy{i}")
    for i in range(5):
        requests.start(f"light{i}", f"light{i}")
    await wait_until(lambda: slots.queued == 25)
    await requests.serve_all()
    lights = [i for i, label in enumerate(requests.order) if label.startswith("light")]
    assert lights == [2, 3, 4, 5, 6], requests.order  # right after heavy0


async def test_users_asking_again_after_each_answer_do_not_starve_a_backlog() -> None:
    slots = FairSlots(1)
    order: list[str] = []

    async def once(key: str, label: str) -> None:
        async with slots.hold(key):
            order.append(label)

    async def asks_again(key: str) -> None:
        for i in range(3):  # the next question goes out the moment the answer is in
            await once(key, f"{key}{i}")

    async with slots.hold("w"):
        tasks = [asyncio.create_task(once("z", f"z{i}")) for i in range(3)]
        tasks += [asyncio.create_task(asks_again("x")), asyncio.create_task(asks_again("y"))]
        await wait_until(lambda: slots.queued == 5)
    await asyncio.wait_for(asyncio.gather(*tasks), 1.0)
    assert order == ["z0", "x0", "y0", "z1", "x1", "y1", "z2", "x2", "y2"]


async def test_a_waiter_cancelled_while_waiting_leaves_no_trace() -> None:
    slots = FairSlots(1)
    requests = Requests(slots)
    requests.start("h", "h")
    requests.start("a", "a")
    requests.start("b", "b")
    await wait_until(lambda: slots.queued == 2)
    requests.tasks["a"].cancel()
    with pytest.raises(asyncio.CancelledError):
        await requests.tasks["a"]
    assert (slots.in_use, slots.queued) == (1, 1)
    await requests.let_go("h")
    assert requests.order == ["h", "b"]  # b got the slot a would have had
    assert (slots.in_use, slots.queued) == (1, 0)
    await requests.let_go("b")
    assert (slots.in_use, slots.queued) == (0, 0)


async def test_a_holder_cancelled_or_failing_releases_its_slot() -> None:
    slots = FairSlots(1)
    requests = Requests(slots)
    requests.start("h", "h")
    requests.start("b", "b")
    await wait_until(lambda: slots.queued == 1)
    requests.tasks["h"].cancel()
    await wait_until(lambda: requests.order == ["h", "b"])
    assert (slots.in_use, slots.queued) == (1, 0)
    await requests.let_go("b")

    with pytest.raises(RuntimeError, match="upstream broke"):
        async with slots.hold("c"):
            raise RuntimeError("upstream broke")
    assert slots.in_use == 0


async def test_a_slot_granted_to_a_waiter_cancelled_at_that_moment_goes_on() -> None:
    slots = FairSlots(1)
    requests = Requests(slots)
    requests.start("a", "a")
    requests.start("b", "b")
    async with slots.hold("h"):
        await wait_until(lambda: slots.queued == 2)
    # Leaving granted the slot to a, whose task has not run since: cancel it right now.
    assert (slots.in_use, slots.queued) == (1, 1)
    requests.tasks["a"].cancel()
    with pytest.raises(asyncio.CancelledError):
        await requests.tasks["a"]
    await wait_until(lambda: requests.order == ["b"])
    assert (slots.in_use, slots.queued) == (1, 0)
    await requests.let_go("b")
    assert slots.in_use == 0


async def test_a_hold_cannot_be_entered_twice() -> None:
    slots = FairSlots(2)
    hold = slots.hold("a")
    async with hold:
        with pytest.raises(RuntimeError):
            await hold.__aenter__()
        assert slots.in_use == 1
    assert slots.in_use == 0


async def test_positions_are_reported_after_notice_after_and_not_before() -> None:
    clock = FakeClock()
    slots = FairSlots(1, notice_after=0.02, clock=clock)
    requests = Requests(slots)
    requests.start("w", "w")
    for i in range(3):
        requests.start(f"k{i}", f"k{i}")
    seen: list[int] = []
    requests.start("me", "me", recorder(seen))
    await wait_until(lambda: slots.queued == 4)
    await asyncio.sleep(0.08)  # the notice timer fires and re-arms; the clock says 0 s passed
    assert seen == []
    clock.now += 0.02
    await wait_until(lambda: seen == [4])
    for label, position in (("w", 3), ("k0", 2), ("k1", 1)):
        await requests.let_go(label)
        await wait_until(lambda: seen[-1] == position)  # noqa: B023 - awaited in this turn
    await requests.let_go("k2")
    assert requests.order[-1] == "me"
    assert seen == [4, 3, 2, 1]
    await requests.let_go("me")


async def test_no_notice_for_a_wait_shorter_than_notice_after() -> None:
    clock = FakeClock()
    slots = FairSlots(1, notice_after=0.01, clock=clock)
    requests = Requests(slots)
    requests.start("w", "w")
    seen: list[int] = []
    requests.start("me", "me", recorder(seen))
    await wait_until(lambda: slots.queued == 1)
    clock.now += 0.005
    await asyncio.sleep(0.03)
    await requests.let_go("w")
    clock.now += 1.0  # past notice_after, but already served
    await asyncio.sleep(0.03)
    assert requests.order == ["w", "me"]
    assert seen == []
    await requests.let_go("me")


async def test_positions_follow_the_service_order() -> None:
    slots = FairSlots(1, notice_after=0.0)
    requests = Requests(slots)
    first: dict[str, int] = {}

    def first_position(label: str) -> OnWait:
        async def record(position: int) -> None:
            first.setdefault(label, position)

        return record

    requests.start("w", "w")
    for i in range(3):
        requests.start("heavy", f"h{i}", first_position(f"h{i}"))
    requests.start("light", "l0", first_position("l0"))
    await wait_until(lambda: len(first) == 4)
    assert first == {"h0": 1, "l0": 2, "h1": 3, "h2": 4}
    await requests.cancel_all()

    # A user who holds a slot queues behind those who hold none.
    first.clear()
    requests = Requests(slots)
    requests.start("heavy", "h0")
    for i in (1, 2):
        requests.start("heavy", f"h{i}", first_position(f"h{i}"))
    requests.start("light", "l0", first_position("l0"))
    await wait_until(lambda: len(first) == 3)
    assert first == {"l0": 1, "h1": 2, "h2": 3}
    await requests.cancel_all()
    assert (slots.in_use, slots.queued) == (0, 0)


async def test_positions_change_when_a_newcomer_goes_ahead_or_someone_ahead_leaves() -> None:
    slots = FairSlots(1, notice_after=0.0)
    requests = Requests(slots)
    seen: list[int] = []
    requests.start("heavy", "h0")
    requests.start("heavy", "h1", recorder(seen))
    await wait_until(lambda: seen == [1])
    requests.start("light", "l0")  # has had no turn yet: goes ahead of h1
    await wait_until(lambda: seen == [1, 2])
    requests.tasks["l0"].cancel()
    await wait_until(lambda: seen == [1, 2, 1])
    await requests.cancel_all()


async def test_a_failing_callback_is_logged_and_waiting_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="services.llm.slots")
    slots = FairSlots(1, notice_after=0.0)
    requests = Requests(slots)
    calls: list[int] = []

    async def broken(position: int) -> None:
        calls.append(position)
        raise RuntimeError("telegram is down")

    requests.start("w", "w")
    requests.start("k0", "k0")
    requests.start("me", "me", broken)
    await wait_until(lambda: calls == [2])
    await requests.let_go("w")
    await requests.let_go("k0")
    assert requests.order == ["w", "k0", "me"]
    assert calls == [2]  # called once, then left alone
    assert "queue position callback failed" in caplog.text
    await requests.let_go("me")


async def test_waiting_starts_no_task() -> None:
    before = asyncio.all_tasks()
    slots = FairSlots(1, notice_after=0.0)
    requests = Requests(slots)
    seen: list[int] = []
    requests.start("w", "w")
    requests.start("me", "me", recorder(seen))
    await wait_until(lambda: seen == [1])
    assert asyncio.all_tasks() - before == set(requests.tasks.values())
    await requests.serve_all()
