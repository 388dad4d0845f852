"""MashaGPT's model list: the upstream's when it answers, else the configured ids."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from services.llm import CircuitBreaker, FairRateLimiter, LLMClient, ModelInfo, RetryPolicy
from services.llm.mashagpt import MashaModels
from services.llm.mashagpt.models import configured_models

BASE = "https://api.masha.test/v1"
CONFIGURED = ("gpt-4o-mini", " claude-sonnet-4-5 ", "", "gpt-4o-mini")
FALLBACK = ["gpt-4o-mini", "claude-sonnet-4-5"]

Reply = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
async def models() -> AsyncIterator[Callable[[Reply], tuple[MashaModels, list[httpx.Request]]]]:
    clients: list[httpx.AsyncClient] = []

    def make(reply: Reply) -> tuple[MashaModels, list[httpx.Request]]:
        requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            return reply(request)

        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        clients.append(http)

        async def no_wait(_: float) -> None:
            return None

        client = LLMClient(
            http,
            BASE,
            "key",
            limiter=FairRateLimiter(0),
            breaker=CircuitBreaker(),
            retry=RetryPolicy(max_retries=1),
            sleep=no_wait,
        )
        return MashaModels(client, CONFIGURED), requests

    yield make
    for http in clients:
        await http.aclose()


def answer(status: int, body: Any = None) -> Reply:
    return lambda _: httpx.Response(status, json=body if body is not None else {"error": "no"})


async def test_upstream_list_is_used_when_it_answers(models) -> None:
    listing = {"object": "list", "data": [{"id": "gpt-4o", "context_length": "128000"}]}
    source, requests = models(answer(200, listing))
    assert await source.list_models() == [ModelInfo("gpt-4o", "gpt-4o", 128000)]
    assert str(requests[0].url) == BASE + "/models"


@pytest.mark.parametrize("status", [404, 405, 401, 500])
async def test_falls_back_on_a_missing_or_failing_endpoint(models, status: int) -> None:
    source, _ = models(answer(status))
    got = await source.list_models()
    assert [m.id for m in got] == FALLBACK
    assert all(m.is_chat and m.context_length is None for m in got)


async def test_falls_back_on_an_empty_list(models) -> None:
    source, _ = models(answer(200, {"object": "list", "data": []}))
    assert [m.id for m in await source.list_models()] == FALLBACK


async def test_fallback_is_logged_once(models, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.llm.mashagpt.models")
    source, requests = models(answer(404))
    await source.list_models()
    await source.list_models()
    assert len(requests) == 2  # the endpoint is probed again on each refresh...
    notes = [r for r in caplog.records if r.name == "services.llm.mashagpt.models"]
    assert len(notes) == 1  # ...but said only once
    assert notes[0].levelno == logging.INFO
    assert "configured" in notes[0].getMessage()


def test_configured_models_drop_blanks_and_repeats() -> None:
    assert [m.id for m in configured_models(CONFIGURED)] == FALLBACK
