"""MashaGPT's asynchronous task API: pictures and videos.

A task is started with `POST /tasks/{model}` (a camelCase body: `prompt`, `aspectRatio`,
`imageUrl`) and answers `{"id"}`; `GET /tasks/{id}` then tells its `status`, its `output`
(links, as strings or `{"url"}` objects) and an `errorMessage` when it failed.

A video is only started here: the bot's persistent video jobs poll `video_status` and survive
restarts, as they do for VseGPT. A picture is waited for in place (tasks finish within
seconds to a few minutes) and downloaded, so callers get the same `ImageResult` as elsewhere.

Starting costs money and is paced like a chat start (breaker, limiter); polls and downloads
are free and neither paced nor held back by the breaker, so paid work is still collected.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import httpx

from services.llm.breaker import CircuitBreaker
from services.llm.errors import (
    BadRequest,
    ModelUnavailable,
    ServiceUnavailable,
    UpstreamError,
    classify_error,
)
from services.llm.limiter import FairRateLimiter
from services.llm.mashagpt.auth import PROVIDER, auth_headers
from services.llm.media import ImageResult, MediaClient, VideoState, VideoStatus
from services.llm.retry import RetryPolicy
from services.llm.transport import Failure, UpstreamTransport, is_health_failure

__all__ = [
    "MAX_IMAGE_BYTES",
    "MashaTasks",
    "aspect_ratio_for",
    "classify_task_error",
    "parse_task_status",
]

log = logging.getLogger(__name__)

# A generated picture is a few MB; more is not something the bot can send anyway.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
# A task id or a status is a small JSON object; anything larger is not one.
_MAX_TASK_ANSWER = 1024 * 1024

# MashaGPT's spellings of a task's progress. Anything unknown reads as IN_PROGRESS, so polling
# simply goes on and the caller's timeout ends it.
_STATES: Mapping[str, VideoState] = MappingProxyType(
    {
        "COMPLETED": VideoState.COMPLETED,
        "SUCCEEDED": VideoState.COMPLETED,
        "SUCCESS": VideoState.COMPLETED,
        "DONE": VideoState.COMPLETED,
        "FAILED": VideoState.FAILED,
        "ERROR": VideoState.FAILED,
        "CANCELLED": VideoState.FAILED,
        "CANCELED": VideoState.FAILED,
        "IN_QUEUE": VideoState.IN_QUEUE,
        "QUEUED": VideoState.IN_QUEUE,
        "PENDING": VideoState.IN_QUEUE,
        "CREATED": VideoState.IN_QUEUE,
        "IN_PROGRESS": VideoState.IN_PROGRESS,
        "PROCESSING": VideoState.IN_PROGRESS,
        "RUNNING": VideoState.IN_PROGRESS,
    }
)

# The aspect ratios image models commonly accept, as (name, width / height).
_RATIOS = tuple(
    (f"{w}:{h}", w / h) for w, h in ((1, 1), (4, 3), (3, 4), (3, 2), (2, 3), (16, 9), (9, 16))
)
_RATIO = re.compile(r"^\s*(\d{1,4})\s*:\s*(\d{1,4})\s*$")
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
# "Unknown task model" (seen in the wild), in either language.
_UNKNOWN_MODEL = re.compile(r"unknown\s+(?:task\s+)?model|неизвестн\w*\s+(?:\w+\s+)?модел")


def classify_task_error(status: int, body: str) -> UpstreamError:
    """`classify_error`, plus MashaGPT's "Unknown task model" (a 400) as ModelUnavailable."""
    error = classify_error(status, body)
    if type(error) is BadRequest and _UNKNOWN_MODEL.search(body.lower()):
        return ModelUnavailable(status, error.detail)
    return error


def _classify_status_error(status: int, body: str) -> UpstreamError:
    # A 404 on GET /tasks/{id} is a task that is gone (expired, never existed), not "no such
    # model": the video poller should treat it as a refusal, not as a missing model.
    error = classify_task_error(status, body)
    if status == 404:
        return BadRequest(status, error.detail or "no such task")
    return error


