"""Process-level tuning, applied by the entry points once start-up is over."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Keep the objects that exist after start-up out of every later garbage collection.

    Importing aiogram leaves about 200,000 tracked objects (pydantic models and schemas) that
    live as long as the process. A full collection walks all of them: about 150 ms during
    which the event loop stands still, every time enough newer objects have survived. Frozen,
    they are never walked again; only what the bot creates while running is.
    """
    gc.collect()  # garbage that exists now would otherwise be frozen too
    gc.freeze()
