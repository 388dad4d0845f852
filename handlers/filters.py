"""Magic filters (`F....`) evaluated in the event loop instead of a worker thread.

aiogram calls every filter that is not a coroutine function through `asyncio.to_thread`,
and a magic filter is a plain callable: a private text message met about ten of them on
its way to the chat handler, ten thread round trips (about 2 ms of latency per message and
a visible share of the bot's CPU). `Magic(F...)` is aiogram's public `Filter` (a
coroutine) around the same `resolve(event)`, so what passes and what a filter returns
(including `.as_(...)` values) is exactly what the bare magic filter would give.
"""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import TelegramObject
from magic_filter import MagicFilter


class Magic(Filter):
    __slots__ = ("_magic",)

    def __init__(self, magic: MagicFilter) -> None:
        self._magic = magic

    async def __call__(self, event: TelegramObject) -> Any:
        return self._magic.resolve(event)

    def __str__(self) -> str:
        return f"Magic({self._magic!r})"
