"""MashaGPT chat against httpx.MockTransport: auth, wire shape of turns, energy, refusals."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from services.llm import AuthFailed, CircuitBreaker, StreamChunk
from services.llm.mashagpt import NAME, UNITS, MashaProvider, build_mashagpt
from services.llm.openai_compat import openai_messages
from services.llm.provider import ChatBackend, ImageMaker, VideoMaker
from services.llm.turns import Turn

API_KEY = "masha-SECRET-key-0123456789"
BASE = "https://api.masha.test/v1"
JPEG = b"\xff\xd8\xff\xe0 fake jpeg bytes"


def sse(*events: dict[str, Any]) -> bytes:
    lines = [f"data: {json.dumps(e)}\n\n" for e in events]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def delta(text: str) -> dict[str, Any]:
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }


def ending(reason: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}
    if usage is not None:
        event["usage"] = usage
    return event


class Upstream:
    def __init__(self, reply: Callable[[httpx.Request], httpx.Response]) -> None:
        self.reply = reply
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.reply(request)


class Body(httpx.AsyncByteStream):
    """A streamed body: the chat client reads the raw stream, not a preloaded one."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def stream_of(body: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=Body(body)
    )


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[Upstream], MashaProvider]]:
    clients: list[httpx.AsyncClient] = []

    def make(upstream: Upstream) -> MashaProvider:
        http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
        clients.append(http)
        return build_mashagpt(
            http,
            base_url=BASE,
            api_key=API_KEY,
            rps=0,
            models=("gpt-4o-mini",),
            breaker=CircuitBreaker(failure_threshold=100),
            deadline=5.0,
            stream_gap=5.0,
        )

    yield make
    for http in clients:
        await http.aclose()


async def collect(provider: MashaProvider, turns: list[Turn]) -> list[StreamChunk]:
    stream = provider.chat.stream_chat(model="gpt-4o-mini", turns=turns, max_tokens=100)
    return [chunk async for chunk in stream]


async def test_sends_both_auth_headers_and_openai_body(connect) -> None:
    upstream = Upstream(stream_of(sse(delta("Hi"), ending("stop"))))
    chunks = await collect(connect(upstream), [Turn("user", "Привет")])
    assert "".join(c.text for c in chunks) == "Hi"
    request = upstream.requests[0]
    assert str(request.url) == BASE + "/chat/completions"
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    body = json.loads(request.content)
    assert body["model"] == "gpt-4o-mini"
    assert body["stream"] is True
    assert body["max_tokens"] == 100
    assert body["messages"] == [{"role": "user", "content": "Привет"}]


async def test_final_chunk_carries_energy(connect) -> None:
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "total_tokens": 12,
        "prompt_energy": 30,
        "completion_energy": 12,
        "total_energy": 42,
    }
    upstream = Upstream(stream_of(sse(delta("Hi"), ending("stop", usage))))
    chunks = await collect(connect(upstream), [Turn("user", "hello")])
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert final.usage.energy == 42
    assert final.usage.total_tokens == 12


async def test_content_filter_is_reported_as_refused(connect) -> None:
    upstream = Upstream(stream_of(sse(delta("I can"), ending("content_filter"))))
    chunks = await collect(connect(upstream), [Turn("user", "hello")])
    assert chunks[-1].finish_reason == "refused"


async def test_length_stays_length(connect) -> None:
    upstream = Upstream(stream_of(sse(delta("long"), ending("length"))))
    chunks = await collect(connect(upstream), [Turn("user", "hello")])
    assert chunks[-1].finish_reason == "length"


def test_turns_become_openai_messages() -> None:
    messages = openai_messages(
        [
            Turn("system", "Be brief."),
            Turn("user", "what is this?", speaker="Anna", images=(JPEG, JPEG)),
            Turn("assistant", "A cat."),
            Turn("user", "", images=(JPEG,)),
        ]
    )
    data_url = "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
    picture = {"type": "image_url", "image_url": {"url": data_url}}
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Anna: what is this?"}, picture, picture],
        },
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": [picture]},
    ]


async def test_key_never_in_error_or_log(connect, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"error": {"message": f"Invalid API key {API_KEY}"}}
    upstream = Upstream(lambda _: httpx.Response(401, json=body))
    with pytest.raises(AuthFailed) as caught:
        await collect(connect(upstream), [Turn("user", "a secret question")])
    assert API_KEY not in caught.value.detail
    assert API_KEY not in str(caught.value)
    assert "Invalid API key" in caught.value.detail
    assert caplog.records  # the failure was logged...
    assert API_KEY not in caplog.text  # ...without the key
    assert "a secret question" not in caplog.text


async def test_build_gives_the_provider_capabilities(connect) -> None:
    provider = connect(Upstream(lambda _: httpx.Response(404)))
    assert isinstance(provider.chat, ChatBackend)
    assert isinstance(provider.tasks, ImageMaker)
    assert isinstance(provider.tasks, VideoMaker)
    assert (NAME, UNITS) == ("mashagpt", ("energy",))
    # The chat's model list is the models part's (here: the configured fallback).
    assert [m.id for m in await provider.chat.list_models()] == ["gpt-4o-mini"]
