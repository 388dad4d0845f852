"""The end-to-end bench: the real bot, built by the production factory, against a
fake Telegram Bot API server and a fake upstream, both on loopback.

The fake servers are shared by the whole session (reset between tests); each test
gets a fresh bot with its own SQLite database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.factory import App, build_app
from bot.settings import Settings, load_settings
from tests.fakes.telegram_server import Call, FakeTelegram
from tests.fakes.upstream_server import FakeUpstream

ADMIN_ID = 999


@pytest.fixture(scope="session")
async def telegram() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="session")
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()


def bench_settings(
    telegram: FakeTelegram, upstream: FakeUpstream, db: Path, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "bot_token": telegram.token,
        "telegram_api_url": telegram.url,
        "llm_base_url": upstream.url,
        "llm_api_key": upstream.api_key,
        "database_url": f"sqlite:///{db}",
        "admin_ids": str(ADMIN_ID),
        "llm_rps": 0,
        "polling_timeout": 1,
        "draft_interval_seconds": 0.05,
        "edit_interval_seconds": 0.1,
        "breaker_cooldown_seconds": 60,
        "shutdown_grace_seconds": 1,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


@dataclass
class Bench:
    telegram: FakeTelegram
    upstream: FakeUpstream
    db: Path
    app: App | None = None
    task: asyncio.Task[None] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    async def start(self, **overrides: Any) -> App:
        self.overrides.update(overrides)
        settings = bench_settings(self.telegram, self.upstream, self.db, **self.overrides)
        self.app = build_app(settings)
        # Marks how far the call log went before this bot started.
        seen = len(self.telegram.calls_of("getUpdates"))
        self.task = asyncio.create_task(self.app.run_polling(handle_signals=False))
        await self.telegram.wait_for("getUpdates", count=seen + 1, timeout=10)
        return self.app

    async def stop(self) -> None:
        if self.app is not None and self.task is not None:
            await self.app.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 10)
        self.app = None
        self.task = None

    async def restart(self, **overrides: Any) -> App:
        await self.stop()
        return await self.start(**overrides)

    # --- conversations as a user sees them ---------------------------------------
    def finals(self, chat_id: int) -> list[Call]:
        """Messages delivered to the chat: accepted rich and classic sends (not drafts)."""
        calls = self.telegram.calls_of("sendRichMessage", "sendMessage", chat_id=chat_id)
        return [c for c in calls if c.ok]

    async def ask(self, user_id: int, text: str, *, timeout: float = 10, **kwargs: Any) -> Call:  # noqa: ASYNC109
        """Send a private message and return the bot's first new final message."""
        before = len(self.finals(kwargs.get("chat_id") or user_id))
        self.telegram.send_message(user_id, text, **kwargs)
        calls = await self.telegram.wait_for(
            ("sendRichMessage", "sendMessage"),
            lambda c: c.ok and c.chat_id == (kwargs.get("chat_id") or user_id),
            count=before + 1,
            timeout=timeout,
        )
        return calls[before]


def text_of(call: Call) -> str:
    """The visible content of a sent message: rich Markdown or classic text."""
    rich = call.params.get("rich_message")
    if isinstance(rich, dict):
        return rich.get("markdown") or rich.get("html") or ""
    return str(call.params.get("text", ""))


def chat_of(call: Call) -> int:
    return int(call.params["chat_id"])


@pytest.fixture
async def bench(
    telegram: FakeTelegram, upstream: FakeUpstream, tmp_path: Path
) -> AsyncIterator[Bench]:
    telegram.reset()
    upstream.reset()
    b = Bench(telegram, upstream, tmp_path / "bot.db")
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


@pytest.fixture
async def fast_retries(bench: Bench) -> Bench:
    """The bench with Telegram's delivery retries milliseconds apart and per-chat pacing
    out of the way, for tests that use every retry up (`pytest.mark.usefixtures`)."""
    await bench.restart(telegram_retry_delay_seconds=0.01, telegram_chat_rps=30)
    return bench


async def open_persona_form(bench: Bench, user: int) -> Call:
    """/settings, then its persona button: the bot now waits for a persona. Returns the menu."""
    bench.telegram.send_message(user, "/settings")
    menu = (await bench.telegram.wait_for("sendMessage", lambda c: "reply_markup" in c.params))[0]
    persona_button = menu.params["reply_markup"]["inline_keyboard"][0][0]
    bench.telegram.press_button(
        user, bench.telegram.sent_messages(user)[-1], persona_button["callback_data"]
    )
    await bench.telegram.wait_for("editMessageText")
    return menu


@contextlib.asynccontextmanager
async def sharing_redis(bench: Bench, **overrides: Any) -> AsyncIterator[Bench]:
    """The bench's bot restarted with the test Redis (REDIS_URL) and `overrides`; stopped, and
    its keys (`llmbot:<bot id>:*`) deleted, afterwards."""
    from tests.fakes.bot_subprocess import forget_redis_keys
    from tests.services import redis_url

    url = redis_url()
    await bench.restart(redis_url=url, **overrides)
    try:
        yield bench
    finally:
        await bench.stop()
        await forget_redis_keys(url, int(bench.telegram.token.split(":")[0]))
