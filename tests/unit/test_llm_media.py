"""MediaClient against httpx.MockTransport: request shapes, lenient parsing, shared retries."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

import httpx
import pytest

from services.llm import (
    AuthFailed,
    BadRequest,
    Balance,
    BalanceUnavailable,
    CircuitBreaker,
    CircuitOpen,
    FairRateLimiter,
    ImageResult,
    InsufficientFunds,
    LLMClient,
    MediaClient,
    ModerationRefused,
    RateLimited,
    ResponseTooLarge,
    RetryPolicy,
    ServiceUnavailable,
    UpstreamError,
    VideoState,
    VideoStatus,
)
from services.llm import media as media_module

API_KEY = "sk-test-SECRET-0123456789"
BASE = "https://llm.test/v1"
PNG = b"\x89PNG\r\n\x1a\n fake png bytes"

Reply = Callable[[httpx.Request], httpx.Response]


class Body(httpx.AsyncByteStream):
    """A streamed body of unknown length that records how much was read and being closed."""

    def __init__(self, parts: list[bytes | None]) -> None:
        self.parts = parts  # None: a part that never arrives
        self.sent = 0
        self.closed = False
        self.stalled = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            if part is None:
                self.stalled.set()
                await asyncio.Event().wait()
                continue
            self.sent += 1
            yield part

    async def aclose(self) -> None:
        self.closed = True


def ok(body: Any = None, *, content: bytes | None = None, **headers: str) -> Reply:
    def make(request: httpx.Request) -> httpx.Response:
        if content is not None:
            return httpx.Response(200, content=content, headers=headers)
        return httpx.Response(200, json=body, headers=headers)

    return make


def fail(status: int, message: str = "", headers: dict[str, str] | None = None) -> Reply:
    def make(request: httpx.Request) -> httpx.Response:
        body = {"error": {"message": message or f"error {status}", "code": status}}
        return httpx.Response(status, json=body, headers=headers)

    return make


class Upstream:
    """MockTransport handler playing a script of replies; the last one repeats."""

    def __init__(self, *script: Reply | BaseException) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return step(request)


class SpyLimiter(FairRateLimiter):
    def __init__(self) -> None:
        super().__init__(0)
        self.calls: list[Hashable] = []

    async def acquire(self, key: Hashable, on_wait: Any = None) -> None:
        self.calls.append(key)
        await super().acquire(key, on_wait)


class Harness:
    def __init__(self, upstream: Upstream, breaker: CircuitBreaker | None) -> None:
        self.upstream = upstream
        self.sleeps: list[float] = []
        self.limiter = SpyLimiter()
        self.breaker = breaker or CircuitBreaker(failure_threshold=100)
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))

        async def sleep(delay: float) -> None:
            self.sleeps.append(delay)

        common: dict[str, Any] = {
            "limiter": self.limiter,
            "breaker": self.breaker,
            "retry": RetryPolicy(),
            "app_title": "Test Bot",
            "sleep": sleep,
        }
        self.media = MediaClient(self.http, BASE + "/", API_KEY, **common)
        self.chat = LLMClient(self.http, BASE, API_KEY, **common)

    @property
    def last(self) -> httpx.Request:
        return self.upstream.requests[-1]


@pytest.fixture
async def harnesses() -> AsyncIterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for harness in made:
        await harness.http.aclose()


@pytest.fixture
def make(harnesses: list[Harness]) -> Callable[..., Harness]:
    def factory(*script: Reply | BaseException, breaker: CircuitBreaker | None = None) -> Harness:
        harness = Harness(Upstream(*script), breaker)
        harnesses.append(harness)
        return harness

    return factory


def multipart_fields(request: httpx.Request) -> dict[str, tuple[str | None, bytes]]:
    """name → (filename or None, content) of a multipart body (enough for httpx's encoder)."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in request.content.split(b"--" + boundary)[1:-1]:
        head, _, content = part.strip(b"\r\n").partition(b"\r\n\r\n")
        disposition = head.split(b"\r\n")[0].decode()
        name = disposition.split('name="')[1].split('"')[0]
        filename = (
            disposition.split('filename="')[1].split('"')[0]
            if "filename=" in head.decode()
            else None
        )
        fields[name] = (filename, content)
    return fields


async def transcribe(h: Harness, **kwargs: Any) -> str:
    args: dict[str, Any] = {
        "filename": "speech.mp3",
        "model": "stt-openai/whisper-1",
        "language": "ru",
        "user_key": 7,
    }
    args.update(kwargs)
    return await h.media.transcribe(b"ID3 audio bytes", **args)


# --- transcribe -------------------------------------------------------------------------------


async def test_transcribe_sends_multipart_and_reads_json(make) -> None:
    h = make(ok({"text": "  привет мир "}))
    assert await transcribe(h) == "привет мир"
    request = h.last
    assert request.method == "POST"
    assert str(request.url) == BASE + "/audio/transcriptions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["x-title"] == "Test Bot"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    fields = multipart_fields(request)
    assert fields["file"] == ("speech.mp3", b"ID3 audio bytes")
    assert fields["model"] == (None, b"stt-openai/whisper-1")
    assert fields["language"] == (None, b"ru")
    assert fields["response_format"] == (None, b"json")
    assert b"Content-Type: audio/mpeg" in request.content
    assert h.limiter.calls == [7]


async def test_transcribe_without_language_and_plain_text_answers(make) -> None:
    h = make(ok(content=b"plain transcript\n", **{"content-type": "text/plain"}))
    assert await transcribe(h, language=None) == "plain transcript"
    assert "language" not in multipart_fields(h.last)

    h = make(ok(content=b'"a json string"', **{"content-type": "application/json"}))
    assert await transcribe(h) == "a json string"
    h = make(ok(content=b"[inaudible] words", **{"content-type": "text/plain"}))
    assert await transcribe(h) == "[inaudible] words"
    h = make(ok({"text": None}))
    assert await transcribe(h) == ""


async def test_transcribe_errors(make) -> None:
    h = make(ok({"error": {"message": "Недостаточно средств на балансе"}}))
    with pytest.raises(InsufficientFunds):
        await transcribe(h)
    h = make(ok({"unexpected": 1}), ok({"text": "never"}))
    with pytest.raises(ServiceUnavailable):
        await transcribe(h)
    assert len(h.upstream.requests) == 1  # a 200 with garbage may have been billed


async def test_transcribe_retries_resend_the_whole_file(make) -> None:
    h = make(fail(502), httpx.ConnectError("refused"), ok({"text": "ok"}))
    assert await transcribe(h) == "ok"
    assert len(h.upstream.requests) == 3
    assert multipart_fields(h.upstream.requests[0]) == multipart_fields(h.last)
    assert len(h.sleeps) == 2
    assert h.limiter.calls == [7, 7, 7]  # every attempt is paced


# --- speech -----------------------------------------------------------------------------------


async def test_speech_returns_the_audio_bytes(make) -> None:
    h = make(ok(content=b"ID3\x04 mp3 data", **{"content-type": "audio/mpeg"}))
    audio = await h.media.speech("Hello there.", model="tts-openai/tts-1", voice="nova")
    assert audio == b"ID3\x04 mp3 data"
    assert str(h.last.url) == BASE + "/audio/speech"
    assert h.last.headers["content-type"] == "application/json"
    assert json.loads(h.last.content) == {
        "model": "tts-openai/tts-1",
        "input": "Hello there.",
        "voice": "nova",
        "response_format": "mp3",
    }


async def test_speech_answered_with_a_link_is_downloaded_without_the_key(make) -> None:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "cdn.example":
            return httpx.Response(200, content=b"RIFF wav", headers={"content-type": "audio/wav"})
        return httpx.Response(200, json={"url": "https://cdn.example/a/speech.wav"})

    h = make(route)
    audio = await h.media.speech("hi", model="tta-stable/stable-audio", voice="nova", user_key=3)
    assert audio == b"RIFF wav"
    download = h.last
    assert str(download.url) == "https://cdn.example/a/speech.wav"
    assert "authorization" not in download.headers
    assert "x-title" not in download.headers
    assert h.limiter.calls == [3]  # the download is not a paid start


async def test_speech_answered_with_base64(make) -> None:
    encoded = base64.b64encode(b"RIFF data").decode()
    h = make(ok({"data": [{"b64_json": encoded}]}))
    assert await h.media.speech("hi", model="m", voice="v") == b"RIFF data"
    # A JSON object is recognised even when the content type claims audio.
    h = make(
        ok(content=b'{"error": {"message": "model not found"}}', **{"content-type": "audio/mpeg"})
    )
    with pytest.raises(UpstreamError) as info:
        await h.media.speech("hi", model="m", voice="v")
    assert "model not found" in info.value.detail


async def test_speech_empty_and_oversized_answers(make, monkeypatch) -> None:
    h = make(ok(content=b"", **{"content-type": "audio/mpeg"}))
    with pytest.raises(ServiceUnavailable):
        await h.media.speech("hi", model="m", voice="v")
    assert len(h.upstream.requests) == 1

    monkeypatch.setattr(media_module, "MAX_SPEECH_BYTES", 10)
    body = Body([b"12345678", b"12345678", b"never read"])

    def big(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "audio/mpeg"}, stream=body)

    h = make(big)
    with pytest.raises(ResponseTooLarge):
        await h.media.speech("hi", model="m", voice="v")
    assert body.sent == 2 and body.closed  # counted while streaming, stopped at the cap
    assert len(h.upstream.requests) == 1


