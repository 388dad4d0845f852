"""MashaGPT's task API against httpx.MockTransport: starting, polling, failures, downloads."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

import httpx
import pytest

from services.llm import (
    BadRequest,
    CircuitBreaker,
    FairRateLimiter,
    ImageResult,
    ModelUnavailable,
    ResponseTooLarge,
    RetryPolicy,
    ServiceUnavailable,
    VideoState,
    VideoStatus,
)
from services.llm.mashagpt import MashaTasks
from services.llm.mashagpt.tasks import aspect_ratio_for

API_KEY = "masha-SECRET-key-0123456789"
BASE = "https://api.masha.test/v1"
CDN = "https://cdn.storage.test/out/picture.png"
PNG = b"\x89PNG\r\n\x1a\n fake png bytes"

Reply = Callable[[httpx.Request], httpx.Response]


def ok(body: Any) -> Reply:
    return lambda _: httpx.Response(200, json=body)


def status(state: str, **fields: Any) -> Reply:
    return ok({"id": "t-1", "status": state, **fields})


def fail(code: int, message: str) -> Reply:
    return lambda _: httpx.Response(code, json={"error": {"message": message}})


class Upstream:
    """Replies per "METHOD URL", played in order; the last one repeats."""

    def __init__(self, routes: dict[str, list[Reply]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        script = self.routes[f"{request.method} {request.url}"]
        step = script.pop(0) if len(script) > 1 else script[0]
        return step(request)

    def sent(self, method_url: str) -> list[httpx.Request]:
        return [r for r in self.requests if f"{r.method} {r.url}" == method_url]


class Clock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class SpyLimiter(FairRateLimiter):
    def __init__(self) -> None:
        super().__init__(0)
        self.calls: list[Hashable] = []

    async def acquire(self, key: Hashable, on_wait: Any = None) -> None:
        self.calls.append(key)


class Harness:
    def __init__(self, upstream: Upstream, **options: Any) -> None:
        self.upstream = upstream
        self.clock = Clock()
        self.limiter = SpyLimiter()
        self.http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
        settings: dict[str, Any] = {
            "limiter": self.limiter,
            "breaker": CircuitBreaker(failure_threshold=100),
            "retry": RetryPolicy(max_retries=0),
            "sleep": self.clock.sleep,
            "clock": self.clock,
        }
        settings.update(options)
        self.tasks = MashaTasks(self.http, BASE, API_KEY, **settings)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(routes: dict[str, list[Reply]], **options: Any) -> Harness:
        harness = Harness(Upstream(routes), **options)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        await harness.http.aclose()


START = f"POST {BASE}/tasks/flux-pro"
POLL = f"GET {BASE}/tasks/t-1"
FETCH = f"GET {CDN}"


def picture_routes(*polls: Reply) -> dict[str, list[Reply]]:
    return {
        START: [ok({"id": "t-1"})],
        POLL: list(polls),
        FETCH: [lambda _: httpx.Response(200, content=PNG)],
    }


def has_key(request: httpx.Request) -> bool:
    return API_KEY in str(request.headers)


# --- starting -------------------------------------------------------------------------------


async def test_start_video_sends_camel_case_body_with_both_headers(make) -> None:
    h = make({f"POST {BASE}/tasks/kling-v2": [ok({"id": "vid-7"})]})
    task_id = await h.tasks.start_video(
        "a cat surfing",
        model="kling-v2",
        aspect_ratio="9:16",
        image_url="https://files.test/cat.jpg",
        user_key=42,
    )
    assert task_id == "vid-7"
    request = h.upstream.requests[0]
    assert json.loads(request.content) == {
        "prompt": "a cat surfing",
        "aspectRatio": "9:16",
        "imageUrl": "https://files.test/cat.jpg",
    }
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert h.limiter.calls == [42]  # a paid start is paced


async def test_start_leaves_out_what_was_not_given(make) -> None:
    h = make({f"POST {BASE}/tasks/kling-v2": [ok({"id": 12})]})
    assert await h.tasks.start_video("waves", model="kling-v2") == "12"
    assert json.loads(h.upstream.requests[0].content) == {"prompt": "waves"}


async def test_unknown_task_model_is_model_unavailable(make) -> None:
    h = make({f"POST {BASE}/tasks/nope": [fail(400, "Unknown task model")]})
    with pytest.raises(ModelUnavailable):
        await h.tasks.start_video("waves", model="nope")


async def test_unknown_task_model_in_a_200_answer_too(make) -> None:
    h = make({f"POST {BASE}/tasks/nope": [ok({"errorMessage": "Unknown task model: nope"})]})
    with pytest.raises(ModelUnavailable):
        await h.tasks.start_video("waves", model="nope")


async def test_other_400_stays_bad_request(make) -> None:
    h = make({f"POST {BASE}/tasks/kling-v2": [fail(400, "prompt is required")]})
    with pytest.raises(BadRequest) as caught:
        await h.tasks.start_video("", model="kling-v2")
    assert type(caught.value) is BadRequest


# --- status ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("COMPLETED", VideoState.COMPLETED),
        ("FAILED", VideoState.FAILED),
        ("PENDING", VideoState.IN_QUEUE),
        ("QUEUED", VideoState.IN_QUEUE),
        ("PROCESSING", VideoState.IN_PROGRESS),
        ("RUNNING", VideoState.IN_PROGRESS),
        ("running", VideoState.IN_PROGRESS),
        ("SOMETHING_NEW", VideoState.IN_PROGRESS),
    ],
)
async def test_status_mapping(make, state: str, expected: VideoState) -> None:
    h = make({POLL: [status(state)]})
    assert (await h.tasks.video_status("t-1")).state is expected


@pytest.mark.parametrize(
    "output",
    [[CDN, "https://cdn.storage.test/other.png"], [{"url": CDN}, {"url": "x"}], CDN],
)
async def test_status_url_is_the_first_output(make, output: Any) -> None:
    h = make({POLL: [status("COMPLETED", output=output)]})
    assert await h.tasks.video_status("t-1") == VideoStatus(VideoState.COMPLETED, CDN)


async def test_status_is_unpaced_and_escapes_the_id(make) -> None:
    h = make({f"GET {BASE}/tasks/a%2Fb": [status("RUNNING")]})
    await h.tasks.video_status("a/b")
    assert h.limiter.calls == []


async def test_failed_status_reason_is_redacted(make) -> None:
    h = make({POLL: [status("FAILED", errorMessage=f"quota of key {API_KEY} exceeded")]})
    got = await h.tasks.video_status("t-1")
    assert got.state is VideoState.FAILED
    assert got.reason is not None and "exceeded" in got.reason
    assert API_KEY not in got.reason


async def test_missing_task_is_a_refusal_not_a_model_problem(make) -> None:
    h = make({POLL: [fail(404, "Task not found")]})
    with pytest.raises(BadRequest) as caught:
        await h.tasks.video_status("t-1")
    assert type(caught.value) is BadRequest


async def test_huge_status_answer_is_refused(make) -> None:
    padding = "x" * (2 * 1024 * 1024)
    h = make({POLL: [status("RUNNING", padding=padding)]})
    with pytest.raises(ResponseTooLarge):
        await h.tasks.video_status("t-1")


# --- pictures -------------------------------------------------------------------------------


async def test_generate_image_polls_until_completed_and_downloads(make) -> None:
    h = make(
        picture_routes(
            status("QUEUED"), status("PROCESSING"), status("COMPLETED", output=[{"url": CDN}])
        )
    )
    result = await h.tasks.generate_image("a red fox", model="flux-pro", size="1792x1024")
    assert result == ImageResult(url=CDN, data=PNG)
    assert json.loads(h.upstream.sent(START)[0].content) == {
        "prompt": "a red fox",
        "aspectRatio": "16:9",
    }
    assert len(h.upstream.sent(POLL)) == 3
    assert h.clock.sleeps == [2.0, 2.0, 2.0]
    # The picture lives on another host: it never sees the key.
    (fetch,) = h.upstream.sent(FETCH)
    assert not has_key(fetch)
    assert "x-api-key" not in fetch.headers and "authorization" not in fetch.headers


async def test_generate_image_failed_task_is_bad_request(make) -> None:
    h = make(picture_routes(status("RUNNING"), status("FAILED", errorMessage="NSFW prompt")))
    with pytest.raises(BadRequest) as caught:
        await h.tasks.generate_image("something", model="flux-pro")
    assert caught.value.detail == "NSFW prompt"


async def test_generate_image_failed_task_detail_has_no_key(make) -> None:
    h = make(picture_routes(status("FAILED", errorMessage=f"bad key {API_KEY}")))
    with pytest.raises(BadRequest) as caught:
        await h.tasks.generate_image("something", model="flux-pro")
    assert API_KEY not in caught.value.detail


async def test_generate_image_times_out(make) -> None:
    h = make(picture_routes(status("RUNNING")), poll_seconds=2.0, timeout_seconds=7.0)
    with pytest.raises(ServiceUnavailable) as caught:
        await h.tasks.generate_image("slow", model="flux-pro")
    assert type(caught.value) is ServiceUnavailable
    assert h.clock.sleeps == [2.0, 2.0, 2.0, 1.0]  # never waits past the timeout
    assert h.clock.now == 7.0
    assert h.upstream.sent(FETCH) == []


async def test_generate_image_polls_on_through_an_upstream_hiccup(
    make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h = make(picture_routes(fail(503, "overloaded"), status("COMPLETED", output=[CDN])))
    result = await h.tasks.generate_image("a red fox", model="flux-pro")
    assert result.data == PNG
    assert len(h.upstream.sent(POLL)) == 2
    assert API_KEY not in caplog.text
    assert "a red fox" not in caplog.text


async def test_generate_image_completed_without_output(make) -> None:
    h = make(picture_routes(status("COMPLETED", output=[])))
    with pytest.raises(ServiceUnavailable):
        await h.tasks.generate_image("a red fox", model="flux-pro")


# --- downloads ------------------------------------------------------------------------------


async def test_download_from_another_origin_sends_no_key(make) -> None:
    h = make({FETCH: [lambda _: httpx.Response(200, content=PNG)]})
    assert await h.tasks.download(CDN, max_bytes=1024) == PNG
    assert not has_key(h.upstream.requests[0])


async def test_redirect_away_from_the_api_drops_the_key(make) -> None:
    own = f"{BASE}/files/picture.png"
    h = make(
        {
            f"GET {own}": [lambda _: httpx.Response(302, headers={"location": CDN})],
            FETCH: [lambda _: httpx.Response(200, content=PNG)],
        }
    )
    assert await h.tasks.download(own, max_bytes=1024) == PNG
    first, second = h.upstream.requests
    assert first.headers["authorization"] == f"Bearer {API_KEY}"  # its own origin may see it
    assert not has_key(second)


async def test_download_is_capped(make) -> None:
    h = make({FETCH: [lambda _: httpx.Response(200, content=PNG)]})
    with pytest.raises(ResponseTooLarge):
        await h.tasks.download(CDN, max_bytes=4)


# --- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        (None, None),
        ("1024x1024", "1:1"),
        ("1792x1024", "16:9"),
        ("1024x1792", "9:16"),
        ("1536x1024", "3:2"),
        ("4:3", "4:3"),
        ("large", None),
        ("0x100", None),
    ],
)
def test_aspect_ratio_for(size: str | None, ratio: str | None) -> None:
    assert aspect_ratio_for(size) == ratio
