"""The metrics registry and its hooks: each moves the series it should, on its own registry."""

from __future__ import annotations

import asyncio
from typing import Any

from aiogram.types import Update

from bot.metrics import Metrics, UpdateCounter
from bot.webhook import Draining, Readiness
from services.chat import ChatInput, Reply, ReplyOutcome, ReplyStatus
from services.llm.errors import ServiceUnavailable
from services.llm.limiter import FairRateLimiter


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


def reply(first_token: bool = True) -> Reply:
    r = Reply(1, ChatInput(chat_id=1, thread_id=None, user_id=1, text="q"), "m")
    r._start_work()
    if first_token:
        r._append("a")
    return r


def test_registries_are_separate() -> None:
    one, two = Metrics(), Metrics()
    one.update("message")
    assert sample(one, "bot_updates_total", {"type": "message"}) == 1
    assert sample(two, "bot_updates_total", {"type": "message"}) == 0


async def test_update_counter_counts_by_type() -> None:
    metrics = Metrics()
    counter = UpdateCounter(metrics)
    update = Update.model_validate(
        {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 1, "type": "private"},
                "text": "x",
            },
        }
    )

    async def handler(event: Any, data: dict[str, Any]) -> str:
        return "handled"

    assert await counter(handler, update, {}) == "handled"
    assert await counter(handler, update, {}) == "handled"
    assert sample(metrics, "bot_updates_total", {"type": "message"}) == 2


def test_answer_ended_records_status_latency_ttft_and_error_kind() -> None:
    metrics = Metrics()
    metrics.answer_ended(reply(), ReplyOutcome(ReplyStatus.COMPLETE, "a", "m"))
    failed = ReplyOutcome(ReplyStatus.FAILED, "", "m", ServiceUnavailable(503, "down"))
    metrics.answer_ended(reply(first_token=False), failed)
    assert sample(metrics, "bot_answers_total", {"status": "complete"}) == 1
    assert sample(metrics, "bot_answers_total", {"status": "failed"}) == 1
    assert sample(metrics, "bot_upstream_request_seconds_count") == 2
    assert sample(metrics, "bot_upstream_ttft_seconds_count") == 1
    assert sample(metrics, "bot_upstream_errors_total", {"kind": "ServiceUnavailable"}) == 1


def test_gauges_read_their_sources_when_scraped() -> None:
    metrics = Metrics()
    state = {"streams": 3, "queue": 2, "jobs": 1}
    metrics.watch(
        active_streams=lambda: state["streams"],
        queues=[lambda: state["queue"], lambda: 4],
        media_jobs_active=lambda: state["jobs"],
    )
    assert sample(metrics, "bot_active_streams") == 3
    assert sample(metrics, "bot_llm_queue_length") == 6
    state["streams"] = 0
    assert sample(metrics, "bot_active_streams") == 0
    assert sample(metrics, "bot_media_jobs_active") == 1
    metrics.media_job("video", "DELIVERED")
    assert sample(metrics, "bot_media_jobs_total", {"kind": "video", "state": "DELIVERED"}) == 1
    metrics.telegram_429.inc()
    assert b"bot_telegram_429_total 1.0" in metrics.render()


async def test_limiter_reports_queue_waits() -> None:
    metrics = Metrics()
    now = [0.0]
    limiter = FairRateLimiter(1000.0, clock=lambda: now[0])
    limiter.on_grant = metrics.queue_wait.observe
    await limiter.acquire("a")  # free slot: no wait
    waiting = asyncio.ensure_future(limiter.acquire("b"))
    await asyncio.sleep(0)
    now[0] = 0.5
    await asyncio.wait_for(waiting, 1)
    assert sample(metrics, "bot_llm_queue_wait_seconds_count") == 2
    assert sample(metrics, "bot_llm_queue_wait_seconds_sum") >= 0.5


class _Storage:
    def __init__(self) -> None:
        self.pings = 0
        self.fail = False

    async def ping(self) -> None:
        self.pings += 1
        if self.fail:
            raise RuntimeError("database is gone")


class _Chat:
    def __init__(self) -> None:
        self.calls = 0
        self.hang = False

    async def list_models(self) -> list[Any]:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(10)
        return []


class _Provider:
    def __init__(self) -> None:
        self.chat = _Chat()


class _Providers:
    def __init__(self) -> None:
        self.providers = [_Provider()]


async def test_readiness_is_cached_and_names_what_failed() -> None:
    storage, providers, draining = _Storage(), _Providers(), Draining()
    now = [0.0]
    readiness = Readiness(
        storage,  # type: ignore[arg-type]
        providers,  # type: ignore[arg-type]
        draining,
        timeout=0.05,
        cache_seconds=5,
        clock=lambda: now[0],
    )
    assert await readiness.failures() == {}
    assert await readiness.failures() == {}
    assert storage.pings == 1  # the second probe was answered from the cache
    storage.fail = True
    providers.providers[0].chat.hang = True
    now[0] = 6
    failed = await readiness.failures()
    assert failed == {"database": "RuntimeError", "upstream": "no answer within 0.05 s"}
    draining.active = True
    assert set(await readiness.failures()) == {"shutdown"}


async def test_readiness_checks_redis_when_the_bot_shares_state_there() -> None:
    storage, providers = _Storage(), _Providers()
    pings = [0]

    async def down() -> None:
        pings[0] += 1
        raise ConnectionError("refused")

    readiness = Readiness(
        storage,  # type: ignore[arg-type]
        providers,  # type: ignore[arg-type]
        Draining(),
        redis_ping=down,
        timeout=0.05,
        cache_seconds=0,
    )
    assert await readiness.failures() == {"redis": "ConnectionError"}
    assert pings[0] == 1
