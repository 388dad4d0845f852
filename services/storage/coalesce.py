"""Writes made in the same turn of the event loop, sent to the database as one statement.

Under load many updates reach the same step at once (their webhook requests were read in
one turn of the loop); each would cost its own round trip and pool checkout. A `Coalescer`
collects the calls made before the loop's next turn and runs them as one batch: one
round trip for all, and each caller gets its own result (or the batch's error) as if it had
run alone. A lone call is delayed by one turn of the loop, nothing more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

A = TypeVar("A")
R = TypeVar("R")


class Coalescer(Generic[A, R]):
    def __init__(
        self, run: Callable[[list[A]], Awaitable[Sequence[R]]], *, max_batch: int = 500
    ) -> None:
        """`run(args)` returns one result per argument, in order."""
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[A, asyncio.Future[R]]] = []
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, arg: A) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((arg, future))
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        # A cancelled caller cancels its own future only: the batch still runs for the others.
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._execute(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _execute(self, batch: list[tuple[A, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([arg for arg, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} returned {len(results)} results")
        except asyncio.CancelledError:  # shutting down: so are the callers
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:  # every caller learns how its own write went
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def wait_idle(self) -> None:
        """Until every batch started has finished (closing the pool after)."""
        while self._pending or self._running:
            if self._pending:
                self._flush()
            await asyncio.gather(*self._running, return_exceptions=True)