def aspect_ratio_for(size: str | None) -> str | None:
    """The `aspectRatio` for an image size: "16:9" as is, "1792x1024" as the nearest common
    ratio ("16:9"); None for no size or one that reads as neither."""
    if not size:
        return None
    match = _RATIO.match(size)
    if match:
        return f"{int(match.group(1))}:{int(match.group(2))}"
    match = _SIZE.match(size)
    if not match:
        return None
    width, height = int(match.group(1)), int(match.group(2))
    if not width or not height:
        return None
    wanted = math.log(width / height)
    name, _ = min(_RATIOS, key=lambda item: abs(math.log(item[1]) - wanted))
    return name


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _first_output(output: Any) -> str | None:
    """The first link of `output`: a list of strings or `{"url"}` objects (or one of them)."""
    if isinstance(output, list):
        output = output[0] if output else None
    if isinstance(output, dict):
        output = output.get("url")
    return _text(output)


def _state(value: Any) -> VideoState:
    if not isinstance(value, str):
        return VideoState.IN_PROGRESS
    return _STATES.get(value.strip().upper().replace(" ", "_"), VideoState.IN_PROGRESS)


def _error_message(obj: Mapping[str, Any]) -> str | None:
    message = _text(obj.get("errorMessage"))
    if message is None:
        error = obj.get("error")
        message = _text(error.get("message") if isinstance(error, dict) else error)
    return message


def parse_task_status(obj: Mapping[str, Any]) -> VideoStatus:
    """A `GET /tasks/{id}` answer as a VideoStatus (the reason is not yet redacted)."""
    return VideoStatus(
        _state(obj.get("status")), _first_output(obj.get("output")), _error_message(obj)
    )