# --- images -----------------------------------------------------------------------------------


async def test_generate_image_by_url(make) -> None:
    h = make(ok({"data": [{"url": "https://cdn.example/i.png", "revised_prompt": "a red cat"}]}))
    result = await h.media.generate_image("cat", model="dall-e-3", size="1024x1024", user_key=1)
    assert result == ImageResult("https://cdn.example/i.png", None, "a red cat")
    assert str(h.last.url) == BASE + "/images/generations"
    assert json.loads(h.last.content) == {
        "model": "dall-e-3",
        "prompt": "cat",
        "n": 1,
        "size": "1024x1024",
    }


async def test_generate_image_base64(make) -> None:
    h = make(ok({"created": 1, "data": [{"b64_json": base64.b64encode(PNG).decode()}]}))
    result = await h.media.generate_image("cat", model="img-dummy/image")
    assert result == ImageResult(None, PNG)
    assert "size" not in json.loads(h.last.content)
    # URL-safe alphabet, no padding, line breaks: all seen in the wild.
    data = bytes(range(250, 256)) * 3
    encoded = base64.urlsafe_b64encode(data).decode().rstrip("=")
    h = make(ok({"data": [{"b64_json": encoded[:8] + "\n" + encoded[8:]}]}))
    assert (await h.media.generate_image("cat", model="m")).data == data


