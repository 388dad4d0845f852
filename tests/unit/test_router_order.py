"""The order of the routers: questions first, the commands behind one filter."""

from __future__ import annotations

from typing import Any

from aiogram.types import Message

from handlers import LooksLikeCommand, get_routers


def message(text: str | None = None, caption: str | None = None) -> Message:
    data: dict[str, Any] = {
        "message_id": 1,
        "date": 0,
        "chat": {"id": 5, "type": "private"},
        "from": {"id": 5, "is_bot": False, "first_name": "U"},
    }
    if text is not None:
        data["text"] = text
    if caption is not None:
        data["caption"] = caption
        data["photo"] = [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
    return Message.model_validate(data)


async def test_only_text_or_captions_starting_with_a_slash_look_like_commands() -> None:
    looks = LooksLikeCommand()
    assert await looks(message("/start"))
    assert await looks(message(caption="/video a cat"))
    assert not await looks(message("hello /start"))
    assert not await looks(message(caption="a photo"))
    assert not await looks(message(caption=None, text=None))


async def test_questions_come_first_and_every_command_router_sits_behind_the_filter() -> None:
    routers = get_routers()
    assert [r.name for r in routers] == [
        "handlers.chat",
        "commands",
        "handlers.settings.form",
        "handlers.admin.form",
        "handlers.media",
        "handlers.chat.fallback",
        "handlers.membership",
        "handlers.errors",
    ]
    commands = routers[1]
    passed, _ = await commands.message.check_root_filters(message("a question"))
    assert not passed  # a question skips all the command routers at once
    passed, _ = await commands.message.check_root_filters(message("/model"))
    assert passed
    command_routers = [r.name for r in commands.sub_routers]
    assert "handlers.start" in command_routers and "handlers.settings" in command_routers
    assert "handlers.admin" in command_routers
