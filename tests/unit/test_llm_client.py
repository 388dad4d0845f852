"""LLMClient against httpx.MockTransport (streaming bodies via a custom AsyncByteStream)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from services.llm import (
    AuthFailed,
    CircuitBreaker,
    CircuitOpen,
    ContextTooLong,
    FairRateLimiter,
    InsufficientFunds,
    LLMClient,
    ModelInfo,
    ModerationRefused,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    StreamChunk,
    StreamInterrupted,
    UpstreamError,
    Usage,
)

API_KEY = "sk-test-SECRET-0123456789"
BASE = "https://llm.test/v1"
HANG = object()  # a body part that never arrives


class Body(httpx.AsyncByteStream):
    """A streaming body: bytes parts, exceptions to raise, or HANG; records being closed."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        self.closed = False
        self.exhausted = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            if part is HANG:
                await asyncio.Event().wait()
            elif isinstance(part, BaseException):
                raise part
            else:
                yield part
        self.exhausted = True

    async def aclose(self) -> None:
        self.closed = True


def event(obj: Any) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj)
    return f"data: {data}\n\n".encode()


def delta(text: str | None = None, finish: str | None = None, role: bool = False) -> bytes:
    d: dict[str, Any] = {}
    if role:
        d["role"] = "assistant"
    if text is not None:
        d["content"] = text
    return event(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
            "usage": None,
        }
    )


