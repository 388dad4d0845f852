"""Webhook mode end to end: the real bot serving its own webhook on a loopback port, the fake
Telegram POSTing updates to it with the secret header; each update in the journal before
Telegram gets its 200; /healthz, /readyz and /metrics on the webhook server and, in polling
mode, on HEALTH_PORT; JSON log lines."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.factory import App, build_app
from bot.logging_setup import RedactSecrets, json_formatter
from tests.e2e.conftest import Bench, bench_settings, text_of
from tests.fakes.telegram_server import SECRET_HEADER, FakeTelegram
from tests.fakes.upstream_server import MODELS_PATH, FakeUpstream

SECRET = "webhook-secret_0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebhookBench(Bench):
    """The bench with the bot in webhook mode on its own loopback port."""

    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hook_url(self) -> str:
        return f"{self.base}/telegram/webhook"

    async def start(self, **overrides: Any) -> App:
        self.port = free_port()
        self.overrides.update(
            webhook_url=self.hook_url,
            webhook_secret=SECRET,
            webhook_host="127.0.0.1",
            webhook_port=self.port,
        )
        self.overrides.update(overrides)
        settings = bench_settings(self.telegram, self.upstream, self.db, **self.overrides)
        self.app = build_app(settings)
        seen = len(self.telegram.calls_of("setWebhook"))
        self.task = asyncio.create_task(self.app.run(handle_signals=False))
        await self.telegram.wait_for("setWebhook", count=seen + 1, timeout=10)
        return self.app


@pytest.fixture
async def hook(
    telegram: FakeTelegram, upstream: FakeUpstream, tmp_path: Path
) -> AsyncIterator[WebhookBench]:
    telegram.reset()
    upstream.reset()
    telegram.allow_loopback_webhook = True
    b = WebhookBench(telegram, upstream, tmp_path / "bot.db")
    await b.start()
    try:
        yield b
    finally:
        await b.stop()
        telegram.allow_loopback_webhook = False
        telegram.reset()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


async def post_update(url: str, update: dict[str, Any], secret: str | None) -> int:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    async with aiohttp.ClientSession() as http, http.post(url, json=update, headers=headers) as r:
        return r.status


async def post_body(url: str, body: str, secret: str) -> int:
    headers = {SECRET_HEADER: secret, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status


def journal_row(bench: Bench, update_id: int) -> tuple[str | None, float | None] | None:
    """(payload, finished_at) of the update's journal row, None without one."""
    with sqlite3.connect(bench.db) as conn:
        row = conn.execute(
            "SELECT payload, finished_at FROM update_journal WHERE update_id = ?", (update_id,)
        ).fetchone()
    return None if row is None else (row[0], row[1])


