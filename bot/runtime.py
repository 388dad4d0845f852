"""Process-level tuning, applied by the entry points once start-up is over."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def freeze_startup_heap() -> None:
    """Keep the objects that exist after start-up out of every later garbage collection.

    Importing aiogram leaves about 200,000 tracked objects (pydantic models and schemas) that
    live as long as the process. A full collection walks all of them: about 150 ms during
    which the event loop stands still, every time enough newer objects have survived. Frozen,
    they are never walked again; only what the bot creates while running is.
    """
    gc.collect()  # garbage that exists now would otherwise be frozen too
    gc.freeze()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on uvloop where it is installed, else on asyncio's loop.

    uvloop does the loop's own work (ready queue, timers, socket transports) in C: on the
    benchmarks that was about an eighth of the bot's CPU per answer under asyncio's loop.
    """
    try:
        import uvloop
    except ImportError:  # e.g. Windows
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
