"""The Telegram session: aiogram's aiohttp session, JSON bodies, multipart only for uploads,
response types kept alive, downloads that leave calls in flight alone, proxies."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import ClientDecodeError, TelegramNetworkError, TelegramServerError
from aiogram.methods import Response, SendMessage
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiohttp import web

from bot.telegram_session import TelegramSession, resolve_proxy, safe_description

TOKEN = "42:TEST"
MESSAGE = {"message_id": 7, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "hi"}
SAFE = 5.0  # a wait that must not happen: fail instead of hanging


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.peers: list[Any] = []  # the client's (host, port) per call: one per connection
        self.hold: asyncio.Event | None = None  # when set, calls are answered once it is set
        self.status = 200
        self.raw: str | None = None  # a body other than the Bot API's JSON
        self.expected = 0  # `arrived` is set once this many calls came in
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername"))
        if len(self.peers) >= self.expected:
            self.arrived.set()
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
        if self.raw is not None:
            return web.Response(text=self.raw, status=self.status, content_type="text/html")
        result: Any = True if method == "sendChatAction" else MESSAGE
        return web.json_response({"ok": True, "result": result})

    async def download(self, request: web.Request) -> web.Response:
        return web.Response(body=b"file-bytes")


@pytest.fixture
async def served() -> AsyncIterator[tuple[Recorder, Bot]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_post("/bot{token}/{method}", recorder.handle)
    app.router.add_get("/file/bot{token}/{path:.+}", recorder.download)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    session = TelegramSession(api=TelegramAPIServer.from_base(f"http://127.0.0.1:{port}"))
    bot = Bot(TOKEN, session=session)
    try:
        yield recorder, bot
    finally:
        if recorder.hold is not None:
            recorder.hold.set()
        await session.close()
        await runner.cleanup()


def test_it_is_aiogram_s_own_session() -> None:
    assert issubclass(TelegramSession, AiohttpSession)


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
    # Nested objects are JSON, not JSON strings inside a form; None values are not sent,
    # while False is sent as the stock form sends it.
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


async def test_a_download_leaves_calls_in_flight_alone(served: tuple[Recorder, Bot]) -> None:
    # The first download after start-up used to close the connection pool under every call
    # in flight (the session's close() on aiohttp's first create_session()).
    recorder, bot = served
    recorder.hold = asyncio.Event()
    recorder.expected = 10
    calls = [asyncio.create_task(bot.send_message(5, f"m{i}")) for i in range(10)]
    url = bot.session.api.file_url(TOKEN, "voice/a.oga")
    async with asyncio.timeout(SAFE):
        await recorder.arrived.wait()
        chunks = [chunk async for chunk in bot.session.stream_content(url)]
    assert b"".join(chunks) == b"file-bytes"
    recorder.hold.set()
    async with asyncio.timeout(SAFE):
        sent = await asyncio.gather(*calls)
    assert [m.message_id for m in sent] == [7] * 10


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
    assert "ClientConnectorError" in str(error)
    assert "SeCrEt" not in str(error) and "SeCrEt" not in repr(error)


def test_safe_description_never_shows_the_token() -> None:
    error = ValueError("bad URL http://h/bot4242:SeCrEt/sendMessage")
    assert (
        safe_description(error, "4242:SeCrEt")
        == "ValueError: bad URL http://h/bot<token>/sendMessage"
    )


async def test_timeout_maps_to_request_timeout_error(served: tuple[Recorder, Bot]) -> None:
    recorder, bot = served
    recorder.hold = asyncio.Event()
    bot.session.timeout = 0.1
    async with asyncio.timeout(SAFE):
        with pytest.raises(TelegramNetworkError, match="Request timeout error"):
            await bot.send_message(5, "hi")


@pytest.mark.parametrize("status", [502, 503])
async def test_a_5xx_page_that_is_not_json_is_a_server_error(
    served: tuple[Recorder, Bot], status: int
) -> None:
    recorder, bot = served
    recorder.status, recorder.raw = status, "<html>Bad Gateway</html>"
    with pytest.raises(TelegramServerError, match=str(status)):
        await bot.send_message(5, "hi")


async def test_a_200_that_is_not_json_stays_a_decode_error(served: tuple[Recorder, Bot]) -> None:
    recorder, bot = served
    recorder.raw = "<html>login page</html>"
    with pytest.raises(ClientDecodeError):
        await bot.send_message(5, "hi")


async def test_calls_reuse_one_keep_alive_connection(served: tuple[Recorder, Bot]) -> None:
    recorder, bot = served
    await bot.send_message(5, "one")
    await bot.send_chat_action(5, "typing")
    await bot.send_message(5, "two")
    assert len(set(recorder.peers)) == 1
    assert [call[0] for call in recorder.calls] == ["sendMessage", "sendChatAction", "sendMessage"]


async def test_session_can_be_used_again_after_close(served: tuple[Recorder, Bot]) -> None:
    recorder, bot = served
    await bot.send_message(5, "before")
    await bot.session.close()
    message = await bot.send_message(5, "after")
    assert message.message_id == 7
    await bot.send_document(5, BufferedInputFile(b"data", filename="a.txt"))
    assert [call[2].get("text") for call in recorder.calls[:2]] == ["before", "after"]
    assert recorder.calls[2][:2] == ("sendDocument", "multipart/form-data")


def test_socks_proxies_go_to_aiogram_s_connector() -> None:
    session = TelegramSession(proxy="socks5h://u:p@127.0.0.1:1080")
    assert session.proxy == "socks5://u:p@127.0.0.1:1080"
    assert TelegramSession(proxy="http://127.0.0.1:3128").proxy is None  # per request


def test_configured_proxy_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://env:1")
    assert resolve_proxy("socks5://cfg:2", "https://api.telegram.org") == "socks5://cfg:2"


def test_environment_proxy_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert resolve_proxy(None, "https://api.telegram.org") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://env:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://plain:3128")
    assert resolve_proxy(None, "https://api.telegram.org") == "http://env:3128"
    assert resolve_proxy(None, "http://127.0.0.1:8081") == "http://plain:3128"
    monkeypatch.setenv("NO_PROXY", "api.telegram.org,localhost")
    assert resolve_proxy(None, "https://api.telegram.org") is None
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("ALL_PROXY", "socks5://all:1080")
    assert resolve_proxy(None, "https://api.telegram.org") == "socks5://all:1080"


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


async def test_calls_beyond_the_connections_wait_before_aiohttp_builds_a_request(
    served: tuple[Recorder, Bot], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A burst of answers waits as coroutines, not as thousands of aiohttp request objects
    # (headers, body, URL, timers each) queued for a connection: scenario 1 of the
    # benchmarks peaked at 377 MB that way, 243 MB with the wait in front.
    recorder, bot = served
    session = bot.session
    assert isinstance(session, TelegramSession)
    session._in_flight = asyncio.Semaphore(2)  # the session's `limit`, made small
    client = await session.create_session()
    inside = peak = 0
    post = client.post

    def counting_post(*args: Any, **kwargs: Any) -> Any:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        request = post(*args, **kwargs)

        class Counted:
            async def __aenter__(self) -> Any:
                return await request.__aenter__()

            async def __aexit__(self, *exc: Any) -> None:
                nonlocal inside
                inside -= 1
                await request.__aexit__(*exc)

        return Counted()

    monkeypatch.setattr(client, "post", counting_post)
    recorder.hold, recorder.expected = asyncio.Event(), 2
    calls = [asyncio.create_task(bot.send_message(5, f"m{i}")) for i in range(10)]
    await asyncio.wait_for(recorder.arrived.wait(), SAFE)
    await asyncio.sleep(0.05)
    assert inside == 2
    recorder.hold.set()
    await asyncio.wait_for(asyncio.gather(*calls), SAFE)
    assert peak == 2 and len(recorder.calls) == 10
