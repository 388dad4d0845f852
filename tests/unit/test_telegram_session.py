"""The Telegram session: JSON bodies, multipart only for uploads, response types kept alive."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.telegram import TelegramAPIServer
from aiogram.methods import Response, SendMessage
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiohttp import web

from bot.telegram_session import TelegramSession

TOKEN = "42:TEST"
MESSAGE = {"message_id": 7, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "hi"}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            body: Any = await request.json()
        elif request.content_type == "multipart/form-data":
            body = {}
            async for part in await request.multipart():
                body[part.name] = await part.read()  # type: ignore[union-attr]
        else:
            body = dict(await request.post())
        self.calls.append((method, request.content_type, body))
        result: Any = True if method == "sendChatAction" else MESSAGE
        return web.json_response({"ok": True, "result": result})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Recorder, Bot]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    session = TelegramSession(api=TelegramAPIServer.from_base(f"http://127.0.0.1:{port}"))
    bot = Bot(TOKEN, session=session)
    try:
        yield recorder, bot
    finally:
        await session.close()
        await runner.cleanup()


async def test_calls_without_files_go_out_as_one_json_body(
    served: tuple[Recorder, Bot],
) -> None:
    recorder, bot = served
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Stop", callback_data="stop:1")]]
    )
    message = await bot.send_message(5, "hi", reply_markup=keyboard, disable_notification=False)
    assert isinstance(message, Message) and message.message_id == 7
    method, content_type, body = recorder.calls[-1]
    assert (method, content_type) == ("sendMessage", "application/json")
    # Nested objects are JSON, not JSON strings inside a form; what the stock form drops
    # (None and False values) is not sent either.
    assert body == {
        "chat_id": 5,
        "text": "hi",
        "reply_markup": {
            "inline_keyboard": [[{"text": "Stop", "callback_data": "stop:1"}]],
        },
    }


async def test_uploads_still_go_out_as_multipart(served: tuple[Recorder, Bot]) -> None:
    recorder, bot = served
    await bot.send_document(5, BufferedInputFile(b"%PDF-1.4", filename="a.pdf"), caption="c")
    method, content_type, body = recorder.calls[-1]
    assert (method, content_type) == ("sendDocument", "multipart/form-data")
    assert b"%PDF-1.4" in body.values()
    assert body["caption"] == b"c"
    assert json.loads(body["chat_id"]) == 5


async def test_response_types_survive_garbage_collection(served: tuple[Recorder, Bot]) -> None:
    recorder, bot = served
    session = bot.session
    assert isinstance(session, TelegramSession)
    await bot.send_message(5, "hi")
    await bot.send_chat_action(5, "typing")
    assert session.kept_response_types == 2
    # pydantic's cache of parametrised models is weak: without the session's reference
    # the class would be collected and rebuilt from its schema on the next call.
    alive = weakref.ref(Response[SendMessage.__returning__])  # type: ignore[name-defined]
    gc.collect()
    assert alive() is not None
    assert len(recorder.calls) == 2