@pytest.mark.parametrize(
    "body",
    [{"data": []}, {"data": [{}]}, {"data": [{"b64_json": "!!!not base64"}]}, ["x"], "text"],
)
async def test_generate_image_malformed(make, body) -> None:
    h = make(ok(body))
    with pytest.raises(ServiceUnavailable):
        await h.media.generate_image("cat", model="m")
    assert len(h.upstream.requests) == 1


async def test_generate_image_moderation_is_not_retried(make) -> None:
    h = make(fail(403, "Your request was rejected by the safety system"), ok({"data": []}))
    with pytest.raises(ModerationRefused):
        await h.media.generate_image("forbidden", model="m")
    assert len(h.upstream.requests) == 1 and h.sleeps == []


# --- video ------------------------------------------------------------------------------------


async def test_start_video(make) -> None:
    h = make(ok({"request_id": "abc-123"}))
    request_id = await h.media.start_video(
        "panda", model="txt2vid-kling/standart", aspect_ratio="9:16", user_key=5
    )
    assert request_id == "abc-123"
    assert str(h.last.url) == BASE + "/video/generate"
    assert json.loads(h.last.content) == {
        "model": "txt2vid-kling/standart",
        "action": "generate",
        "prompt": "panda",
        "aspect_ratio": "9:16",
    }
    assert h.limiter.calls == [5]

    h = make(ok({"request_id": 42}))
    assert await h.media.start_video("p", model="m", image_url="data:image/jpeg;base64,AA") == "42"
    assert json.loads(h.last.content) == {
        "model": "m",
        "action": "generate",
        "prompt": "p",
        "image_url": "data:image/jpeg;base64,AA",
    }


async def test_start_video_errors(make) -> None:
    h = make(ok({"status": "error", "reason": "Insufficient funds on balance"}))
    with pytest.raises(InsufficientFunds):
        await h.media.start_video("p", model="m")
    h = make(ok({"status": "queued"}))
    with pytest.raises(ServiceUnavailable):
        await h.media.start_video("p", model="m")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"status": "IN_QUEUE"}, VideoStatus(VideoState.IN_QUEUE)),
        ({"status": "in_progress"}, VideoStatus(VideoState.IN_PROGRESS)),
        ({"status": "rendering frames"}, VideoStatus(VideoState.IN_PROGRESS)),
        ({}, VideoStatus(VideoState.IN_PROGRESS)),
        (
            {"status": "COMPLETED", "url": "https://cdn.example/v.mp4"},
            VideoStatus(VideoState.COMPLETED, "https://cdn.example/v.mp4"),
        ),
        (
            {"status": "succeeded", "output": ["https://cdn.example/o.mp4"]},
            VideoStatus(VideoState.COMPLETED, "https://cdn.example/o.mp4"),
        ),
        (
            {"status": "FAILED", "reason": "NSFW content"},
            VideoStatus(VideoState.FAILED, reason="NSFW content"),
        ),
        (
            {"status": "error", "error": {"message": "provider crashed"}},
            VideoStatus(VideoState.FAILED, reason="provider crashed"),
        ),
    ],
)
async def test_video_status_parsing(make, body, expected) -> None:
    h = make(ok(body))
    assert await h.media.video_status("abc 1") == expected
    assert h.last.method == "GET"
    assert h.last.url.path == "/v1/video/status"
    assert h.last.url.params["request_id"] == "abc 1"
    assert h.last.headers["authorization"] == f"Bearer {API_KEY}"