def usage_event(prompt: int = 12, completion: int = 3) -> bytes:
    return event(
        {
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
    )


DONE = event("[DONE]")


def sse(*parts: Any, credits: str | None = "0.0123") -> Callable[[], httpx.Response]:
    """A factory: each request gets a fresh response (bodies are consumed once)."""

    def make() -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        if credits is not None:
            headers["x-used-credits"] = credits
        body = Body(list(parts))
        bodies.append(body)
        return httpx.Response(200, headers=headers, stream=body)

    bodies: list[Body] = []
    make.bodies = bodies  # type: ignore[attr-defined]
    return make


def answer(*texts: str) -> Callable[[], httpx.Response]:
    return sse(
        delta("", role=True), *(delta(t) for t in texts), delta(finish="stop"), usage_event(), DONE
    )


def error(
    status: int, message: str = "", headers: dict[str, str] | None = None
) -> Callable[[], httpx.Response]:
    def make() -> httpx.Response:
        body = {"error": {"message": message or f"error {status}", "code": status}}
        return httpx.Response(status, json=body, headers=headers)

    return make


class Upstream:
    """MockTransport handler playing a script; the last entry repeats."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return step()


class SpyLimiter(FairRateLimiter):
    def __init__(self) -> None:
        super().__init__(0)
        self.calls: list[Hashable] = []

    async def acquire(self, key: Hashable, on_wait: Any = None) -> None:
        self.calls.append(key)
        await super().acquire(key, on_wait)


class Harness:
    def __init__(self, upstream: Upstream, breaker: CircuitBreaker | None = None) -> None:
        self.upstream = upstream
        self.sleeps: list[float] = []
        self.limiter = SpyLimiter()
        self.breaker = breaker or CircuitBreaker(failure_threshold=100)
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))

        async def sleep(delay: float) -> None:
            self.sleeps.append(delay)

        self.client = LLMClient(
            self.http,
            BASE + "/",
            API_KEY,
            limiter=self.limiter,
            breaker=self.breaker,
            retry=RetryPolicy(),
            app_title="Test Bot",
            sleep=sleep,
            credits_header="x-used-credits",
        )

    def stream(self, **kwargs: Any) -> AsyncIterator[StreamChunk]:
        args: dict[str, Any] = {
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 100,
            "user_key": 42,
        }
        args.update(kwargs)
        return self.client.stream_chat(**args)

    async def collect(self, **kwargs: Any) -> list[StreamChunk]:
        return [chunk async for chunk in self.stream(**kwargs)]


@pytest.fixture
async def harnesses() -> AsyncIterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for harness in made:
        await harness.http.aclose()


@pytest.fixture
def make(harnesses: list[Harness]) -> Callable[..., Harness]:
    def factory(*script: Any, breaker: CircuitBreaker | None = None) -> Harness:
        harness = Harness(Upstream(*script), breaker)
        harnesses.append(harness)
        return harness

    return factory


def texts(chunks: list[StreamChunk]) -> str:
    return "".join(c.text for c in chunks)


# --- the happy path ---------------------------------------------------------------------------


async def test_streams_text_then_a_final_chunk_with_usage_and_credits(make) -> None:
    reply = answer("Hel", "lo", "!")
    h = make(reply)
    chunks = await h.collect()
    assert [c.text for c in chunks] == ["Hel", "lo", "!", ""]
    assert all(c.usage is None and c.finish_reason is None for c in chunks[:-1])
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage == Usage(12, 3, 15, 0.0123)
    # The body was read to its end (connection reusable) and closed.
    assert reply.bodies[0].exhausted and reply.bodies[0].closed


async def test_request_shape(make) -> None:
    h = make(answer("ok"))
    await h.collect(temperature=0.3)
    request = h.upstream.requests[0]
    assert request.method == "POST"
    assert str(request.url) == BASE + "/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["x-title"] == "Test Bot"
    body = json.loads(request.content)
    assert body == {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 100,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.3,
    }
    await h.collect()
    assert "temperature" not in json.loads(h.upstream.requests[1].content)
    assert h.limiter.calls == [42, 42]


async def test_usage_in_the_finish_chunk_and_no_credits_header(make) -> None:
    finish = event(
        {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": "7", "completion_tokens": "2"},
        }
    )
    h = make(sse(delta("a"), finish, DONE, credits=None))
    chunks = await h.collect()
    assert chunks[-1] == StreamChunk("", Usage(7, 2, 9, None), "length")


async def test_no_usage_at_all_gives_none(make) -> None:
    h = make(sse(delta("a"), delta(finish="stop"), DONE, credits=None))
    chunks = await h.collect()
    assert chunks[-1].usage is None


async def test_only_the_credits_header(make) -> None:
    h = make(sse(delta("a"), delta(finish="stop"), DONE, credits="1.5"))
    assert (await h.collect())[-1].usage == Usage(credits=1.5)


async def test_keepalive_comments_and_done_without_finish_reason(make) -> None:
    h = make(sse(b": ping\n\n", delta("x"), b"\r\n", DONE))
    chunks = await h.collect()
    assert texts(chunks) == "x"
    assert chunks[-1].finish_reason is None


async def test_a_plain_json_completion_is_accepted(make) -> None:
    def reply() -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            },
        )

    h = make(reply)
    chunks = await h.collect()
    assert [c.text for c in chunks] == ["whole", ""]
    assert chunks[-1].usage == Usage(1, 1, 2)


# --- retries before the first token -----------------------------------------------------------


async def test_retries_429_honouring_retry_after(make) -> None:
    h = make(error(429, "Too many requests", {"retry-after": "2"}), answer("ok"))
    assert texts(await h.collect()) == "ok"
    assert h.sleeps == [2.0]
    assert len(h.upstream.requests) == 2
    assert h.limiter.calls == [42, 42]  # every attempt passes the limiter


async def test_retry_after_ms_is_honoured(make) -> None:
    h = make(error(429, headers={"retry-after-ms": "250"}), answer("ok"))
    await h.collect()
    assert h.sleeps == [0.25]


async def test_retries_500_with_backoff(make) -> None:
    h = make(error(500), error(502), answer("ok"))
    assert texts(await h.collect()) == "ok"
    assert len(h.sleeps) == 2
    assert 0.375 <= h.sleeps[0] <= 0.5
    assert 0.75 <= h.sleeps[1] <= 1.0


async def test_retries_network_errors(make) -> None:
    h = make(httpx.ConnectError("connection refused"), httpx.ReadTimeout("slow"), answer("ok"))
    assert texts(await h.collect()) == "ok"
    assert len(h.upstream.requests) == 3


async def test_gives_up_after_max_retries(make) -> None:
    h = make(error(503, "overloaded"))
    with pytest.raises(ServiceUnavailable) as info:
        await h.collect()
    assert info.value.status == 503
    assert info.value.detail == "overloaded"
    assert len(h.upstream.requests) == 3  # 1 + RetryPolicy.max_retries
    assert len(h.sleeps) == 2


async def test_network_error_after_retries_is_service_unavailable(make) -> None:
    h = make(httpx.ConnectError("connection refused"))
    with pytest.raises(ServiceUnavailable) as info:
        await h.collect()
    assert info.value.status is None
    assert "ConnectError" in info.value.detail
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_429_exhausted_is_rate_limited_with_retry_after(make) -> None:
    h = make(error(429, headers={"retry-after": "1"}))
    with pytest.raises(RateLimited) as info:
        await h.collect()
    assert info.value.retry_after == 1.0
    assert h.sleeps == [1.0, 1.0]


async def test_too_long_retry_after_gives_up_at_once(make) -> None:
    h = make(error(429, headers={"retry-after": "600"}), answer("never"))
    with pytest.raises(RateLimited):
        await h.collect()
    assert len(h.upstream.requests) == 1
    assert h.sleeps == []


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (400, "This model's maximum context length is 4096 tokens.", ContextTooLong),
        (400, "User with this API key not found", AuthFailed),
        (400, "Недостаточно средств на балансе", InsufficientFunds),
        (403, "Blocked by moderation", ModerationRefused),
        (401, "", AuthFailed),
    ],
)
async def test_client_errors_are_not_retried(make, status, message, expected) -> None:
    h = make(error(status, message), answer("never"))
    with pytest.raises(expected):
        await h.collect()
    assert len(h.upstream.requests) == 1
    assert h.sleeps == []


async def test_a_stream_broken_before_the_first_token_is_retried(make) -> None:
    broken = sse(delta("", role=True), httpx.ReadError("reset by peer"))
    h = make(broken, answer("fine"))
    assert texts(await h.collect()) == "fine"
    assert len(h.upstream.requests) == 2
    assert broken.bodies[0].closed


async def test_a_stream_cut_without_done_before_a_token_is_retried(make) -> None:
    h = make(sse(delta("", role=True)), answer("fine"))
    assert texts(await h.collect()) == "fine"
    assert len(h.upstream.requests) == 2


# --- errors inside the stream -----------------------------------------------------------------


async def test_an_error_object_before_any_token_is_classified(make) -> None:
    message = "This model's maximum context length is 1024 tokens"
    h = make(sse(event({"error": {"message": message}})), answer("never"))
    with pytest.raises(ContextTooLong) as info:
        await h.collect()
    assert info.value.detail == message
    assert len(h.upstream.requests) == 1  # no code: we cannot know that a retry helps


async def test_an_unrecognised_error_object_reads_as_unavailable(make) -> None:
    h = make(sse(event({"error": {"message": "Provider returned error"}})))
    with pytest.raises(ServiceUnavailable):
        await h.collect()


async def test_an_error_object_with_a_retryable_code_is_retried(make) -> None:
    h = make(sse(event({"error": {"message": "upstream timeout", "code": 504}})), answer("ok"))
    assert texts(await h.collect()) == "ok"
    assert len(h.upstream.requests) == 2


async def test_a_200_json_error_is_classified(make) -> None:
    def reply() -> httpx.Response:
        return httpx.Response(200, json={"error": {"message": "User with this API key not found"}})

    h = make(reply)
    with pytest.raises(AuthFailed):
        await h.collect()


# --- after the first token: never retried -----------------------------------------------------


async def collect_until_error(h: Harness) -> tuple[str, BaseException]:
    got: list[str] = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in h.stream():
            got.append(chunk.text)
    return "".join(got), info.value


async def test_network_break_after_the_first_token_is_interrupted(make) -> None:
    h = make(sse(delta("Hel"), delta("lo"), httpx.RemoteProtocolError("incomplete")), answer("x"))
    text, exc = await collect_until_error(h)
    assert text == "Hello"
    assert isinstance(exc, StreamInterrupted)
    assert "RemoteProtocolError" in exc.detail
    assert len(h.upstream.requests) == 1
    assert h.sleeps == []


async def test_an_error_object_after_the_first_token_is_interrupted(make) -> None:
    h = make(sse(delta("Hel"), event({"error": {"message": "provider died", "code": 502}})))
    text, exc = await collect_until_error(h)
    assert text == "Hel"
    assert isinstance(exc, StreamInterrupted)
    assert exc.detail == "provider died" and exc.status == 502


async def test_malformed_data_after_the_first_token_is_interrupted(make) -> None:
    h = make(sse(delta("Hel"), event("{not json")))
    text, exc = await collect_until_error(h)
    assert text == "Hel" and isinstance(exc, StreamInterrupted)


async def test_a_stream_cut_without_done_after_a_token_is_interrupted(make) -> None:
    h = make(sse(delta("Hel")), answer("x"))
    text, exc = await collect_until_error(h)
    assert text == "Hel" and isinstance(exc, StreamInterrupted)
    assert len(h.upstream.requests) == 1


async def test_finish_reason_error_is_interrupted(make) -> None:
    h = make(sse(delta("Hel"), delta(finish="error"), DONE))
    _, exc = await collect_until_error(h)
    assert isinstance(exc, StreamInterrupted)


# --- cancellation -----------------------------------------------------------------------------


async def test_cancelling_the_consumer_closes_the_response_at_once(make) -> None:
    reply = sse(delta("Hel"), HANG)
    h = make(reply)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in h.stream():
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 1.0)
    assert not reply.bodies[0].closed
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reply.bodies[0].closed


async def test_aclose_closes_the_response(make) -> None:
    reply = sse(delta("Hel"), HANG)
    h = make(reply)
    async with aclosing(h.stream()) as stream:
        async for chunk in stream:
            assert chunk.text == "Hel"
            break
    assert reply.bodies[0].closed


async def test_cancel_while_waiting_for_the_first_token(make) -> None:
    reply = sse(HANG)
    h = make(reply)
    task = asyncio.create_task(h.collect())
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reply.bodies[0].closed


# --- circuit breaker --------------------------------------------------------------------------


async def test_open_breaker_sends_nothing(make) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=60)
    breaker.record_failure()
    h = make(answer("never"), breaker=breaker)
    with pytest.raises(CircuitOpen):
        await h.collect()
    assert h.upstream.requests == []
    assert h.limiter.calls == []


async def test_upstream_failures_open_the_breaker(make) -> None:
    # Counted per request (not per attempt), from more than one user.
    breaker = CircuitBreaker(failure_threshold=3, cooldown=60)
    h = make(error(502), breaker=breaker)
    for user in (1, 2):
        with pytest.raises(ServiceUnavailable):
            await h.collect(user_key=user)
    assert breaker.state == "closed"  # 2 requests (6 attempts): below the threshold
    with pytest.raises(ServiceUnavailable) as info:
        await h.collect(user_key=3)
    assert not isinstance(info.value, CircuitOpen)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen):
        await h.collect(user_key=4)
    assert len(h.upstream.requests) == 9


async def test_one_users_failing_requests_do_not_open_the_breaker(make) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=60)
    h = make(error(500), breaker=breaker)
    for _ in range(5):
        with pytest.raises(ServiceUnavailable) as info:
            await h.collect(user_key=7)
        assert not isinstance(info.value, CircuitOpen)
    assert breaker.state == "closed"
    h.upstream.script = [answer("fine")]
    assert texts(await h.collect(user_key=8)) == "fine"  # everybody else is served


async def test_another_users_success_resets_the_count(make) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=60)
    h = make(error(500), error(500), error(500), answer("ok"), error(500), breaker=breaker)
    with pytest.raises(ServiceUnavailable):
        await h.collect(user_key=1)  # one failed request (3 attempts)
    assert texts(await h.collect(user_key=2)) == "ok"
    with pytest.raises(ServiceUnavailable):
        await h.collect(user_key=3)
    assert breaker.state == "closed"  # the success in between started the count over


async def test_the_breaker_opening_mid_retry_stops_the_retries(make) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=60)
    h = make(error(500), breaker=breaker)

    async def others_fail_meanwhile(delay: float) -> None:
        h.sleeps.append(delay)
        breaker.record_failure("someone")
        breaker.record_failure("someone else")

    h.client._t._sleep = others_fail_meanwhile
    with pytest.raises(ServiceUnavailable) as info:
        await h.collect()
    assert not isinstance(info.value, CircuitOpen)  # its own failure, not a refusal
    assert len(h.upstream.requests) == 1


async def test_client_errors_and_successes_keep_the_breaker_closed(make) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=60)
    h = make(error(500), error(400, "bad"), error(500), answer("ok"), breaker=breaker)
    with pytest.raises(UpstreamError):
        await h.collect()  # 500 then 400: the 400 proves the upstream is alive
    assert texts(await h.collect()) == "ok"  # 500 then success
    assert breaker.state == "closed"


# --- secrecy ----------------------------------------------------------------------------------


async def test_the_api_key_never_leaks(make) -> None:
    h = make(error(400, f"Incorrect API key provided: {API_KEY}"))
    with pytest.raises(AuthFailed) as info:
        await h.collect()
    for text in (str(info.value), repr(info.value), info.value.detail, repr(h.client)):
        assert API_KEY not in text
    assert "***" in info.value.detail


async def test_the_api_key_never_leaks_from_network_errors(make) -> None:
    h = make(httpx.ConnectError(f"proxy said {API_KEY}"))
    with pytest.raises(ServiceUnavailable) as info:
        await h.collect()
    assert API_KEY not in str(info.value)


# --- models -----------------------------------------------------------------------------------


async def test_list_models(make) -> None:
    def models() -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "object": "list",
                "data": [
                    {
                        "id": "openai/gpt-4o-mini",
                        "name": "GPT-4o mini",
                        "context_length": 128000,
                        "pricing": {"prompt": "0.15", "completion": "0.6"},
                    },
                    {"id": "test/tiny-context", "context_length": "1024"},
                    {"name": "no id: skipped"},
                    "garbage",
                ],
            },
        )

    h = make(error(502), models)
    result = await h.client.list_models()
    assert result == [
        ModelInfo("openai/gpt-4o-mini", "GPT-4o mini", 128000, 0.15, 0.6),
        ModelInfo("test/tiny-context", "test/tiny-context", 1024),
    ]
    assert len(h.sleeps) == 1
    assert str(h.upstream.requests[-1].url) == BASE + "/models"
    assert h.upstream.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"
    assert h.limiter.calls == []  # the limiter paces chat starts only


async def test_list_models_errors(make) -> None:
    h = make(error(401, "User with this API key not found"))
    with pytest.raises(AuthFailed):
        await h.client.list_models()

    def broken() -> httpx.Response:
        return httpx.Response(200, text="<html>")

    h = make(broken)
    with pytest.raises(ServiceUnavailable):
        await h.client.list_models()