class MashaTasks:
    """Pictures and videos through MashaGPT's task API (an `ImageMaker` and a `VideoMaker`)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str,
        *,
        limiter: FairRateLimiter,
        breaker: CircuitBreaker,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass, safe as a default
        deadline: float | None = None,
        poll_seconds: float = 2.0,
        timeout_seconds: float = 300.0,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`poll_seconds` and `timeout_seconds` pace and bound the wait for a picture;
        `sleep` and `clock` are the waiting and the time it is measured by (tests inject
        both), `sleep` also serving the retries' backoff."""
        self._t = UpstreamTransport(
            http,
            base_url,
            api_key,
            limiter=limiter,
            breaker=breaker,
            retry=retry,
            app_title=None,
            sleep=sleep,
            deadline=deadline,
            auth_headers=auth_headers(api_key),
            classify=classify_task_error,
            provider=PROVIDER,
        )
        # Results are downloaded the way every provider's are: the key only to MashaGPT's own
        # origin, never to a storage host. Only as `Authorization: Bearer` there, because httpx
        # drops that header (and no other) when a redirect leads away from the origin; an
        # `x-api-key` would follow the redirect to whatever host it names.
        self._files = MediaClient(
            http,
            base_url,
            api_key,
            limiter=limiter,
            breaker=breaker,
            retry=retry,
            sleep=sleep,
            deadline=deadline,
            provider=PROVIDER,
        )
        self._poll_seconds = poll_seconds
        self._timeout = timeout_seconds
        self._max_image_bytes = max_image_bytes
        self._sleep = sleep
        self._clock = clock

    def __repr__(self) -> str:
        return f"MashaTasks(base_url={self._t.base_url!r})"

    # --- paid calls --------------------------------------------------------------------------

    async def start_video(
        self,
        prompt: str,
        *,
        model: str,
        aspect_ratio: str | None = None,
        image_url: str | None = None,
        user_key: Hashable = None,
    ) -> str:
        """Start a video task → its id, for `video_status`."""
        body: dict[str, Any] = {"prompt": prompt}
        if aspect_ratio:
            body["aspectRatio"] = aspect_ratio
        if image_url:
            body["imageUrl"] = image_url
        return await self._start(model, body, user_key)

    async def generate_image(
        self, prompt: str, *, model: str, size: str | None = None, user_key: Hashable = None
    ) -> ImageResult:
        """Start a picture task, wait for it and download the picture.

        Raises BadRequest when the task failed (its errorMessage as the detail),
        ServiceUnavailable when it has not finished within `timeout_seconds`.
        """
        body: dict[str, Any] = {"prompt": prompt}
        ratio = aspect_ratio_for(size)
        if ratio:
            body["aspectRatio"] = ratio
        task_id = await self._start(model, body, user_key)
        url = await self._wait(task_id)
        return ImageResult(url=url, data=await self.download(url, max_bytes=self._max_image_bytes))

    async def _start(self, model: str, body: dict[str, Any], user_key: Hashable) -> str:
        t = self._t

        def parse(response: httpx.Response, raw: bytes) -> str | Failure:
            obj = t.json_or_failure(raw, "task answer", response.status_code)
            if isinstance(obj, Failure):
                return obj
            if not isinstance(obj, dict):
                return t.malformed("malformed task answer: not an object", response.status_code)
            task_id = _text(obj.get("id"))
            if task_id:
                return task_id
            message = _error_message(obj)
            if message:
                return t.body_failure({"message": message})
            # No sample of the body: an answer may echo the prompt, and details reach the logs.
            return t.malformed("task answer without id", response.status_code)

        return await t.request(
            "POST",
            t.url(f"tasks/{quote(model, safe='')}"),
            parse,
            paced=True,
            user_key=user_key,
            model=model,
            headers=t.json_headers,
            content=json.dumps(body, ensure_ascii=False).encode(),
            max_bytes=_MAX_TASK_ANSWER,
        )

    # --- free calls --------------------------------------------------------------------------

    async def video_status(self, request_id: str) -> VideoStatus:
        """Where a task is: queued, in progress, done (with its first output link), failed."""
        t = self._t

        def parse(response: httpx.Response, raw: bytes) -> VideoStatus | Failure:
            obj = t.json_or_failure(raw, "task status", response.status_code)
            if isinstance(obj, Failure):
                return obj
            if not isinstance(obj, dict):
                return t.malformed("malformed task status: not an object", response.status_code)
            if "status" not in obj and obj.get("error"):
                return t.body_failure(obj["error"])
            status = parse_task_status(obj)
            if status.reason:
                status = VideoStatus(status.state, status.url, t.redact(status.reason))
            return status

        return await t.request(
            "GET",
            t.url(f"tasks/{quote(request_id, safe='')}"),
            parse,
            classify=_classify_status_error,
            max_bytes=_MAX_TASK_ANSWER,
        )

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """A task's output, at most `max_bytes` (ResponseTooLarge); no key to other hosts."""
        return await self._files.download(url, max_bytes=max_bytes)

    async def _wait(self, task_id: str) -> str:
        """Poll a task until it is done → its output link. A poll that fails for upstream
        health reasons (after its own retries) is not the end: the task is paid for and may
        well finish, so polling goes on until the timeout."""
        deadline = self._clock() + self._timeout
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ServiceUnavailable(
                    None, f"task {task_id} did not finish within {self._timeout:g} s"
                )
            await self._sleep(min(self._poll_seconds, remaining))
            try:
                status = await self.video_status(task_id)
            except UpstreamError as exc:
                if not is_health_failure(exc):
                    raise
                log.warning(
                    "mashagpt: poll of task %r failed, polling on: %s",
                    task_id[:100],
                    type(exc).__name__,
                )
                continue
            if status.state is VideoState.FAILED:
                raise BadRequest(None, status.reason or f"task {task_id} failed")
            if status.state is VideoState.COMPLETED:
                if status.url is None:
                    raise ServiceUnavailable(None, f"task {task_id} completed without output")
                return status.url
