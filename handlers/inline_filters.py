"""Magic filters (`F....`) checked in the event loop instead of a worker thread.

aiogram calls every filter that is not a coroutine function through `asyncio.to_thread`, and
a magic filter is a plain callable. A private text message meets about ten of them on its way
to the chat handler (the routers before it have theirs), so evaluating a few attribute
comparisons took ten thread round trips: about 2 ms of latency per message and a visible share
of the bot's CPU. Once the routers are built, their magic filters are turned into coroutines
that call the same `resolve(event)` inline, so what passes and what a filter returns (including
`.as_(...)` values) is exactly as before.

Only handler filters are converted; the routers' own (observer-level) filters here are
Filter classes, already coroutines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Router
from aiogram.dispatcher.event.handler import FilterObject


def inline_magic_filters(router: Router) -> Router:
    """Convert the magic filters of `router` and its sub-routers in place; returns `router`."""
    for each in router.chain_tail:
        for observer in each.observers.values():
            for handler in observer.handlers:
                for event_filter in handler.filters or ():
                    _inline(event_filter)
    return router


def _inline(event_filter: FilterObject) -> None:
    if event_filter.magic is None or event_filter.awaitable:
        return
    event_filter.callback = _as_coroutine(event_filter.callback)
    event_filter.awaitable = True


def _as_coroutine(resolve: Callable[[Any], Any]) -> Callable[[Any], Awaitable[Any]]:
    # The parameter keeps resolve()'s name: aiogram passes keyword data by parameter name.
    async def check(value: Any) -> Any:
        return resolve(value)

    return check