def metric(text: str, name: str) -> float:
    """The value of one sample line (`name` with its labels) of the Prometheus text page."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_webhook_registered_and_question_answered(hook: WebhookBench) -> None:
    call = hook.telegram.calls_of("setWebhook")[-1]
    assert call.params["url"] == hook.hook_url
    assert call.params["secret_token"] == SECRET
    assert "message" in call.params["allowed_updates"]
    assert "stopped_message_generation" in call.params["allowed_updates"]
    assert call.params.get("drop_pending_updates") in (None, False, "false")

    # Webhook mode neither polls nor deletes the webhook. (A long poll of the previous test's
    # bot may still end in the fake after this bot started: only calls received since count.)
    def since_registered(*methods: str) -> list[Any]:
        return [c for c in hook.telegram.calls_of(*methods) if c.at >= call.at]

    assert not since_registered("getUpdates", "deleteWebhook")

    answer = await hook.ask(101, "Hello")
    assert answer.ok
    deliveries = hook.telegram.webhook_deliveries
    assert deliveries and all(d.ok for d in deliveries)
    assert not since_registered("getUpdates")


async def test_wrong_or_missing_secret_is_refused(hook: WebhookBench) -> None:
    update = {
        "update_id": 10_000,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 202, "type": "private"},
            "from": {"id": 202, "is_bot": False, "first_name": "Eve"},
            "text": "Hello",
        },
    }
    assert await post_update(hook.hook_url, update, "wrong-secret") == 401
    assert await post_update(hook.hook_url, update, None) == 401
    # A genuine delivery after them is handled; the forged ones never were.
    await hook.ask(203, "Hello")
    assert not hook.finals(202)
    assert not hook.telegram.calls_of(chat_id=202)
    _, page = await get(f"{hook.base}/metrics")
    assert metric(page, 'bot_updates_total{type="message"}') == 1


async def test_update_delivered_twice_is_answered_once(hook: WebhookBench) -> None:
    update = hook.telegram.send_message(301, "Hello")
    await hook.telegram.wait_for(("sendRichMessage", "sendMessage"), lambda c: c.chat_id == 301)
    # The same update once more, as Telegram does after a slow or lost answer.
    hook.telegram.deliver_again(update)
    await hook.telegram.wait_for_deliveries(
        lambda d: d.update_id == update["update_id"] and d.ok, count=2
    )
    # Another chat's question, answered after the duplicate was dealt with.
    await hook.ask(302, "Hello")
    assert len(hook.finals(301)) == 1
    assert len(hook.upstream.chat_requests()) == 2
    # The duplicate is counted, as in polling mode, though it is dropped before the dispatcher.
    _, page = await get(f"{hook.base}/metrics")
    assert metric(page, 'bot_updates_total{type="message"}') == 3


async def test_update_is_in_the_journal_before_telegram_gets_its_200(
    hook: WebhookBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill right after the 200 must not lose the update: the 200 waits for the journal's
    row (aiogram alone answers first and handles, journal included, in a task)."""
    assert hook.app is not None
    journal = hook.app.journal
    real_record = journal.record
    calls: list[int] = []
    entered = asyncio.Event()
    release = asyncio.Event()
    recorded_at: list[float] = []

    async def blocked_record(update_id: int, payload: str | None) -> bool:
        calls.append(update_id)
        entered.set()
        await release.wait()
        fresh = await real_record(update_id, payload)
        recorded_at.append(time.monotonic())
        return fresh

    monkeypatch.setattr(journal, "record", blocked_record)
    update = hook.telegram.send_message(801, "Hello")  # the fake POSTs it with the secret
    update_id = update["update_id"]

    def answered(d: Any) -> bool:
        return bool(d.update_id == update_id and d.ok)

    await asyncio.wait_for(entered.wait(), 5)
    # The journal write hangs: Telegram has no 200 yet (nor an answer, nor a row).
    await asyncio.sleep(0.3)
    assert not [d for d in hook.telegram.webhook_deliveries if d.update_id == update_id]
    assert journal_row(hook, update_id) is None
    assert not hook.finals(801)

    release.set()
    delivery = (await hook.telegram.wait_for_deliveries(answered))[0]
    assert recorded_at and recorded_at[0] <= delivery.at  # the row came first
    sent = await hook.telegram.wait_for(
        ("sendRichMessage", "sendMessage"), lambda c: c.ok and c.chat_id == 801
    )
    assert text_of(sent[0]) == "Echo: Hello"
    await hook.stop()  # the last writes are made by then

    # Recorded once (JournalMiddleware did not record it again), answered once, finished.
    assert calls == [update_id]
    assert len(hook.finals(801)) == 1
    assert len(hook.upstream.chat_requests()) == 1
    row = journal_row(hook, update_id)
    assert row is not None and row[1] is not None  # finished: not replayed at a restart
    assert [d.update_id for d in hook.telegram.webhook_deliveries].count(update_id) == 1


