from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from services.llm.catalog import ModelCatalog
from services.llm.client import LLMClient
from services.llm.errors import ServiceUnavailable
from services.llm.types import ModelInfo


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


MODELS = [
    ModelInfo("openai/gpt-4o-mini", "GPT-4o mini", 128000),
    ModelInfo("img-dummy/image", "Image", None, kind="image"),
    ModelInfo("anthropic/claude-3-haiku", "Claude 3 Haiku", 200000),
    ModelInfo("emb-openai/text-embedding-3-small", "Embeddings", 8191, kind="embedding"),
    ModelInfo("vis-google/gemini-flash-1.5", "Gemini Flash", 1000000),
]


class FakeClient:
    """Stands in for LLMClient: only list_models is used by the catalog."""

    def __init__(self, *results: Any) -> None:
        self.results = list(results)
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def list_models(self) -> list[ModelInfo]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(result, BaseException):
            raise result
        return list(result)


def make(client: FakeClient, clock: FakeClock, ttl: float = 600.0) -> ModelCatalog:
    return ModelCatalog(cast(LLMClient, client), ttl=ttl, clock=clock)


async def test_cached_within_ttl_and_refreshed_after() -> None:
    clock = FakeClock()
    client = FakeClient(MODELS, MODELS[:1])
    catalog = make(client, clock, ttl=60)
    assert len(await catalog.models()) == 5
    clock.now = 59.9
    assert len(await catalog.models()) == 5
    assert client.calls == 1
    clock.now = 60.0
    assert [m.id for m in await catalog.models()] == ["openai/gpt-4o-mini"]
    assert client.calls == 2


async def test_lookups() -> None:
    catalog = make(FakeClient(MODELS), FakeClock())
    chat = await catalog.chat_models()
    assert [m.id for m in chat] == [
        "anthropic/claude-3-haiku",
        "openai/gpt-4o-mini",
        "vis-google/gemini-flash-1.5",
    ]
    info = await catalog.get("anthropic/claude-3-haiku")
    assert info is not None and info.name == "Claude 3 Haiku"
    assert await catalog.get("nope/nope") is None
    assert await catalog.context_length("openai/gpt-4o-mini", 4096) == 128000
    assert await catalog.context_length("img-dummy/image", 4096) == 4096  # unknown length
    assert await catalog.context_length("nope/nope", 4096) == 4096
    # Callers get copies: mutating them does not corrupt the cache.
    (await catalog.models()).clear()
    assert len(await catalog.models()) == 5


async def test_stale_list_survives_failures_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    down = ServiceUnavailable(502, "HTTP 502")
    client = FakeClient(MODELS, down, down, down, MODELS[:2])
    catalog = make(client, clock, ttl=60)
    await catalog.models()
    with caplog.at_level(logging.WARNING, logger="services.llm.catalog"):
        for step in range(1, 4):
            clock.now = step * 100.0
            assert len(await catalog.models()) == 5
    assert client.calls == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    clock.now = 1000.0
    assert len(await catalog.models()) == 2  # recovered


async def test_a_failed_refresh_is_not_retried_on_every_call() -> None:
    clock = FakeClock()
    client = FakeClient(ServiceUnavailable(None, "down"), MODELS)
    catalog = make(client, clock, ttl=600)
    assert await catalog.models() == []  # never loaded: empty, not an exception
    clock.now = 5.0
    assert await catalog.context_length("openai/gpt-4o-mini", 1234) == 1234
    assert client.calls == 1
    clock.now = 31.0
    assert len(await catalog.models()) == 5
    assert client.calls == 2


async def test_unexpected_errors_are_contained(caplog: pytest.LogCaptureFixture) -> None:
    catalog = make(FakeClient(KeyError("boom")), FakeClock())
    assert await catalog.chat_models() == []
    assert "model list refresh failed" in caplog.text


async def test_concurrent_callers_share_one_refresh() -> None:
    client = FakeClient(MODELS)
    client.gate = asyncio.Event()
    catalog = make(client, FakeClock())
    callers = [asyncio.create_task(catalog.context_length(m.id, 1)) for m in MODELS * 4]
    await asyncio.sleep(0.01)
    assert client.calls == 1
    client.gate.set()
    results = await asyncio.gather(*callers)
    assert client.calls == 1
    assert results[0] == 128000


async def test_a_cancelled_caller_does_not_cancel_the_shared_refresh() -> None:
    client = FakeClient(MODELS)
    client.gate = asyncio.Event()
    catalog = make(client, FakeClock())
    first = asyncio.create_task(catalog.models())
    second = asyncio.create_task(catalog.models())
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0)
    client.gate.set()
    assert len(await second) == 5
    assert client.calls == 1


async def test_invalidate_forces_a_refresh_but_keeps_the_list_on_failure() -> None:
    clock = FakeClock()
    client = FakeClient(MODELS, ServiceUnavailable(None, "down"))
    catalog = make(client, clock)
    await catalog.models()
    catalog.invalidate()
    assert len(await catalog.models()) == 5
    assert client.calls == 2
