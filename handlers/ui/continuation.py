"""An answer that goes on after its update's handler has returned.

Streaming an answer takes seconds to minutes. Awaited inside the handler, it would keep
aiogram's whole dispatch chain alive for that time (the middlewares' wrappers and frames,
the filters' results, the FSM context: about 20 KB per question), which is most of the
bot's memory when a thousand people ask at once. So a handler starts the answer and hands
it over: `Continuation.start(work)`. The update is not finished by that: the middleware
that keeps the update journal finishes (or defers) it when the work ends, and the one that
counts updates in flight counts it until then, so a restart still answers a question whose
answer did not complete, and a shutdown still lets answers finish first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["CONTINUATION_KEY", "Continuation"]

# Where the middlewares put it in aiogram's data; handlers receive it by this name.
CONTINUATION_KEY = "continuation"


# What runs when handed-over work has ended: given the exception it ended with, if any.
EndHook = Callable[[Exception | None], Awaitable[None]]


class Continuation:
    """One update's work that outlives its handler (at most one per update).

    Middlewares register `after` hooks before the handler runs; they run, innermost first,
    in the work's own task once the work has ended (one task per answer, not one per
    middleware). Work that is cancelled runs no hooks: its update stays unfinished.
    """

    __slots__ = ("_hooks", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self._hooks: list[EndHook] = []

    def after(self, hook: EndHook) -> None:
        self._hooks.append(hook)

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        if self.task is not None:
            work.close()
            raise RuntimeError("an update's work is handed over once")
        self.task = asyncio.get_running_loop().create_task(self._run(work))

    async def _run(self, work: Coroutine[Any, Any, None]) -> None:
        error: Exception | None = None
        try:
            await work
        except Exception as exc:  # a cancellation (BaseException) skips the hooks
            error = exc
        for hook in reversed(self._hooks):
            await hook(error)
