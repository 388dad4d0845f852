"""The fake VseGPT upstream behaves as the rest of the test bench expects."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fakes.upstream_server import FakeUpstream, default_models

KEY = "test-key"


@pytest.fixture(scope="session")
async def _server() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream(api_key=KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def upstream(_server: FakeUpstream) -> FakeUpstream:
    _server.reset()
    return _server


@pytest.fixture
async def client(upstream: FakeUpstream) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=upstream.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=5.0
    ) as http:
        yield http


def chat_body(text: Any = "hello", *, stream: bool = True, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 100,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    body.update(extra)
    return body


async def read_events(response: httpx.Response) -> list[Any]:
    """Decoded SSE data payloads; "[DONE]" stays a string."""
    events: list[Any] = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def content_of(events: list[Any]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if isinstance(event, dict)
        for choice in event.get("choices", [])
    )


async def test_stream_reassembles_reply_and_usage_comes_last(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    async with client.stream("POST", "/chat/completions", json=chat_body("hello world")) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-used-credits"] == "0.0123"
        events = await read_events(resp)

    assert events[-1] == "[DONE]"
    usage_event = events[-2]
    assert usage_event["choices"] == []
    usage = usage_event["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] == 3  # "hello world": 11 chars / 4, rounded up
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert content_of(events) == "Echo: hello world"
    content_events = events[:-3]
    assert len(content_events) == upstream.chunks
    assert content_events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(e["object"] == "chat.completion.chunk" for e in content_events)

    (rec,) = upstream.chat_requests()
    assert rec.completed and not rec.disconnected
    assert rec.chunks_sent == upstream.chunks
    assert rec.headers["Authorization"] == f"Bearer {KEY}"
    assert rec.json["max_tokens"] == 100


async def test_content_parts_custom_reply_and_no_usage(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": "data:image/jpeg;base64,AAAA"},
    ]
    body = chat_body(parts, model="vis-google/gemini-flash-1.5")
    del body["stream_options"]
    upstream.chunks = 3
    async with client.stream("POST", "/chat/completions", json=body) as resp:
        events = await read_events(resp)
    assert content_of(events) == "Echo: what is this?"
    assert not any("usage" in e for e in events if isinstance(e, dict))
    assert upstream.chat_requests()[0].chunks_sent == 3

    upstream.reply = lambda payload: f"model={payload['model']}"
    upstream.credits = None
    async with client.stream("POST", "/chat/completions", json=body) as resp:
        assert "x-used-credits" not in resp.headers
        events = await read_events(resp)
    assert content_of(events) == "model=vis-google/gemini-flash-1.5"


async def test_non_stream(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    resp = await client.post("/chat/completions", json=chat_body("hi", stream=False))
    assert resp.status_code == 200
    assert resp.headers["x-used-credits"] == "0.0123"
    data = resp.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "Echo: hi"}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["completion_tokens"] == 2
    assert upstream.chat_requests()[0].completed


async def test_fail_next_then_recovery(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    upstream.fail_next(503, {"detail": "busy"}, times=2, headers={"Retry-After": "1"})
    for _ in range(2):
        resp = await client.post("/chat/completions", json=chat_body(stream=False))
        assert resp.status_code == 503
        assert resp.json() == {"detail": "busy"}
        assert resp.headers["retry-after"] == "1"
    resp = await client.post("/chat/completions", json=chat_body(stream=False))
    assert resp.status_code == 200
    assert [r.status for r in upstream.chat_requests()] == [503, 503, 200]

    # Default body is VseGPT-like; a text body goes out as is; other paths are unaffected.
    upstream.fail_next(504)
    upstream.fail_next(502, "EDGE_FUNCTION_INVOCATION_FAILED")
    upstream.fail_next(500, path="/models")
    resp = await client.post("/chat/completions", json=chat_body())
    assert resp.status_code == 504
    assert resp.json()["error"] == {
        "message": "EDGE_FUNCTION_INVOCATION_TIMEOUT",
        "type": "server_error",
        "code": 504,
    }
    resp = await client.post("/chat/completions", json=chat_body())
    assert (resp.status_code, resp.text) == (502, "EDGE_FUNCTION_INVOCATION_FAILED")
    assert (await client.get("/models")).status_code == 500
    assert (await client.get("/models")).status_code == 200


async def test_break_stream_after(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    upstream.break_stream_after(2)
    received: list[str] = []
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        async with client.stream("POST", "/chat/completions", json=chat_body("abcdefghij")) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    received.append(line)
    assert len(received) == 2
    assert "[DONE]" not in "".join(received)
    rec = upstream.chat_requests()[0]
    assert rec.chunks_sent == 2 and not rec.completed and not rec.disconnected

    # Only the next stream breaks.
    async with client.stream("POST", "/chat/completions", json=chat_body()) as resp:
        assert (await read_events(resp))[-1] == "[DONE]"


async def test_error_in_stream(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    upstream.error_in_stream("upstream overloaded")
    async with client.stream("POST", "/chat/completions", json=chat_body()) as resp:
        assert resp.status_code == 200
        events = await read_events(resp)
    assert events == [{"error": {"message": "upstream overloaded"}}]
    async with client.stream("POST", "/chat/completions", json=chat_body()) as resp:
        assert content_of(await read_events(resp)) == "Echo: hello"


async def test_enforce_rps(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    upstream.enforce_rps(2.0)  # one start per 0.5 s
    first = await client.post("/chat/completions", json=chat_body(stream=False))
    second = await client.post("/chat/completions", json=chat_body(stream=False))
    assert first.status_code == 200
    assert second.status_code == 429
    assert second.headers["retry-after"] == "2"
    assert upstream.rejected_429 == 1

    await asyncio.sleep(0.55)
    third = await client.post("/chat/completions", json=chat_body(stream=False))
    assert third.status_code == 200
    assert upstream.rejected_429 == 1


async def test_wrong_key(upstream: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=upstream.url) as http:
        resp = await http.post(
            "/chat/completions", json=chat_body(), headers={"Authorization": "Bearer nope"}
        )
        assert resp.status_code == 400
        assert resp.json() == {"error": {"message": "User with this API key not found"}}
        resp = await http.get("/models")
        assert resp.status_code == 400
        resp = await http.get("/models", headers={"Authorization": "Bearer sk-proj-abc"})
        assert "original OpenAI API key" in resp.json()["error"]["message"]


async def test_missing_max_tokens(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    body = chat_body()
    del body["max_tokens"]
    resp = await client.post("/chat/completions", json=body)
    assert resp.status_code == 400
    assert "max_tokens" in resp.json()["error"]["message"]
    assert upstream.chat_requests()[0].status == 400


async def test_context_overflow(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    body = chat_body("x" * 4000, model="test/tiny-context", max_tokens=100)
    resp = await client.post("/chat/completions", json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == (
        "This model's maximum context length is 1024 tokens. However, you requested 1100 "
        "tokens. Please reduce the length of the messages or completion."
    )
    ok = await client.post(
        "/chat/completions", json=chat_body("x" * 400, model="test/tiny-context")
    )
    assert ok.status_code == 200


async def test_client_closing_mid_stream_is_detected(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.chunk_delay = 5.0
    async with client.stream("POST", "/chat/completions", json=chat_body()) as resp:
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                break  # the first chunk arrived; the server now sleeps 5 s
        closed_at = time.monotonic()
    rec = upstream.chat_requests()[0]
    await asyncio.wait_for(rec.disconnected_event.wait(), 1)
    assert time.monotonic() - closed_at < 1
    assert rec.disconnected and not rec.completed
    assert rec.chunks_sent == 1


async def test_client_closing_during_first_token_delay_is_detected(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.first_token_delay = 5.0
    async with client.stream("POST", "/chat/completions", json=chat_body()) as resp:
        assert resp.status_code == 200
    rec = (await upstream.wait_for_requests(1))[0]
    await asyncio.wait_for(rec.disconnected_event.wait(), 1)
    assert rec.disconnected and rec.chunks_sent == 0


async def test_models_lists_defaults(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    resp = await client.get("/models")
    assert resp.status_code == 200
    data = resp.json()
    assert data["object"] == "list"
    ids = {m["id"] for m in data["data"]}
    assert {"openai/gpt-4o-mini", "anthropic/claude-3-haiku", "test/tiny-context"} <= ids
    assert {"img-dummy/image", "stt-openai/whisper-1", "txt2vid-kling/standart"} <= ids
    tiny = next(m for m in data["data"] if m["id"] == "test/tiny-context")
    assert tiny["context_length"] == "1024"
    assert data["data"] == default_models()
    assert all({"id", "name", "context_length", "pricing"} <= m.keys() for m in data["data"])


async def test_wait_for_requests_and_unknown_path(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    waiter = asyncio.create_task(upstream.wait_for_requests(2, timeout=2))
    await client.get("/models")
    assert (await client.get("/nope")).status_code == 404
    reqs = await waiter
    assert [r.path for r in reqs] == ["/v1/models", "/v1/nope"]
    with pytest.raises(TimeoutError):
        await upstream.wait_for_requests(3, timeout=0.05)


async def test_stop_does_not_wait_for_slow_streams() -> None:
    server = FakeUpstream()
    await server.start()
    server.first_token_delay = 30.0
    headers = {"Authorization": "Bearer test-key"}
    async with (
        httpx.AsyncClient(headers=headers) as http,
        http.stream("POST", f"{server.url}/chat/completions", json=chat_body()),
    ):
        started = time.monotonic()
        await server.stop()
        assert time.monotonic() - started < 2