async def test_video_status_is_unpaced_ungated_and_retried(make) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=60)
    breaker.record_failure()  # open: paid calls would fail fast
    h = make(fail(502), httpx.ReadTimeout("slow"), ok({"status": "COMPLETED"}), breaker=breaker)
    status = await h.media.video_status("r1")
    assert status.state is VideoState.COMPLETED
    assert len(h.upstream.requests) == 3
    assert h.limiter.calls == []
    assert breaker.state == "open"  # polls do not report to the breaker either


# --- balance ----------------------------------------------------------------------------------


async def test_balance(make) -> None:
    h = make(
        ok(
            {
                "status": "ok",
                "data": {
                    "credits": "10.752448",
                    "subscription_status": "ok",
                    "subscription_end": "2024-05-02 00:08:02",
                    "user_status": "1",
                    "user_status_text": "Less than 500 credits on account. ",
                },
            }
        )
    )
    assert await h.media.balance() == Balance(
        credits=10.752448,
        subscription_status="ok",
        subscription_end="2024-05-02 00:08:02",
        user_status=1,
        user_status_text="Less than 500 credits on account.",
    )
    assert str(h.last.url) == BASE + "/balance"
    assert h.limiter.calls == []


async def test_balance_missing_fields_are_none(make) -> None:
    h = make(ok({"status": "ok", "data": {"credits": 3}}))
    assert await h.media.balance() == Balance(3.0, None, None, None, None)


async def test_balance_disabled(make) -> None:
    h = make(ok({"status": "error", "reason": "Balance API is disabled in account settings"}))
    with pytest.raises(BalanceUnavailable) as info:
        await h.media.balance()
    assert info.value.detail == "Balance API is disabled in account settings"
    assert len(h.upstream.requests) == 1

    # As an HTTP error too: "balance" in the text must not read as a funds problem.
    h = make(fail(403, "Balance API is disabled in account settings"))
    with pytest.raises(BalanceUnavailable):
        await h.media.balance()
    h = make(fail(400, "User with this API key not found"))
    with pytest.raises(AuthFailed):
        await h.media.balance()
    h = make(fail(500), ok({"status": "ok", "data": {"credits": "1"}}))
    assert (await h.media.balance()).credits == 1.0


# --- download ---------------------------------------------------------------------------------


async def test_download_sends_the_key_only_to_the_upstream_origin(make) -> None:
    h = make(ok(content=b"video"))
    assert await h.media.download(BASE + "/files/v.mp4", max_bytes=100) == b"video"
    assert h.last.headers["authorization"] == f"Bearer {API_KEY}"
    assert await h.media.download("files/rel.mp4", max_bytes=100) == b"video"
    assert str(h.last.url) == BASE + "/files/rel.mp4"
    assert "authorization" in h.last.headers

    for foreign in (
        "https://cdn.example/v.mp4",
        "http://llm.test/v1/files/v.mp4",  # same host, other scheme: another origin
        "https://llm.test:8443/v1/files/v.mp4",
    ):
        await h.media.download(foreign, max_bytes=100)
        assert "authorization" not in h.last.headers, foreign


async def test_download_redirect_away_drops_the_key(make) -> None:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "llm.test":
            return httpx.Response(302, headers={"location": "https://bucket.example/x.mp4"})
        return httpx.Response(200, content=b"moved video")

    h = make(route)
    assert await h.media.download(BASE + "/files/x.mp4", max_bytes=100) == b"moved video"
    first, second = h.upstream.requests
    assert "authorization" in first.headers
    assert "authorization" not in second.headers


