"""A fake MashaGPT for tests and benchmarks: OpenAI-shaped chat billed in energy, and tasks.

It runs an aiohttp server on 127.0.0.1 (random port, plain HTTP) under ``/v1``:
``/v1/chat/completions`` (SSE ``chat.completion.chunk`` events ending in ``[DONE]``, or one
``chat.completion``), whose ``usage`` carries MashaGPT's billing unit next to the tokens
(``prompt_energy``, ``completion_energy``, ``total_energy``); ``/v1/models``, which can be
switched off (``models_available``) because no public copy of the API shows it and the bot
must then fall back to its configured list; and the asynchronous task API for images and
video: ``POST /v1/tasks/{model}`` (a camelCase body) → ``{"id"}``, then ``GET /v1/tasks/{id}``
walks through ``task_steps`` one step per poll and ends in ``COMPLETED`` with ``output`` links
to a real PNG or MP4 served at ``/files/<name>`` (public, like a CDN: no key needed), or in
``FAILED`` with ``errorMessage``.

The key is accepted as ``x-api-key`` (what public clients send) or ``Authorization: Bearer``
(SDKs); each record says which arrived (``auth_headers``), so tests can also check that result
downloads carry no key. Like the other fakes it is strict: a request the real API would refuse
(no key, an unknown model, OpenAI's bare-string ``image_url``, snake_case task fields) is
refused here too, with ``{"error": {"message": ...}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json as jsonlib
import re
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from PIL import Image

from tests.fakes.upstream_server import (
    _DONE,
    _SSE_HEADERS,
    Arrivals,
    UpstreamRequest,
    _client_gone,
    _echo_reply,
    _Fault,
    _ffmpeg,
    _Headers,
    _messages_chars,
    _split,
    _sse,
    _tokens,
)

__all__ = [
    "FakeMashaGPT",
    "MashaRequest",
    "MashaTask",
    "default_models",
    "default_task_models",
    "task_kind",
    "tiny_png",
]

API_PREFIX = "/v1"
CHAT_PATH = API_PREFIX + "/chat/completions"
MODELS_PATH = API_PREFIX + "/models"
TASKS_PATH = API_PREFIX + "/tasks"
FILES_PREFIX = "/files/"

DEFAULT_TASK_STEPS = ("PENDING", "PROCESSING", "COMPLETED")
DEFAULT_FAILURE = "Generation failed: the prompt was rejected by the content filter"
UNKNOWN_TASK_MODEL = "Unknown task model"
IMAGE_MODEL_PREFIXES = ("flux", "midjourney", "dall-e", "gpt-image")
VIDEO_MODEL_PREFIXES = ("kling", "veo", "sora", "runway")
_ROLES = frozenset({"system", "user", "assistant", "function", "tool"})
_ASPECT_RATIO = re.compile(r"\d+:\d+")
_IMAGE_URL_SCHEMES = ("http://", "https://", "data:image/")
_DEFAULT_FAULT_MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Not enough energy on the balance",
    403: "Forbidden",
    404: "Not found",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}

_Problem = tuple[int, str]  # (HTTP status, message) of a rejected request


def default_models() -> list[dict[str, Any]]:
    """A fresh copy of the default GET /v1/models list (bare vendor model ids)."""

    def model(mid: str, owner: str) -> dict[str, Any]:
        return {"id": mid, "object": "model", "created": 1_735_689_600, "owned_by": owner}

    return [
        model("gpt-4o-mini", "openai"),
        model("gpt-4o", "openai"),
        model("claude-sonnet-4-5", "anthropic"),
        model("gemini-2.5-flash", "google"),
        model("deepseek-chat", "deepseek"),
    ]


def default_task_models() -> list[str]:
    """The task API's default models: image makers first, then video makers."""
    return ["flux-pro", "midjourney", "dall-e-3", "gpt-image-1", "kling-v2", "veo-3", "sora-2"]


def task_kind(model: str) -> str:
    """The kind of a task model: "video" (kling, veo, sora, runway) or "image"."""
    return "video" if model.lower().startswith(VIDEO_MODEL_PREFIXES) else "image"


def tiny_png(size: int = 64) -> bytes:
    """A real small PNG (a colour gradient), what image tasks "draw"."""
    ramp = Image.linear_gradient("L").resize((size, size))
    image = Image.merge("RGB", (ramp.rotate(90), Image.new("L", (size, size), 96), ramp))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass
