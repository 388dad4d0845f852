"""Button presses: every callback query is answered; forged or stale ones get a short
"This button has expired" toast, never a traceback or "Something went wrong"; a page
button that would not change the menu does nothing visible."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from tests.e2e.conftest import Bench
from tests.fakes.telegram_server import Call

USER = 7301
EXPIRED = "This button has expired."


async def press(bench: Bench, message: dict[str, Any], data: str, **kwargs: Any) -> Call:
    """Press a button and return the bot's answer to that query."""
    query_id = bench.telegram.press_button(USER, message, data, **kwargs)["callback_query"]["id"]
    answers = await bench.telegram.wait_for(
        "answerCallbackQuery", lambda c: c.params.get("callback_query_id") == query_id
    )
    return answers[0]


async def open_menu(bench: Bench, command: str) -> dict[str, Any]:
    bench.telegram.send_message(USER, command)
    await bench.telegram.wait_for(
        "sendMessage", lambda c: c.ok and c.chat_id == USER and "reply_markup" in c.params
    )
    return bench.telegram.sent_messages(USER)[-1]


def bot_trouble(records: list[logging.LogRecord]) -> list[str]:
    """Log lines above DEBUG from the bot's own code and aiogram's middlewares."""
    ours = ("handlers", "services", "bot", "aiogram.middlewares")
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno > logging.DEBUG and r.name.startswith(ours)
    ]


def stray_messages(bench: Bench) -> list[Call]:
    """Anything sent to the chat besides the menu itself (e.g. "Something went wrong")."""
    return bench.telegram.calls_of("sendMessage", chat_id=USER)[1:]


@pytest.mark.parametrize(
    "data",
    [
        "nonsense-3f9a",  # no such prefix
        "stop:123456",  # a Stop for a reply that does not exist
        "stop:not-a-number",  # a known prefix with a broken payload
        "mp:0:99:7301",  # a model page beyond the list (menus end with their owner)
        "mp:0:-1:7301",
        "mp:5:0:7301",  # a provider the bot does not have
        "mv:5:7301",
        "st:no-such-action:7301",
        "tmp:990:7301",  # a temperature no button offers
        "vo:robot:7301",  # a voice no button offers
        "rm:loud:7301",
        "mm:audio:abc:7301",
        "mm:image:0000000000:7301",  # a model that is no longer in the list
        "lang:de:7301",  # a language the bot does not speak
    ],
)
async def test_forged_callbacks_get_the_expired_toast(
    bench: Bench, caplog: pytest.LogCaptureFixture, data: str
) -> None:
    caplog.set_level(logging.DEBUG)
    menu = await open_menu(bench, "/model")
    answer = await press(bench, menu, data)
    assert answer.ok
    assert answer.params.get("text") == EXPIRED
    assert not bench.telegram.calls_of("editMessageText")
    assert not stray_messages(bench)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_expired_toast_is_in_the_users_language(bench: Bench) -> None:
    menu = await open_menu(bench, "/model")
    bench.telegram.reset()  # forget the English-speaking user: this one speaks Russian
    answer = await press(bench, menu, "garbage", language_code="ru")
    assert answer.params.get("text") == "Эта кнопка устарела."


async def test_button_under_a_vanished_message_expires(bench: Bench) -> None:
    gone = {
        "message_id": 424242,
        "date": int(time.time()),
        "chat": {"id": USER, "type": "private", "first_name": "U"},
        "text": "an old settings menu",
    }
    answer = await press(bench, gone, "st:back:7301")
    assert answer.params.get("text") == EXPIRED
    # An inaccessible message (older than 48 hours) cannot be edited at all.
    old = {"message_id": 7, "date": 0, "chat": {"id": USER, "type": "private"}}
    answer = await press(bench, old, "st:back:7301")
    assert answer.params.get("text") == EXPIRED
    assert not bench.telegram.calls_of("sendMessage", chat_id=USER)


async def test_page_button_that_changes_nothing_does_nothing_visible(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    base = bench.upstream.models[0]
    bench.upstream.models = bench.upstream.models + [
        {**base, "id": f"test/extra-{n:02d}", "name": f"Extra {n}"} for n in range(20)
    ]
    menu = await open_menu(bench, "/model")
    nav = menu["reply_markup"]["inline_keyboard"][-1]
    assert [b["text"] for b in nav] == ["1/3", "»"]
    caplog.set_level(logging.DEBUG)
    answer = await press(bench, menu, nav[0]["callback_data"])  # the page on screen
    assert answer.ok and not answer.params.get("text")
    assert not bench.telegram.calls_of("editMessageText")
    assert not bot_trouble(caplog.records)
    # The next page does change the menu.
    answer = await press(bench, menu, nav[1]["callback_data"])
    edit = await bench.telegram.wait_for("editMessageText")
    assert "Page 2/3" in edit[0].params["text"]
    assert not bot_trouble(caplog.records)


async def test_every_press_is_answered_once(bench: Bench) -> None:
    menu = await open_menu(bench, "/settings")
    buttons = [b for row in menu["reply_markup"]["inline_keyboard"] for b in row]
    temperature = next(b for b in buttons if "emperature" in b["text"])
    await press(bench, menu, temperature["callback_data"])
    picker = bench.telegram.sent_messages(USER)[-1]
    choice = picker["reply_markup"]["inline_keyboard"][0][2]
    answer = await press(bench, picker, choice["callback_data"])
    assert "Temperature" in answer.params["text"]
    answers = bench.telegram.calls_of("answerCallbackQuery")
    assert len(answers) == 2
    assert all(a.ok for a in answers)