async def test_question_answered_when_the_journal_cannot_record_it(
    hook: WebhookBench, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The database is down: answered without the safety net rather than not at all."""
    assert hook.app is not None
    journal = hook.app.journal
    calls: list[int] = []

    async def failing_record(update_id: int, payload: str | None) -> bool:
        calls.append(update_id)
        raise ConnectionError("the database is down")

    monkeypatch.setattr(journal, "record", failing_record)
    with caplog.at_level(logging.INFO):
        answer = await hook.ask(901, "Hello")
        await hook.telegram.wait_for_deliveries(lambda d: d.ok)
    assert text_of(answer) == "Echo: Hello"
    assert len(hook.finals(901)) == 1
    assert all(d.ok for d in hook.telegram.webhook_deliveries)  # taken the first time
    # The webhook tried, then JournalMiddleware once more: one WARNING, no text, no secret.
    assert calls and len(calls) == 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in warnings] == ["bot.journal"]
    logged = caplog.text
    assert "Hello" not in logged and SECRET not in logged
    monkeypatch.undo()
    await hook.stop()
    assert journal_row(hook, calls[0]) is None


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        '{"update_id": "one"}',
        '{"message": {"text": "Hello secret text"}}',
    ],
)
async def test_body_that_is_not_an_update_is_taken_and_dropped(
    hook: WebhookBench, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Sent again, it would fail the same way for ever: 200, one WARNING, nothing handled.
    with caplog.at_level(logging.INFO):
        assert await post_body(hook.hook_url, body, SECRET) == 200
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].name == "bot.webhook"
    assert "secret text" not in caplog.text
    # The bot goes on; nothing of the bad body reached the dispatcher.
    await hook.ask(1001, "Hello")
    _, page = await get(f"{hook.base}/metrics")
    assert metric(page, 'bot_updates_total{type="message"}') == 1


async def test_health_ready_and_metrics(hook: WebhookBench) -> None:
    status, body = await get(f"{hook.base}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = await get(f"{hook.base}/readyz")
    assert status == 200, body
    _, before = await get(f"{hook.base}/metrics")
    assert metric(before, 'bot_answers_total{status="complete"}') == 0

    await hook.ask(401, "Hello")
    await hook.telegram.wait_for_deliveries(lambda d: d.ok)
    _, page = await get(f"{hook.base}/metrics")
    assert metric(page, 'bot_updates_total{type="message"}') == 1
    assert metric(page, 'bot_answers_total{status="complete"}') == 1
    assert metric(page, "bot_upstream_ttft_seconds_count") == 1
    assert metric(page, "bot_upstream_request_seconds_count") == 1
    assert "bot_llm_queue_length" in page
    assert "bot_active_streams 0.0" in page
    assert "bot_telegram_429_total 0.0" in page


async def test_readyz_names_a_failing_upstream(hook: WebhookBench) -> None:
    hook.upstream.fail_next(503, path=MODELS_PATH, times=10)
    status, body = await get(f"{hook.base}/readyz")
    assert status == 503
    failed = json.loads(body)["failed"]
    assert set(failed) == {"upstream"}


async def test_stop_refuses_new_updates_and_lets_answers_finish(hook: WebhookBench) -> None:
    hook.upstream.chunk_delay = 0.05
    hook.upstream.chunks = 10
    hook.telegram.send_message(501, "Hello")
    await hook.telegram.wait_for(("sendMessageDraft", "sendRichMessageDraft", "sendChatAction"))
    assert hook.app is not None and hook.task is not None
    await hook.app.stop()
    # Stopping: the webhook takes no more updates (503, or the listener is already closed).
    with contextlib.suppress(aiohttp.ClientConnectionError):
        status = await post_update(hook.hook_url, {"update_id": 1}, SECRET)
        assert status == 503
    await asyncio.wait_for(hook.task, 10)
    hook.task = None
    hook.app = None
    # The answer in progress was finished and delivered; the webhook was left registered.
    assert len(hook.finals(501)) == 1
    assert not hook.telegram.calls_of("deleteWebhook")
    assert hook.telegram.webhook_url == hook.hook_url


async def test_health_port_in_polling_mode(bench: Bench) -> None:
    port = free_port()
    await bench.restart(health_port=port, webhook_host="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    assert (await get(f"{base}/healthz"))[0] == 200
    assert (await get(f"{base}/readyz"))[0] == 200
    await bench.ask(601, "Hello")
    _, page = await get(f"{base}/metrics")
    assert metric(page, 'bot_answers_total{status="complete"}') == 1


async def test_json_log_lines_parse_and_carry_no_token(
    telegram: FakeTelegram, upstream: FakeUpstream, hook: WebhookBench
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    secrets = [telegram.token, upstream.api_key, SECRET]
    handler.setFormatter(json_formatter(secrets))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        await hook.restart(log_level="INFO")
        await hook.ask(701, "Hello")
        logging.getLogger("test").info("token is %s", telegram.token, extra={"chat": 701})
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = [line for line in stream.getvalue().splitlines() if line]
    assert lines
    records = [json.loads(line) for line in lines]
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    assert telegram.token not in stream.getvalue()
    assert SECRET not in stream.getvalue()
    assert any(r.get("chat") == 701 and "***" in r["message"] for r in records)