async def test_download_size_cap(make) -> None:
    h = make(ok(content=b"x" * 101))  # Content-Length tells in advance
    with pytest.raises(ResponseTooLarge):
        await h.media.download("https://cdn.example/v.mp4", max_bytes=100)

    body = Body([b"x" * 60, b"x" * 60, b"x" * 60])

    def streamed(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body)

    h = make(streamed)
    with pytest.raises(ResponseTooLarge):
        await h.media.download("https://cdn.example/v.mp4", max_bytes=100)
    assert body.sent == 2 and body.closed
    assert len(h.upstream.requests) == 1
    assert await make(ok(content=b"x" * 100)).media.download("https://c.example/", max_bytes=100)


async def test_download_errors(make) -> None:
    h = make(fail(404, "no such file"), ok(content=b"never"))
    with pytest.raises(BadRequest) as info:  # not "model unavailable"
        await h.media.download("https://cdn.example/v.mp4", max_bytes=100)
    assert info.value.status == 404
    assert len(h.upstream.requests) == 1

    h = make(fail(503), httpx.RemoteProtocolError("cut"), ok(content=b"video"))
    assert await h.media.download("https://cdn.example/v.mp4", max_bytes=100) == b"video"
    assert len(h.sleeps) == 2

    with pytest.raises(BadRequest):
        await h.media.download("file:///etc/passwd", max_bytes=100)


async def test_download_data_url(make) -> None:
    h = make(ok(content=b"never"))
    url = "data:video/mp4;base64," + base64.b64encode(b"tiny video").decode()
    assert await h.media.download(url, max_bytes=100) == b"tiny video"
    with pytest.raises(ResponseTooLarge):
        await h.media.download(url, max_bytes=3)
    assert h.upstream.requests == []


# --- the shared retry / limiter / breaker path ------------------------------------------------


async def test_paid_calls_honour_retry_after_and_give_up(make) -> None:
    h = make(fail(429, "Too many requests", {"retry-after": "2"}), ok({"data": [{"url": "u"}]}))
    await h.media.generate_image("cat", model="m", user_key=9)
    assert h.sleeps == [2.0]
    assert h.limiter.calls == [9, 9]

    h = make(fail(429, "Too many requests", {"retry-after": "1"}))
    with pytest.raises(RateLimited) as info:
        await h.media.start_video("p", model="m")
    assert info.value.retry_after == 1.0
    assert len(h.upstream.requests) == 3


async def test_an_open_breaker_sends_no_paid_request(make) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=60)
    breaker.record_failure()
    h = make(ok({"text": "never"}), breaker=breaker)
    calls = [
        lambda: transcribe(h),
        lambda: h.media.speech("t", model="m", voice="v"),
        lambda: h.media.generate_image("p", model="m"),
        lambda: h.media.start_video("p", model="m"),
    ]
    for call in calls:
        with pytest.raises(CircuitOpen):
            await call()
    assert h.upstream.requests == []
    assert h.limiter.calls == []


async def test_media_and_chat_share_the_breaker(make) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=60)
    h = make(fail(500), breaker=breaker)
    for user in (1, 2, 3):  # a failed request counts once, however many attempts it took
        with pytest.raises(ServiceUnavailable):
            await h.media.speech("t", model="m", voice="v", user_key=user)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen):
        async for _ in h.chat.stream_chat(model="m", messages=[], max_tokens=1):
            pass


async def test_client_errors_keep_the_breaker_closed(make) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=60)
    h = make(fail(500), fail(400, "bad size"), fail(500), ok({"request_id": "r"}), breaker=breaker)
    with pytest.raises(BadRequest):
        await h.media.generate_image("p", model="m")
    assert await h.media.start_video("p", model="m") == "r"
    assert breaker.state == "closed"


async def test_the_api_key_never_leaks(make) -> None:
    h = make(fail(400, f"Incorrect API key provided: {API_KEY}"))
    with pytest.raises(AuthFailed) as info:
        await transcribe(h)
    error = info.value
    for text in (str(error), repr(error), error.detail, repr(h.media)):
        assert API_KEY not in text

    h = make(httpx.ConnectError(f"proxy said {API_KEY}"))
    with pytest.raises(ServiceUnavailable) as info:
        await h.media.balance()
    assert API_KEY not in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)

    h = make(ok({"status": "FAILED", "reason": f"bad key {API_KEY}"}))
    assert API_KEY not in ((await h.media.video_status("r")).reason or "")


async def test_cancelling_a_download_closes_the_response(make) -> None:
    body = Body([b"first part", None])

    def slow(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body)

    h = make(slow)
    task = asyncio.create_task(h.media.download("https://cdn.example/v.mp4", max_bytes=10**6))
    await asyncio.wait_for(body.stalled.wait(), 1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.closed