class MashaRequest(UpstreamRequest):
    """One request as the fake saw it."""

    # Which key headers arrived: ("x-api-key",), ("authorization",), both, or ().
    auth_headers: tuple[str, ...] = ()


@dataclass
class MashaTask:
    """One task started through POST /v1/tasks/{model}."""

    id: str
    model: str
    kind: str  # "image" or "video"
    body: dict[str, Any]  # the request body as sent
    polls: int = 0  # status polls answered
    fail_message: str | None = None  # the task ends FAILED with it
    output: list[str] = field(default_factory=list)  # result links once COMPLETED


@dataclass(slots=True)
class _Scripted:
    pieces: list[str]
    finish_reason: str


class FakeMashaGPT:
    """MashaGPT-like server on 127.0.0.1 under ``/v1`` (plain HTTP).

    Adjustable attributes (``reset()`` restores them): ``models``, ``models_available``,
    ``reply`` (payload → text), ``chunks``, ``first_token_delay``, ``chunk_delay``,
    ``energy_per_token`` ((prompt, completion) energy per token), ``task_models``,
    ``task_steps``, ``output_as_objects`` (``output: [{"url": ...}]`` instead of strings).
    Records: ``requests``, ``tasks``.
    """

    def __init__(self, api_key: str = "masha-test-key") -> None:
        self.api_key = api_key
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = False
        self._handlers: set[asyncio.Task[Any]] = set()
        self._arrivals = Arrivals()
        self._completion_ids = 0
        self._png = tiny_png()
        self._mp4: bytes | None = None  # made by ffmpeg when first downloaded, kept on reset()
        self._mp4_lock = asyncio.Lock()
        self.reset()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=64 * 1024 * 1024)  # vision requests carry base64
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a lost connection cancels the handler, so disconnects are seen
        # at once; access_log=None: no per-request logging (benchmarks).
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]
        self._stopping = False

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        for task in list(self._handlers):  # slow streams would hold up cleanup()
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await runner.cleanup()

    async def __aenter__(self) -> FakeMashaGPT:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def origin(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeMashaGPT is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """The API base, ``http://127.0.0.1:<port>/v1``."""
        return self.origin + API_PREFIX

    base_url = url

    def reset(self) -> None:
        """Back to defaults: records, tasks, files, scripts, faults and switches (the key stays)."""
        self.requests: list[MashaRequest] = []
        self.models: list[dict[str, Any]] = default_models()
        self.models_available: bool = True
        self.reply: Callable[[dict[str, Any]], str] | None = None
        self.chunks: int = 5
        self.first_token_delay: float = 0.0
        self.chunk_delay: float = 0.0
        self.energy_per_token: tuple[int, int] = (1, 3)
        self.task_models: list[str] = default_task_models()
        self.task_steps: list[str] = list(DEFAULT_TASK_STEPS)
        self.output_as_objects: bool = False
        self.tasks: dict[str, MashaTask] = {}
        self._task_failures: deque[str] = deque()
        self._files: dict[str, str] = {}  # name → content type (the bytes are the fake's own)
        self._scripts: deque[_Scripted] = deque()
        self._faults: dict[str, deque[_Fault]] = {}
        self._released = asyncio.Event()
        self._released.set()

    # --- records ---------------------------------------------------------------------------

    def chat_requests(self) -> list[MashaRequest]:
        return [r for r in self.requests if r.path == CHAT_PATH]

    def requests_to(self, path: str) -> list[MashaRequest]:
        """Requests to `path` ("tasks/<id>", "/v1/tasks/<id>", "/files/<name>")."""
        norm = _normalize_path(path)
        return [r for r in self.requests if r.path == norm]

    async def wait_for_requests(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109 - the same test-bench API as FakeUpstream's
        *,
        path: str | None = None,
    ) -> list[MashaRequest]:
        """Wait until at least `count` requests (to `path` when given) arrived; return them.

        Raises TimeoutError when they do not arrive in time.
        """

        def matching() -> list[MashaRequest]:
            return list(self.requests) if path is None else self.requests_to(path)

        return await self._arrivals.wait(count, timeout, matching, "MashaGPT")

    def _record(self, rec: MashaRequest) -> None:
        self.requests.append(rec)
        self._arrivals.notify()

    # --- scripts and faults ----------------------------------------------------------------

    def script_next(self, *pieces: str, finish_reason: str = "stop") -> None:
        """The next chat answer is exactly `pieces` (one stream chunk each). Calls queue up."""
        self._scripts.append(_Scripted(list(pieces) or [""], finish_reason))

    def fail_task_next(self, message: str = DEFAULT_FAILURE) -> None:
        """The next task started walks its steps, then ends FAILED with `message`."""
        self._task_failures.append(message)

    def hold_answers(self) -> None:
        """Chat answers wait (a stream after its headers) until ``release_answers()``."""
        self._released.clear()

    def release_answers(self) -> None:
        self._released.set()

    def fail_next(
        self,
        status: int,
        message: str | None = None,
        *,
        times: int = 1,
        path: str = "chat/completions",
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `times` requests to `path` answer `status` with ``{"error": {"message"}}``
        (before the key check). Calls queue up."""
        body = {"error": {"message": message or _DEFAULT_FAULT_MESSAGES.get(status, "Error")}}
        self._faults.setdefault(_normalize_path(path), deque()).append(
            _Fault(status, body, dict(headers) if headers else None, times)
        )

    def _take_fault(self, path: str) -> _Fault | None:
        queue = self._faults.get(path)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    # --- HTTP ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            return await self._dispatch(request)
        finally:
            self._handlers.discard(task)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        headers = _Headers((k.lower(), v) for k, v in request.headers.items())
        rec = MashaRequest(
            path=request.path,
            method=request.method,
            headers=headers,
            json=None,
            started_at=time.monotonic(),
            auth_headers=tuple(h for h in ("x-api-key", "authorization") if h in headers),
        )
        if request.query_string:
            rec.query = dict(request.query)
        if request.body_exists:
            with contextlib.suppress(ValueError):
                rec.json = jsonlib.loads(await request.read())
        self._record(rec)

        fault = self._take_fault(rec.path)
        if fault is not None:
            rec.status = fault.status
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        if rec.path.startswith(FILES_PREFIX) and request.method in ("GET", "HEAD"):
            return await self._serve_file(rec)  # result links are public, like a CDN's
        if not self._key_ok(headers):
            return _error(rec, 401, "Invalid API key: send it as x-api-key or a Bearer token")
        try:
            return await self._route(request, rec)
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client goes away (handler_cancellation).
            if not self._stopping:
                _mark_disconnected(rec)
            raise

    def _key_ok(self, headers: _Headers) -> bool:
        """Every key header that arrived carries the key, and at least one arrived."""
        keys = []
        if "x-api-key" in headers:
            keys.append(headers["x-api-key"].strip())
        if "authorization" in headers:
            scheme, _, key = headers["authorization"].partition(" ")
            keys.append(key.strip() if scheme.lower() == "bearer" else "")
        return bool(keys) and all(key == self.api_key for key in keys)

    async def _route(self, request: web.Request, rec: MashaRequest) -> web.StreamResponse:
        method, path = request.method, rec.path
        if method == "POST" and path == CHAT_PATH:
            return await self._chat(request, rec)
        if method == "GET" and path == MODELS_PATH:
            if not self.models_available:
                return _error(rec, 404, f"Not found: {method} {path}")
            return _json(rec, {"object": "list", "data": self.models})
        if path.startswith(TASKS_PATH + "/"):
            name = path[len(TASKS_PATH) + 1 :]
            if method == "POST":
                return self._start_task(rec, name)
            if method == "GET":
                return self._task_status(rec, name)
        return _error(rec, 404, f"Not found: {method} {path}")

    # --- chat ------------------------------------------------------------------------------

    async def _chat(self, request: web.Request, rec: MashaRequest) -> web.StreamResponse:
        problem = self._check_chat(rec.json)
        if problem is not None:
            return _error(rec, *problem)
        payload = cast(dict[str, Any], rec.json)  # checked above
        scripted = self._scripts.popleft() if self._scripts else None
        if scripted is not None:
            pieces, finish = scripted.pieces, scripted.finish_reason
        else:
            text = self.reply(payload) if self.reply is not None else _echo_reply(payload)
            pieces, finish = _split(text, self.chunks), "stop"
        prompt_tokens = _tokens(_messages_chars(payload["messages"]))
        completion_tokens = _tokens(len("".join(pieces)))
        prompt_rate, completion_rate = self.energy_per_token
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_energy": prompt_tokens * prompt_rate,
            "completion_energy": completion_tokens * completion_rate,
            "total_energy": prompt_tokens * prompt_rate + completion_tokens * completion_rate,
        }
        self._completion_ids += 1
        base = {
            "id": f"chatcmpl-masha-{self._completion_ids}",
            "created": int(time.time()),
            "model": payload["model"],
        }
        if payload.get("stream") is True:
            options = payload.get("stream_options")
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            return await self._stream(
                request, rec, base, pieces, finish, usage if with_usage else None
            )
        await self._released.wait()
        delay = self.first_token_delay + self.chunk_delay * (len(pieces) - 1)
        if delay > 0:
            await asyncio.sleep(delay)
        message = {"role": "assistant", "content": "".join(pieces)}
        choice = {"index": 0, "message": message, "finish_reason": finish}
        body = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
        return _json(rec, body)

    def _check_chat(self, payload: Any) -> _Problem | None:
        if not isinstance(payload, dict):
            return 400, "Invalid request: the body must be a JSON object"
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            return 400, "Invalid request: 'model' is required"
        if not any(m.get("id") == model for m in self.models):
            return 404, f"The model `{model}` does not exist"
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, "Invalid request: 'messages' must be a non-empty array"
        for index, message in enumerate(messages):
            problem = _check_message(f"messages[{index}]", message)
            if problem is not None:
                return problem
        max_tokens = payload.get("max_tokens")
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            return 400, "Invalid request: 'max_tokens' must be a positive integer"
        if "stream" in payload and not isinstance(payload["stream"], bool | None):
            return 400, "Invalid request: 'stream' must be a boolean"
        return None

    async def _stream(
        self,
        request: web.Request,
        rec: MashaRequest,
        base: dict[str, Any],
        pieces: list[str],
        finish: str,
        usage: dict[str, int] | None,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers=_SSE_HEADERS)
        await resp.prepare(request)
        chunk_base = {**base, "object": "chat.completion.chunk"}
        try:
            await self._released.wait()
            if self.first_token_delay > 0:
                await asyncio.sleep(self.first_token_delay)
            for index, piece in enumerate(pieces):
                if index and self.chunk_delay > 0:
                    await asyncio.sleep(self.chunk_delay)
                if _client_gone(request):
                    _mark_disconnected(rec)
                    return resp
                delta = (
                    {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
                )
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                await resp.write(_sse({**chunk_base, "choices": [choice]}))
                rec.chunks_sent += 1
            finished = {"index": 0, "delta": {}, "finish_reason": finish}
            tail = _sse({**chunk_base, "choices": [finished]})
            if usage is not None:
                tail += _sse({**chunk_base, "choices": [], "usage": usage})
            await resp.write(tail + _DONE)
            await resp.write_eof()
            rec.completed = True
        except ConnectionResetError:  # includes aiohttp's ClientConnectionResetError
            _mark_disconnected(rec)
        return resp

    # --- tasks -----------------------------------------------------------------------------

    def _start_task(self, rec: MashaRequest, model: str) -> web.Response:
        if model not in self.task_models:
            return _error(rec, 400, UNKNOWN_TASK_MODEL)
        problem = _check_task_body(rec.json)
        if problem is not None:
            return _error(rec, *problem)
        task_id = str(uuid.uuid4())
        fail = self._task_failures.popleft() if self._task_failures else None
        body = cast(dict[str, Any], rec.json)  # checked above
        self.tasks[task_id] = MashaTask(task_id, model, task_kind(model), body, fail_message=fail)
        return _json(rec, {"id": task_id})

    def _task_status(self, rec: MashaRequest, task_id: str) -> web.Response:
        task = self.tasks.get(task_id)
        if task is None:
            return _error(rec, 404, "Task not found")
        task.polls += 1
        steps = self.task_steps or [DEFAULT_TASK_STEPS[-1]]
        state = steps[min(task.polls, len(steps)) - 1]
        if task.polls >= len(steps) and task.fail_message is not None:
            return _json(
                rec, {"id": task_id, "status": "FAILED", "errorMessage": task.fail_message}
            )
        body: dict[str, Any] = {"id": task_id, "status": state}
        if state == "COMPLETED":
            if not task.output:
                task.output = [self._add_result(task)]
            body["output"] = (
                [{"url": url} for url in task.output] if self.output_as_objects else task.output
            )
        return _json(rec, body)

    def _add_result(self, task: MashaTask) -> str:
        ext, content_type = ("mp4", "video/mp4") if task.kind == "video" else ("png", "image/png")
        name = f"{task.id}.{ext}"
        self._files[name] = content_type
        return f"{self.origin}{FILES_PREFIX}{name}"

    async def _serve_file(self, rec: MashaRequest) -> web.Response:
        content_type = self._files.get(rec.path[len(FILES_PREFIX) :])
        if content_type is None:
            return _error(rec, 404, f"File not found: {rec.path}")
        content = await self._video_bytes() if content_type == "video/mp4" else self._png
        rec.completed = True
        return web.Response(body=content, content_type=content_type)

    async def _video_bytes(self) -> bytes:
        # Made on first download, not when the task completes: polling works without ffmpeg.
        async with self._mp4_lock:
            if self._mp4 is None:
                with tempfile.TemporaryDirectory() as tmp:
                    path = f"{tmp}/video.mp4"
                    # The same clip as the VseGPT fake's: one second of a 64x64 test pattern.
                    await _ffmpeg(
                        [
                            "-nostdin",
                            "-f",
                            "lavfi",
                            "-i",
                            "testsrc=duration=1:size=64x64:rate=10",
                            "-pix_fmt",
                            "yuv420p",
                            "-movflags",
                            "+faststart",
                            path,
                        ]
                    )
                    self._mp4 = await asyncio.to_thread(Path(path).read_bytes)
            return self._mp4


def _check_message(where: str, message: Any) -> _Problem | None:
    if not isinstance(message, dict):
        return 400, f"Invalid request: {where} must be an object"
    if message.get("role") not in _ROLES:
        return 400, f"Invalid request: {where}.role is not a known role"
    content = message.get("content")
    if content is None or isinstance(content, str):
        return None
    if not isinstance(content, list):
        return 400, f"Invalid request: {where}.content must be a string or an array of parts"
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            continue
        if kind == "image_url":
            # OpenAI's form: {"url": ...}; a bare string (VseGPT's habit) is refused.
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if isinstance(url, str) and url.startswith(_IMAGE_URL_SCHEMES):
                continue
            return 400, f"Invalid request: {where}: image_url must be an object with a 'url'"
        return 400, f"Invalid request: {where}: unsupported content part"
    return None


def _check_task_body(body: Any) -> _Problem | None:
    if not isinstance(body, dict):
        return 400, "Invalid request: the body must be a JSON object"
    snake = sorted(key for key in body if "_" in key)
    if snake:
        # The task API's fields are camelCase (aspectRatio, imageUrl): a snake_case field is
        # not understood, and silently ignoring it would hide a bot bug.
        return 400, f"Invalid request: unknown field {snake[0]!r} (fields are camelCase)"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return 400, "Invalid request: 'prompt' is required"
    ratio = body.get("aspectRatio")
    if ratio is not None and not (isinstance(ratio, str) and _ASPECT_RATIO.fullmatch(ratio)):
        return 400, "Invalid request: 'aspectRatio' must look like '16:9'"
    image_url = body.get("imageUrl")
    if image_url is not None and not (
        isinstance(image_url, str) and image_url.startswith(_IMAGE_URL_SCHEMES)
    ):
        return 400, "Invalid request: 'imageUrl' must be an http(s) or data: URL"
    return None


def _error(rec: MashaRequest, status: int, message: str) -> web.Response:
    rec.status = status
    return web.json_response({"error": {"message": message}}, status=status)


def _json(rec: MashaRequest, body: Any) -> web.Response:
    rec.completed = True
    return web.Response(
        body=jsonlib.dumps(body, ensure_ascii=False).encode(), content_type="application/json"
    )


def _mark_disconnected(rec: MashaRequest) -> None:
    if not rec.completed and not rec.disconnected:
        rec.disconnected = True
        rec.disconnected_event.set()


def _normalize_path(path: str) -> str:
    """A full path from "chat/completions", "/chat/completions" or the full one; "/files/<name>"."""
    path = "/" + path.lstrip("/")
    if path.startswith((API_PREFIX + "/", FILES_PREFIX)):
        return path
    return API_PREFIX + path
