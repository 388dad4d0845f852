"""Magic filters run in the event loop (not in a worker thread) and decide exactly as bare
magic filters do."""

from __future__ import annotations

import threading
from typing import Any

from aiogram import F, Router
from aiogram.types import Message

from handlers import get_routers
from handlers.filters import Magic


def message(text: str | None, chat_type: str = "private") -> Message:
    data: dict[str, Any] = {
        "message_id": 1,
        "date": 0,
        "chat": {"id": 5, "type": chat_type},
        "from": {"id": 5, "is_bot": False, "first_name": "U"},
    }
    if text is not None:
        data["text"] = text
    return Message.model_validate(data)


def test_no_filter_of_the_bot_is_left_to_a_thread() -> None:
    # aiogram runs a filter that is not a coroutine through asyncio.to_thread.
    for router in get_routers():
        for each in router.chain_tail:
            for observer in each.observers.values():
                observer_filters = observer._handler.filters or []
                for handler in observer.handlers:
                    for event_filter in [*observer_filters, *(handler.filters or ())]:
                        assert event_filter.awaitable, (router.name, event_filter.callback)


async def test_magic_filters_decide_and_return_as_bare_ones() -> None:
    router = Router()
    seen_threads: list[str] = []

    async def handler(message: Message) -> None:  # pragma: no cover - only registered
        pass

    def spy(value: Any) -> bool:
        seen_threads.append(threading.current_thread().name)
        return True

    router.message.register(
        handler,
        Magic(F.chat.type == "private"),
        Magic(F.text),
        Magic(~F.text.startswith("/")),
        Magic(F.text.as_("question")),
        Magic(F.func(spy)),
    )
    check = router.message.handlers[0].check

    passed, data = await check(message("hello"))
    assert passed and data["question"] == "hello"
    assert seen_threads == [threading.main_thread().name]

    assert not (await check(message("/start")))[0]
    assert not (await check(message(None)))[0]
    assert not (await check(message("hello", chat_type="group")))[0]
