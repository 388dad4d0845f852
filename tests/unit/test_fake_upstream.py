"""The fake VseGPT upstream behaves as the rest of the test bench expects."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import wave
from array import array
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from services.llm import (
    BalanceUnavailable,
    CircuitBreaker,
    FairRateLimiter,
    MediaClient,
    ModerationRefused,
    ResponseTooLarge,
    VideoState,
)
from tests.fakes.upstream_server import FakeUpstream, default_balance, default_models, tiny_png
from tests.unit.conftest import UPSTREAM_KEY

KEY = UPSTREAM_KEY


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


# --- media endpoints --------------------------------------------------------------------------


async def ffprobe(data: bytes, tmp_path: Path) -> dict[str, Any]:
    # A file, not a pipe: ffprobe reports the duration only for seekable input.
    path = tmp_path / "probe.bin"
    await asyncio.to_thread(path.write_bytes, data)
    proc = await asyncio.create_subprocess_exec(
        "ffprobe",
        "-v",
        "error",
        "-show_format",
        "-show_streams",
        "-of",
        "json",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


def wav_info(data: bytes) -> tuple[int, int, int, float]:
    with wave.open(io.BytesIO(data)) as w:
        return (
            w.getnchannels(),
            w.getframerate(),
            w.getsampwidth(),
            w.getnframes() / w.getframerate(),
        )


async def test_transcription_records_the_multipart_upload(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    files = {"file": ("voice.ogg", b"OggS fake voice", "audio/ogg")}
    form = {"model": "stt-openai/whisper-1", "language": "ru", "response_format": "json"}
    resp = await client.post("/audio/transcriptions", files=files, data=form)
    assert resp.status_code == 200
    assert resp.json() == {"text": "hello from the voice note"}
    (rec,) = upstream.requests_to("audio/transcriptions")
    assert rec.files == {"file": b"OggS fake voice"}
    assert rec.filenames == {"file": "voice.ogg"}
    assert rec.form == form
    assert rec.json is None and rec.completed

    upstream.transcript = "другой текст"
    resp = await client.post(
        "/audio/transcriptions", files=files, data={**form, "response_format": "text"}
    )
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == "другой текст"


async def test_transcription_rejects_an_empty_or_missing_file(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    form = {"model": "stt-openai/whisper-1"}
    empty = {"file": ("voice.ogg", b"", "audio/ogg")}
    resp = await client.post("/audio/transcriptions", files=empty, data=form)
    assert resp.status_code == 400
    assert "empty" in resp.json()["error"]["message"]
    resp = await client.post("/audio/transcriptions", data=form)
    assert resp.status_code == 400
    assert [r.status for r in upstream.requests_to("/v1/audio/transcriptions")] == [400, 400]


async def test_speech_is_a_real_wav_whose_length_follows_the_input(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    body = {"model": "tts-openai/tts-1", "voice": "nova", "input": "x" * 40}
    resp = await client.post("/audio/speech", json={**body, "response_format": "mp3"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "audio/wav"  # WAV whatever was asked
    channels, rate, width, seconds = wav_info(resp.content)
    assert (channels, rate, width) == (1, 24000, 2)
    assert seconds == pytest.approx(2.0)
    # A real tone, not silence: the audio helpers check loudness.
    samples = array("h", resp.content[44:])
    assert max(samples) > 8000

    resp = await client.post("/audio/speech", json={**body, "input": "y" * 4096})
    assert wav_info(resp.content)[3] == pytest.approx(30.0)  # capped
    assert upstream.speech_inputs == ["x" * 40, "y" * 4096]

    resp = await client.post("/audio/speech", json={**body, "input": "z" * 4097})
    assert resp.status_code == 400
    assert "4096" in resp.json()["error"]["message"]
    resp = await client.post("/audio/speech", json={**body, "input": ""})
    assert resp.status_code == 400
    assert len(upstream.speech_inputs) == 2


async def test_speech_as_mp3_and_as_a_link(
    upstream: FakeUpstream, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    body = {"model": "tts-openai/tts-1", "voice": "nova", "input": "hello world, twenty"}
    upstream.speech_format = "mp3"
    resp = await client.post("/audio/speech", json=body)
    assert resp.headers["content-type"] == "audio/mpeg"
    probe = await ffprobe(resp.content, tmp_path)
    assert probe["streams"][0]["codec_name"] == "mp3"
    assert float(probe["format"]["duration"]) == pytest.approx(0.95, abs=0.1)

    upstream.speech_format = "wav"
    upstream.speech_mode = "url"
    resp = await client.post("/audio/speech", json=body)
    url = resp.json()["url"]
    assert url.startswith(upstream.url + "/files/") and url.endswith(".wav")
    audio = await client.get(url, headers={"Authorization": ""})  # public, like a CDN link
    assert audio.status_code == 200
    assert wav_info(audio.content)[3] == pytest.approx(0.05 * len(body["input"]))


async def test_images_by_url_and_base64(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    body = {"model": "dall-e-3", "prompt": "a cat", "n": 1, "size": "1024x1024"}
    resp = await client.post("/images/generations", json=body)
    assert resp.status_code == 200
    (item,) = resp.json()["data"]
    assert item["revised_prompt"] == "a cat"
    png = await client.get(item["url"])
    assert png.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(png.content)) as image:
        image.load()
        assert image.format == "PNG" and image.size == (64, 64)

    upstream.image_mode = "b64_json"
    resp = await client.post("/images/generations", json=body)
    (item,) = resp.json()["data"]
    assert "url" not in item
    assert base64.b64decode(item["b64_json"]) == png.content == tiny_png()


async def test_images_moderation(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    body = {"model": "dall-e-3", "prompt": "something FORBIDDEN here"}
    resp = await client.post("/images/generations", json=body)
    assert resp.status_code == 403
    assert "safety system" in resp.json()["error"]["message"]


async def poll(client: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    resp = await client.get("/video/status", params={"request_id": request_id})
    assert resp.status_code == 200
    return resp.json()


async def test_video_walks_to_a_real_mp4(
    upstream: FakeUpstream, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    body = {"model": "txt2vid-kling/standart", "action": "generate", "prompt": "panda"}
    resp = await client.post("/video/generate", json={**body, "aspect_ratio": "16:9"})
    request_id = resp.json()["request_id"]
    assert request_id.startswith("vid-")
    assert upstream.video_jobs[request_id]["aspect_ratio"] == "16:9"
    states = [(await poll(client, request_id))["status"] for _ in range(3)]
    assert states == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    final = await poll(client, request_id)  # the last step repeats
    assert final["status"] == "COMPLETED"
    assert upstream.video_polls == {request_id: 4}

    video = await client.get(final["url"])
    assert video.headers["content-type"] == "video/mp4"
    probe = await ffprobe(video.content, tmp_path)
    assert "mp4" in probe["format"]["format_name"]
    assert probe["streams"][0]["width"] == 64
    assert float(probe["format"]["duration"]) == pytest.approx(1.0, abs=0.2)

    second = (await client.post("/video/generate", json=body)).json()["request_id"]
    assert second != request_id
    assert upstream.video_polls[second] == 0


async def test_video_failure_custom_steps_and_errors(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    body = {"model": "txt2vid-kling/standart", "action": "generate", "prompt": "panda"}
    upstream.video_steps = ["IN_PROGRESS", "COMPLETED"]
    upstream.video_fail_reason = "Content policy violation"
    request_id = (await client.post("/video/generate", json=body)).json()["request_id"]
    assert (await poll(client, request_id))["status"] == "IN_PROGRESS"
    final = await poll(client, request_id)
    assert final["status"] == "FAILED" and final["reason"] == "Content policy violation"
    assert "url" not in final

    resp = await client.get("/video/status", params={"request_id": "vid-unknown"})
    assert resp.status_code == 404
    resp = await client.post("/video/generate", json={**body, "action": "edit"})
    assert resp.status_code == 400
    resp = await client.post("/video/generate", json={**body, "prompt": "forbidden"})
    assert resp.status_code == 403


async def test_balance_endpoint(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    resp = await client.get("/balance")
    assert resp.json() == default_balance()
    assert resp.json()["data"]["credits"] == "10.75"
    upstream.balance_payload = {"status": "ok", "data": {"credits": 1, "user_status": 2}}
    assert (await client.get("/balance")).json()["data"]["user_status"] == 2
    upstream.balance_disabled = True
    assert (await client.get("/balance")).json() == {
        "status": "error",
        "reason": "Balance API is disabled in account settings",
    }


async def test_media_auth_faults_and_rate(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    image = await client.post("/images/generations", json={"model": "m", "prompt": "p"})
    url = image.json()["data"][0]["url"]
    async with httpx.AsyncClient(base_url=upstream.url) as anonymous:
        for method, path in [
            ("POST", "/audio/transcriptions"),
            ("POST", "/audio/speech"),
            ("POST", "/images/generations"),
            ("POST", "/video/generate"),
            ("GET", "/video/status?request_id=vid-1"),
            ("GET", "/balance"),
        ]:
            resp = await anonymous.request(method, path, headers={"Authorization": "Bearer bad"})
            assert resp.status_code == 400, path
            assert resp.json()["error"]["message"] == "User with this API key not found"
        assert (await anonymous.get(url)).status_code == 200  # result links are public
        upstream.files_require_auth = True
        assert (await anonymous.get(url)).status_code == 400
    assert (await client.get(url)).status_code == 200
    assert (await client.get("/files/nothing.png")).status_code == 404

    upstream.fail_next(502, path="/audio/speech")
    speech = {"model": "m", "voice": "nova", "input": "hi"}
    assert (await client.post("/audio/speech", json=speech)).status_code == 502
    assert (await client.post("/audio/speech", json=speech)).status_code == 200

    upstream.enforce_rps(1.0)  # paid media POSTs count like chat starts
    assert (await client.post("/audio/speech", json=speech)).status_code == 200
    assert (await client.post("/images/generations", json=speech)).status_code == 429
    assert (await client.get("/balance")).status_code == 200  # free calls are not counted
    assert upstream.rejected_429 == 1


async def test_media_client_against_the_fake(upstream: FakeUpstream) -> None:
    """The production MediaClient and the fake agree on every endpoint."""
    async with httpx.AsyncClient(timeout=10) as http:
        media = MediaClient(
            http, upstream.url, KEY, limiter=FairRateLimiter(0), breaker=CircuitBreaker()
        )
        text = await media.transcribe(
            b"OggS voice", filename="voice.ogg", model="stt-openai/whisper-1", language=None
        )
        assert text == "hello from the voice note"
        rec = upstream.requests_to("audio/transcriptions")[-1]
        assert rec.files["file"] == b"OggS voice" and "language" not in rec.form

        audio = await media.speech("hello", model="tts-openai/tts-1", voice="nova")
        assert wav_info(audio)[3] == pytest.approx(0.25)
        upstream.speech_mode = "url"
        assert await media.speech("hello", model="tts-openai/tts-1", voice="nova") == audio

        image = await media.generate_image("a cat", model="dall-e-3")
        assert image.url is not None and image.data is None
        assert await media.download(image.url, max_bytes=1_000_000) == tiny_png()
        upstream.image_mode = "b64_json"
        assert (await media.generate_image("a cat", model="dall-e-3")).data == tiny_png()
        with pytest.raises(ModerationRefused):
            await media.generate_image("forbidden", model="dall-e-3")

        request_id = await media.start_video("panda", model="txt2vid-kling/standart")
        states = [(await media.video_status(request_id)).state for _ in range(3)]
        assert states == [VideoState.IN_QUEUE, VideoState.IN_PROGRESS, VideoState.COMPLETED]
        status = await media.video_status(request_id)
        assert status.url is not None
        video = await media.download(status.url, max_bytes=1_000_000)
        assert video[4:8] == b"ftyp"
        with pytest.raises(ResponseTooLarge):
            await media.download(status.url, max_bytes=100)

        balance = await media.balance()
        assert balance.credits == 10.75 and balance.user_status == 0
        upstream.balance_disabled = True
        with pytest.raises(BalanceUnavailable):
            await media.balance()


# --- misbehaviour ------------------------------------------------------------------------------


async def test_misbehaviours_and_redirects(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    with pytest.raises(ValueError):
        upstream.misbehave_next("explode")
    upstream.misbehave_next("endless_line", size=256 * 1024)
    body = (await client.post("/chat/completions", json={})).content
    assert body.startswith(b"data: aaaa") and b"\n" not in body
    assert upstream.requests[-1].bytes_sent == 256 * 1024
    upstream.misbehave_next("drip", path="balance", interval=0.01, size=5)
    assert (await client.get("/balance")).content == b'{"tex'
    upstream.misbehave_next("huge_headers", size=1024 * 1024)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/chat/completions", json={})
    upstream.add_file("b.txt", b"hello", "text/plain")
    link = upstream.redirect_file("a.txt", upstream.file_url("b.txt"))
    response = await client.get(link, follow_redirects=True)
    assert response.content == b"hello"
    assert [r.status for r in upstream.requests[-2:]] == [302, 200]
