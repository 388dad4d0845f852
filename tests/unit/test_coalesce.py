"""Writes made in one turn of the event loop share one batch (services/storage/coalesce.py)."""

from __future__ import annotations

import asyncio

import pytest

from services.storage.coalesce import Coalescer


class Recorder:
    def __init__(self, fail: bool = False, gate: asyncio.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.gate = gate

    async def __call__(self, args: list[int]) -> list[int]:
        self.batches.append(list(args))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise OSError("the database went away")
        return [arg * 10 for arg in args]


async def test_calls_of_one_turn_share_a_batch_and_get_their_own_results() -> None:
    run = Recorder()
    coalesce = Coalescer(run)
    assert await asyncio.gather(*(coalesce(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert run.batches == [[0, 1, 2, 3, 4]]
    # A lone call is a batch of one, a turn later.
    assert await coalesce(7) == 70
    assert run.batches[-1] == [7]


async def test_a_full_batch_goes_at_once() -> None:
    run = Recorder()
    coalesce = Coalescer(run, max_batch=2)
    await asyncio.gather(*(coalesce(n) for n in range(5)))
    assert run.batches == [[0, 1], [2, 3], [4]]


async def test_a_failed_batch_fails_each_caller() -> None:
    coalesce = Coalescer(Recorder(fail=True))
    results = await asyncio.gather(*(coalesce(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)


async def test_a_cancelled_caller_leaves_the_batch_to_the_others() -> None:
    gate = asyncio.Event()
    run = Recorder(gate=gate)
    coalesce = Coalescer(run)
    first = asyncio.create_task(coalesce(1))
    second = asyncio.create_task(coalesce(2))
    await asyncio.sleep(0.01)
    first.cancel()
    gate.set()
    assert await second == 20
    with pytest.raises(asyncio.CancelledError):
        await first
    assert run.batches == [[1, 2]]  # the write itself still happened


async def test_closing_waits_for_batches_under_way() -> None:
    gate = asyncio.Event()
    run = Recorder(gate=gate)
    coalesce = Coalescer(run)
    call = asyncio.create_task(coalesce(3))
    await asyncio.sleep(0)
    idle = asyncio.create_task(coalesce.wait_idle())
    await asyncio.sleep(0.01)
    assert not idle.done()
    gate.set()
    await idle
    assert await call == 30
