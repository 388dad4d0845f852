"""The fake Bot API server's webhook mode, driven by a real aiogram Bot and a tiny receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramConflictError
from aiohttp import web

from tests.fakes.telegram_server import SECRET_HEADER, FakeTelegram


class Receiver:
    """A webhook endpoint on loopback that records what it got and answers `status` (after
    `delay` seconds, counting the requests it holds at once)."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, Any], str | None]] = []
        self.status = 200
        self.delay = 0.0
        self.holding = 0
        self.most_held = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            self.got.append((await request.json(), request.headers.get(SECRET_HEADER)))
            self.holding += 1
            self.most_held = max(self.most_held, self.holding)
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.holding -= 1
            return web.Response(status=self.status)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram(allow_loopback_webhook=True)
    server.webhook_retry_delay = 0.01
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    client = Bot(fake.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.url)))
    yield client
    await client.session.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


async def test_updates_are_posted_with_the_secret_and_polling_conflicts(
    fake: FakeTelegram, bot: Bot, receiver: Receiver
) -> None:
    assert await bot.set_webhook(receiver.url, secret_token="s3cret_-X")
    info = await bot.get_webhook_info()
    assert info.url == receiver.url
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates()
    update = fake.send_message(5, "hi")
    await fake.wait_for_deliveries(lambda d: d.ok)
    assert receiver.got == [(update, "s3cret_-X")]
    assert (await bot.get_webhook_info()).pending_update_count == 0


async def test_a_refused_delivery_is_retried_and_reported(
    fake: FakeTelegram, bot: Bot, receiver: Receiver
) -> None:
    await bot.set_webhook(receiver.url)
    receiver.status = 503
    update = fake.send_message(5, "hi")
    await fake.wait_for_deliveries(lambda d: not d.ok, count=2)
    info = await bot.get_webhook_info()
    assert info.pending_update_count == 1
    assert info.last_error_message is not None and "503" in info.last_error_message
    receiver.status = 200
    await fake.wait_for_deliveries(lambda d: d.ok)
    assert receiver.got[-1] == (update, None)


async def test_delete_webhook_returns_updates_to_polling(
    fake: FakeTelegram, bot: Bot, receiver: Receiver
) -> None:
    receiver.status = 500
    await bot.set_webhook(receiver.url)
    update = fake.send_message(5, "hi")
    await fake.wait_for_deliveries()
    await bot.delete_webhook()
    assert (await bot.get_webhook_info()).url == ""
    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [update["update_id"]]


async def test_webhook_urls_are_checked_like_telegram(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="HTTPS URL must be provided"):
        await bot.set_webhook("http://example.com/hook")
    with pytest.raises(TelegramBadRequest, match="ports 80, 88, 443 or 8443"):
        await bot.set_webhook("https://example.com:8080/hook")
    with pytest.raises(TelegramBadRequest, match="unallowed characters"):
        await bot.set_webhook("https://example.com/hook", secret_token="no spaces")
    fake.allow_loopback_webhook = False
    with pytest.raises(TelegramBadRequest, match="HTTPS URL must be provided"):
        await bot.set_webhook("http://127.0.0.1:8080/hook")
    assert await bot.set_webhook("https://example.com:8443/hook")
    assert fake.webhook_url == "https://example.com:8443/hook"


async def test_chats_are_delivered_side_by_side_and_each_chat_in_order(
    fake: FakeTelegram, bot: Bot, receiver: Receiver
) -> None:
    # As the Bot API server: up to max_connections at once, one at a time per chat.
    await bot.set_webhook(receiver.url, max_connections=3)
    receiver.delay = 0.05
    sent = [fake.send_message(chat, f"{chat}-{n}") for n in range(3) for chat in (1, 2, 3, 4)]
    await fake.wait_for_deliveries(lambda d: d.ok, count=len(sent), timeout=10)
    assert receiver.most_held == 3  # three chats at once, never more than max_connections
    for chat in (1, 2, 3, 4):
        texts = [
            u["message"]["text"] for u, _ in receiver.got if u["message"]["chat"]["id"] == chat
        ]
        assert texts == [f"{chat}-{n}" for n in range(3)]  # each chat's in order
    assert (await bot.get_webhook_info()).pending_update_count == 0


async def test_a_refused_update_holds_back_its_chat_only(
    fake: FakeTelegram, bot: Bot, receiver: Receiver
) -> None:
    await bot.set_webhook(receiver.url)
    receiver.status = 503
    first = fake.send_message(1, "first")
    await fake.wait_for_deliveries(lambda d: not d.ok)
    fake.send_message(1, "second")  # waits behind the refused one
    receiver.status = 200
    fake.send_message(2, "other chat")
    await fake.wait_for_deliveries(lambda d: d.ok, count=3, timeout=10)
    texts = [u["message"]["text"] for u, _ in receiver.got]
    # "second" went only once "first" was taken; the other chat did not wait for either.
    last_first = len(texts) - 1 - texts[::-1].index("first")
    assert texts.index("second") > last_first
    assert texts.count("second") == texts.count("other chat") == 1
    assert first["update_id"] == receiver.got[last_first][0]["update_id"]
