"""The Telegram session: JSON bodies, multipart only for uploads, response types kept alive."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiogram import Bot
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import Response, SendMessage
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiohttp import web

from bot.telegram_session import TelegramSession
from tests.fakes.raw_http import SAFE, closed_port

TOKEN = "42:TEST"
MESSAGE = {"message_id": 7, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "hi"}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.peers: list[Any] = []  # the client's (host, port) per call: one per connection
        self.hold: asyncio.Event | None = None  # when set, calls are answered once it is set

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.headers.append(dict(request.headers))
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername"))
        if self.hold is not None:
            await self.hold.wait()
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
    # (None values) is not sent either, while False is sent as the stock form sends it.
    assert body == {
        "chat_id": 5,
        "text": "hi",
        "disable_notification": False,
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


async def test_server_down_raises_network_error_without_the_token() -> None:
    token = "4242:SeCrEt-ToKeN_abc"
    api = TelegramAPIServer.from_base(f"http://127.0.0.1:{closed_port()}")
    session = TelegramSession(api=api)
    bot = Bot(token, session=session)
    try:
        with pytest.raises(TelegramNetworkError) as caught:
            await bot.send_message(5, "hi")
    finally:
        await session.close()
    error = caught.value
    assert "ConnectError" in str(error)
    for text in (str(error), repr(error), str(error.__cause__)):
        assert "SeCrEt" not in text


async def test_timeout_maps_to_request_timeout_error(served: tuple[Recorder, Bot]) -> None:
    recorder, bot = served
    recorder.hold = asyncio.Event()
    bot.session.timeout = 0.1
    try:
        async with asyncio.timeout(SAFE):
            with pytest.raises(TelegramNetworkError, match="Request timeout error"):
                await bot.send_message(5, "hi")
    finally:
        recorder.hold.set()


async def test_calls_reuse_one_keep_alive_connection(served: tuple[Recorder, Bot]) -> None:
    recorder, bot = served
    session = bot.session
    assert isinstance(session, TelegramSession)
    await bot.send_message(5, "one")
    await bot.send_chat_action(5, "typing")
    await bot.send_message(5, "two")
    assert session.pool.connections == 1
    assert len(set(recorder.peers)) == 1
    assert [call[0] for call in recorder.calls] == ["sendMessage", "sendChatAction", "sendMessage"]


async def test_session_can_be_used_again_after_close(served: tuple[Recorder, Bot]) -> None:
    recorder, bot = served
    session = bot.session
    assert isinstance(session, TelegramSession)
    await bot.send_message(5, "before")
    old_pool = session.pool
    await session.close()
    assert old_pool.connections == 0
    assert session.pool is not old_pool
    message = await bot.send_message(5, "after")
    assert message.message_id == 7
    await bot.send_document(5, BufferedInputFile(b"data", filename="a.txt"))  # aiohttp again
    assert [call[2].get("text") for call in recorder.calls[:2]] == ["before", "after"]
    assert recorder.calls[2][:2] == ("sendDocument", "multipart/form-data")


def test_a_proxy_is_refused() -> None:
    with pytest.raises(ValueError, match="prox"):
        TelegramSession(proxy="http://127.0.0.1:1")


async def test_request_has_json_content_type_and_host_with_port(
    served: tuple[Recorder, Bot],
) -> None:
    recorder, bot = served
    await bot.send_message(5, "hi")
    [headers] = recorder.headers
    assert headers["Content-Type"] == "application/json"
    port = urlsplit(bot.session.api.base).port
    assert headers["Host"] == f"127.0.0.1:{port}"


async def test_false_and_zero_values_are_sent_like_the_stock_form(
    served: tuple[Recorder, Bot],
) -> None:
    recorder, bot = served
    await bot.send_poll(
        5, "2 + 2?", ["4", "5"], type="quiz", is_anonymous=False, correct_option_id=0
    )
    method, _, body = recorder.calls[-1]
    assert method == "sendPoll"
    # Telegram's defaults: is_anonymous True (the poll would become anonymous); a quiz
    # without correct_option_id is refused.
    assert body["is_anonymous"] is False
    assert body["correct_option_id"] == 0
