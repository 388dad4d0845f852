"""An answer handed over by its handler keeps its update in flight and unfinished in the
journal until the answer ends (so a shutdown waits for it and a crash replays it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiogram.types import Update

from bot.journal import JournalMiddleware
from bot.middlewares import InFlight
from handlers.ui.continuation import CONTINUATION_KEY, Continuation
from services.journal import UpdateDeferred


class Journal:
    def __init__(self) -> None:
        self.finished: list[int] = []
        self.deferred: list[int] = []

    async def record(self, update_id: int, payload: str) -> bool:
        return True

    async def finish(self, update_id: int) -> None:
        self.finished.append(update_id)

    async def defer(self, update_id: int) -> None:
        self.deferred.append(update_id)


async def feed(in_flight: InFlight, journal: Journal, work: Any) -> None:
    """One update through InFlight → JournalMiddleware → a handler that hands `work` over."""
    middleware = JournalMiddleware(journal)  # type: ignore[arg-type]

    async def handler(event: Any, data: dict[str, Any]) -> None:
        data[CONTINUATION_KEY].start(work)

    async def inner(event: Any, data: dict[str, Any]) -> Any:
        return await middleware(handler, event, data)

    await in_flight(inner, Update(update_id=7), {})


async def test_handed_over_work_keeps_the_update_in_flight_and_unfinished() -> None:
    in_flight, journal, release = InFlight(), Journal(), asyncio.Event()

    async def answer() -> None:
        await release.wait()

    await feed(in_flight, journal, answer())
    # The handler has returned; the answer has not.
    assert in_flight.active == 1 and journal.finished == []
    assert not await in_flight.drain(0.01)
    release.set()
    assert await in_flight.drain(1.0)
    assert journal.finished == [7] and in_flight.active == 0


async def test_work_put_off_by_a_shutdown_is_deferred_not_finished() -> None:
    in_flight, journal = InFlight(), Journal()

    async def answer() -> None:
        raise UpdateDeferred

    await feed(in_flight, journal, answer())
    assert await in_flight.drain(1.0)
    assert journal.deferred == [7] and journal.finished == []


async def test_cancelled_work_leaves_the_update_for_the_restart() -> None:
    in_flight, journal = InFlight(), Journal()

    async def answer() -> None:
        await asyncio.sleep(10)

    await feed(in_flight, journal, answer())
    await asyncio.sleep(0)  # the answer is under way
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    assert journal.finished == [] and journal.deferred == []
    assert in_flight.active == 0


async def test_work_is_handed_over_once() -> None:
    continuation = Continuation()

    async def nothing() -> None:
        return None

    continuation.start(nothing())
    second = nothing()
    with pytest.raises(RuntimeError):
        continuation.start(second)
    assert continuation.task is not None
    await continuation.task
