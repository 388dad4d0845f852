"""The fake MashaGPT answers like the real one (energy, tasks, refusals), so tests can trust it."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.fakes.mashagpt_server import FakeMashaGPT, default_models, task_kind

KEY = "masha-test-key"


@pytest.fixture(scope="module")
async def _server() -> AsyncIterator[FakeMashaGPT]:
    async with FakeMashaGPT(api_key=KEY) as server:
        yield server


@pytest.fixture
async def masha(_server: FakeMashaGPT) -> FakeMashaGPT:
    _server.reset()
    return _server


@pytest.fixture
async def api(masha: FakeMashaGPT) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=masha.url, headers={"x-api-key": KEY}, timeout=5.0
    ) as client:
        yield client


def chat_body(text: Any = "hello world", *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 100,
        "stream": stream,
    }
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


async def stream_events(api: httpx.AsyncClient, body: dict[str, Any]) -> list[Any]:
    async with api.stream("POST", "/chat/completions", json={**body, "stream": True}) as resp:
        assert resp.status_code == 200
        return await read_events(resp)


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "recorded"),
    [
        ({"x-api-key": KEY}, 200, ("x-api-key",)),
        ({"Authorization": f"Bearer {KEY}"}, 200, ("authorization",)),
        ({"x-api-key": KEY, "Authorization": f"Bearer {KEY}"}, 200, ("x-api-key", "authorization")),
        ({}, 401, ()),
        ({"x-api-key": "wrong"}, 401, ("x-api-key",)),
        ({"Authorization": f"Basic {KEY}"}, 401, ("authorization",)),
        ({"x-api-key": KEY, "Authorization": "Bearer wrong"}, 401, ("x-api-key", "authorization")),
    ],
    ids=["x-api-key", "bearer", "both", "none", "wrong-key", "basic", "one-wrong"],
)
async def test_key_in_either_header(
    masha: FakeMashaGPT, headers: dict[str, str], status: int, recorded: tuple[str, ...]
) -> None:
    async with httpx.AsyncClient(base_url=masha.url, headers=headers) as client:
        resp = await client.post("/chat/completions", json=chat_body())
    assert resp.status_code == status
    if status == 401:
        assert resp.json()["error"]["message"].startswith("Invalid API key")
    (rec,) = masha.chat_requests()
    assert rec.auth_headers == recorded


# --- chat -----------------------------------------------------------------------------------


async def test_stream_carries_energy_in_the_usage_chunk(
    masha: FakeMashaGPT, api: httpx.AsyncClient
) -> None:
    masha.chunks = 3
    events = await stream_events(api, chat_body(stream_options={"include_usage": True}))
    assert events[-1] == "[DONE]"
    usage_event, finish_event = events[-2], events[-3]
    content = events[:-3]
    assert len(content) == 3
    assert all(e["object"] == "chat.completion.chunk" for e in events[:-1])
    assert len({e["id"] for e in events[:-1]}) == 1  # every chunk has the same id
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"]["content"] for e in content)
    assert text == "Echo: hello world"
    assert finish_event["choices"][0]["finish_reason"] == "stop"
    assert usage_event["choices"] == []
    assert usage_event["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 5,
        "total_tokens": 8,
        "prompt_energy": 3,
        "completion_energy": 15,
        "total_energy": 18,
    }
    assert masha.chat_requests()[0].completed

    events = await stream_events(api, chat_body())  # no stream_options: no usage chunk
    assert not any("usage" in e for e in events if isinstance(e, dict))


async def test_non_streamed_answer_and_scripts(masha: FakeMashaGPT, api: httpx.AsyncClient) -> None:
    masha.energy_per_token = (2, 10)
    body = (await api.post("/chat/completions", json=chat_body("hi"))).json()
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Echo: hi"}
    usage = body["usage"]
    assert (usage["prompt_energy"], usage["completion_energy"], usage["total_energy"]) == (
        2,
        20,
        22,
    )

    masha.script_next("Привет", "!", finish_reason="length")
    events = await stream_events(api, chat_body())
    assert [e["choices"][0]["delta"].get("content") for e in events[:2]] == ["Привет", "!"]
    assert events[2]["choices"][0]["finish_reason"] == "length"

    masha.reply = lambda payload: f"model={payload['model']}"
    body = (await api.post("/chat/completions", json=chat_body())).json()
    assert body["choices"][0]["message"]["content"] == "model=gpt-4o-mini"


async def test_vision_parts_in_openais_form_only(api: httpx.AsyncClient) -> None:
    url = "data:image/jpeg;base64,AAAA"
    good = [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url}}]
    resp = await api.post("/chat/completions", json=chat_body(good))
    assert resp.json()["choices"][0]["message"]["content"] == "Echo: what?"

    bare = [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": url}]
    resp = await api.post("/chat/completions", json=chat_body(bare))
    assert resp.status_code == 400
    assert "image_url must be an object" in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"model": "GigaChat-2"}, 404),
        ({"messages": []}, 400),
        ({"messages": [{"role": "robot", "content": "x"}]}, 400),
        ({"max_tokens": "100"}, 400),
        ({"stream": "yes"}, 400),
    ],
)
async def test_chat_refusals(api: httpx.AsyncClient, change: dict[str, Any], status: int) -> None:
    resp = await api.post("/chat/completions", json={**chat_body(), **change})
    assert resp.status_code == status
    assert isinstance(resp.json()["error"]["message"], str)


async def test_a_client_that_goes_away_is_noticed(
    masha: FakeMashaGPT, api: httpx.AsyncClient
) -> None:
    masha.hold_answers()
    waiting = asyncio.create_task(masha.wait_for_requests(1, path="chat/completions"))
    async with api.stream("POST", "/chat/completions", json=chat_body(stream=True)) as resp:
        assert resp.status_code == 200  # headers are out; the answer waits
    (rec,) = await asyncio.wait_for(waiting, 2.0)
    await asyncio.wait_for(rec.disconnected_event.wait(), 2.0)
    assert rec.disconnected and not rec.completed and rec.chunks_sent == 0


async def test_fail_next(masha: FakeMashaGPT, api: httpx.AsyncClient) -> None:
    masha.fail_next(502, times=2)
    masha.fail_next(429, "slow down", path="tasks/flux-pro")
    for _ in range(2):
        resp = await api.post("/chat/completions", json=chat_body())
        assert (resp.status_code, resp.json()) == (502, {"error": {"message": "Bad gateway"}})
    assert (await api.post("/chat/completions", json=chat_body())).status_code == 200
    resp = await api.post("/tasks/flux-pro", json={"prompt": "cat"})
    assert (resp.status_code, resp.json()) == (429, {"error": {"message": "slow down"}})


# --- models ---------------------------------------------------------------------------------


async def test_models_can_be_switched_off(masha: FakeMashaGPT, api: httpx.AsyncClient) -> None:
    body = (await api.get("/models")).json()
    assert body == {"object": "list", "data": default_models()}
    assert {"id", "object", "owned_by"} <= set(body["data"][0])
    masha.models_available = False
    resp = await api.get("/models")
    assert resp.status_code == 404
    # Chat still knows the models.
    assert (await api.post("/chat/completions", json=chat_body())).status_code == 200


# --- tasks ----------------------------------------------------------------------------------


async def poll(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    resp = await api.get(f"/tasks/{task_id}")
    assert resp.status_code == 200
    body: dict[str, Any] = resp.json()
    return body


async def test_image_task_walks_to_a_real_png(masha: FakeMashaGPT, api: httpx.AsyncClient) -> None:
    body = {"prompt": "a red fox", "aspectRatio": "16:9"}
    resp = await api.post("/tasks/flux-pro", json=body)
    assert resp.status_code == 200
    task_id = resp.json()["id"]
    assert set(resp.json()) == {"id"}
    assert masha.tasks[task_id].body == body and masha.tasks[task_id].kind == "image"

    states = [(await poll(api, task_id))["status"] for _ in range(2)]
    assert states == ["PENDING", "PROCESSING"]
    final = await poll(api, task_id)
    assert final["status"] == "COMPLETED"
    (url,) = final["output"]
    assert url.startswith(masha.origin + "/files/") and url.endswith(".png")
    assert (await poll(api, task_id))["output"] == [url]  # the last step repeats
    assert masha.tasks[task_id].polls == 4

    async with httpx.AsyncClient() as anonymous:  # result links need no key
        image = await anonymous.get(url)
    assert image.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(image.content)) as picture:
        assert picture.format == "PNG" and picture.size == (64, 64)
    assert masha.requests[-1].auth_headers == ()

    masha.output_as_objects = True
    masha.task_steps = ["COMPLETED"]
    task_id = (await api.post("/tasks/gpt-image-1", json={"prompt": "cat"})).json()["id"]
    (item,) = (await poll(api, task_id))["output"]
    assert set(item) == {"url"} and item["url"].endswith(".png")


async def test_failed_task(masha: FakeMashaGPT, api: httpx.AsyncClient) -> None:
    masha.fail_task_next("NSFW content detected")
    failing = (await api.post("/tasks/midjourney", json={"prompt": "x"})).json()["id"]
    fine = (await api.post("/tasks/midjourney", json={"prompt": "y"})).json()["id"]
    assert [(await poll(api, failing))["status"] for _ in range(2)] == ["PENDING", "PROCESSING"]
    assert await poll(api, failing) == {
        "id": failing,
        "status": "FAILED",
        "errorMessage": "NSFW content detected",
    }
    assert [(await poll(api, fine))["status"] for _ in range(3)][-1] == "COMPLETED"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/tasks/stable-diffusion-9", {"prompt": "x"}, "Unknown task model"),
        (
            "/tasks/flux-pro",
            {"prompt": "x", "aspect_ratio": "1:1"},
            "Invalid request: unknown field 'aspect_ratio' (fields are camelCase)",
        ),
        (
            "/tasks/kling-v2",
            {"prompt": "x", "image_url": "https://a/b.png"},
            "Invalid request: unknown field 'image_url' (fields are camelCase)",
        ),
        ("/tasks/flux-pro", {"prompt": " "}, "Invalid request: 'prompt' is required"),
        (
            "/tasks/flux-pro",
            {"prompt": "x", "aspectRatio": "wide"},
            "Invalid request: 'aspectRatio' must look like '16:9'",
        ),
        (
            "/tasks/veo-3",
            {"prompt": "x", "imageUrl": "file:///etc/passwd"},
            "Invalid request: 'imageUrl' must be an http(s) or data: URL",
        ),
    ],
)
async def test_task_refusals(
    masha: FakeMashaGPT, api: httpx.AsyncClient, path: str, body: dict[str, Any], message: str
) -> None:
    resp = await api.post(path, json=body)
    assert (resp.status_code, resp.json()) == (400, {"error": {"message": message}})
    assert masha.tasks == {}


async def test_unknown_task_id_and_keyless_task_calls(
    masha: FakeMashaGPT, api: httpx.AsyncClient
) -> None:
    resp = await api.get("/tasks/nope")
    assert (resp.status_code, resp.json()) == (404, {"error": {"message": "Task not found"}})
    async with httpx.AsyncClient(base_url=masha.url) as anonymous:
        assert (await anonymous.post("/tasks/flux-pro", json={"prompt": "x"})).status_code == 401


async def test_video_task_links_an_mp4(masha: FakeMashaGPT, api: httpx.AsyncClient) -> None:
    assert (task_kind("kling-v2"), task_kind("Sora-2"), task_kind("dall-e-3")) == (
        "video",
        "video",
        "image",
    )
    body = {"prompt": "a panda", "imageUrl": "https://example.com/panda.jpg"}
    task_id = (await api.post("/tasks/kling-v2", json=body)).json()["id"]
    final = [await poll(api, task_id) for _ in range(3)][-1]
    (url,) = final["output"]
    assert url.endswith(".mp4")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: the MP4 itself cannot be made here")
    async with httpx.AsyncClient(timeout=30.0) as anonymous:
        video = await anonymous.get(url)
    assert video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"
