"""A fake OpenAI-compatible upstream that behaves like VseGPT, for tests and benchmarks.

It runs an aiohttp server on 127.0.0.1 (random port) and serves ``/v1/chat/completions``
(SSE streaming and plain JSON) and ``/v1/models``. Every request is recorded as an
:class:`UpstreamRequest`; faults (HTTP errors, broken streams, in-stream errors, a request-rate
rule) are injected through methods on :class:`FakeUpstream`.

Disconnects are detected through aiohttp's ``handler_cancellation``: when the peer's socket
closes, aiohttp cancels the handler task, so a handler sleeping between chunks wakes up at once
instead of polling the transport. The record is then marked ``disconnected`` and its event set.

The server must stay cheap: benchmarks push thousands of requests through it, so there is no
access log, no per-request logging and no sleeping unless a delay is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeUpstream", "UpstreamRequest", "default_models"]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"

WRONG_KEY_MESSAGE = "User with this API key not found"
OPENAI_KEY_MESSAGE = (
    "Seems you use original OpenAI API key. This key will not work on this site; you need "
    "VseGPT API Key, you can get your own here: https://vsegpt.ru/User/API"
)
MISSING_MAX_TOKENS_MESSAGE = (
    "Parameter max_tokens is required: please specify max_tokens in your request "
    "(the behaviour can be changed at https://vsegpt.ru/User/SettingsModels)"
)
RATE_LIMIT_MESSAGE = (
    "Too many requests: requests from one account are allowed not more often than "
    "once per 2 seconds"
)

_DEFAULT_FAULT_MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Insufficient funds",
    403: "Your request was blocked by the moderation of the selected model",
    404: "Not found",
    408: "Request timeout",
    429: RATE_LIMIT_MESSAGE,
    500: "INTERNAL_SERVER_ERROR",
    502: "EDGE_FUNCTION_INVOCATION_FAILED",
    503: "Service unavailable",
    504: "EDGE_FUNCTION_INVOCATION_TIMEOUT",
}

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_DONE = b"data: [DONE]\n\n"


def default_models() -> list[dict[str, Any]]:
    """A fresh copy of the default /v1/models list (a realistic VseGPT-like mix).

    Numbers are partly strings on purpose: VseGPT sends them that way sometimes.
    """

    def model(mid: str, name: str, ctx: int | str, prompt: str, completion: str) -> dict[str, Any]:
        return {
            "id": mid,
            "name": name,
            "context_length": ctx,
            "pricing": {"prompt": prompt, "completion": completion},
        }

    return [
        model("openai/gpt-4o-mini", "OpenAI: GPT-4o mini", 128000, "0.15", "0.6"),
        model("anthropic/claude-3-haiku", "Anthropic: Claude 3 Haiku", 200000, "0.25", "1.25"),
        model("test/tiny-context", "Test: tiny context", "1024", "0.01", "0.02"),
        model(
            "vis-google/gemini-flash-1.5",
            "Google: Gemini Flash 1.5 (vision)",
            "1000000",
            "0.075",
            "0.3",
        ),
        model("img-dummy/image", "Dummy image generator", 1000, "1.0", "0"),
        model("stt-openai/whisper-1", "OpenAI: Whisper (speech-to-text)", 0, "0.6", "0"),
        model("tts-openai/tts-1", "OpenAI: TTS 1", 4096, "1.5", "0"),
        model(
            "emb-openai/text-embedding-3-small", "OpenAI: text-embedding-3-small", 8191, "0.02", "0"
        ),
        model("txt2vid-kling/standart", "Kling: text to video (standard)", 1000, "30", "0"),
    ]


class _Headers(dict[str, str]):
    """Request headers: keys stored lower-case, lookups case-insensitive."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class UpstreamRequest:
    """One request as the fake upstream saw it, updated while it is being answered."""

    path: str
    method: str
    headers: dict[str, str]  # lower-case keys; lookups are case-insensitive
    json: Any | None  # parsed body; None when absent or not JSON
    started_at: float  # time.monotonic() at arrival
    status: int = 200  # what was answered
    chunks_sent: int = 0  # content chunks written (role/finish/usage chunks not counted)
    completed: bool = False  # the full successful answer went out (stream: up to [DONE])
    disconnected: bool = False  # the client went away before the end (detected)
    disconnected_event: asyncio.Event = field(
        default_factory=asyncio.Event, repr=False, compare=False
    )


@dataclass(slots=True)
class _Fault:
    status: int
    body: Any
    headers: dict[str, str] | None
    remaining: int


def _text_of(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        ]
        return "\n".join(t for t in texts if isinstance(t, str))
    return ""


def _messages_chars(messages: list[Any]) -> int:
    return sum(len(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def _echo_reply(payload: dict[str, Any]) -> str:
    for message in reversed(payload.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return "Echo: " + _text_of(message.get("content"))
    return "Echo: "


def _split(text: str, parts: int) -> list[str]:
    """Split by characters into at most `parts` near-equal non-empty pieces ([""] for "")."""
    n = max(1, min(parts, len(text)))
    size = len(text)
    return [text[i * size // n : (i + 1) * size // n] for i in range(n)]


def _as_int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + jsonlib.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


def _error_body(message: str, *, status: int | None = None, kind: str | None = None) -> bytes:
    error: dict[str, Any] = {"message": message}
    if kind is not None:
        error["type"] = kind
    if status is not None:
        error["code"] = status
    return jsonlib.dumps({"error": error}, ensure_ascii=False).encode()


def _fault_kind(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


class FakeUpstream:
    """VseGPT-like OpenAI-compatible server on 127.0.0.1 under ``/v1``.

    Public, freely adjustable attributes (``reset()`` restores them): ``models``, ``reply``,
    ``chunks``, ``first_token_delay``, ``chunk_delay``, ``credits``. Records: ``requests``,
    ``rejected_429``.
    """

    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = False
        self._handlers: set[asyncio.Task[Any]] = set()
        self._request_waiters: list[asyncio.Future[None]] = []
        self._completion_ids = 0
        self.reset()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=64 * 1024 * 1024)  # vision requests carry base64
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a lost connection cancels the handler, which is how disconnects
        # are noticed at once without polling. access_log=None: no per-request logging.
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
        # Cancel in-flight handlers first: aiohttp would otherwise wait for slow streams.
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await runner.cleanup()

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeUpstream is not started")
        return f"http://127.0.0.1:{self._port}/v1"

    def reset(self) -> None:
        """Back to defaults: clears records, faults and behaviour overrides (api_key is kept)."""
        self.requests: list[UpstreamRequest] = []
        self.models: list[dict[str, Any]] = default_models()
        self.reply: Callable[[dict[str, Any]], str] | None = None
        self.chunks: int = 5
        self.first_token_delay: float = 0.0
        self.chunk_delay: float = 0.0
        self.credits: str | None = "0.0123"
        self.rejected_429: int = 0
        self._faults: dict[str, deque[_Fault]] = {}
        self._breaks: deque[list[int]] = deque()  # [chunks, remaining times]
        self._stream_errors: deque[list[Any]] = deque()  # [message, remaining times]
        self._rps: float | None = None
        self._rps_tolerance = 0.0
        self._rps_retry_after: str | None = "2"
        self._last_accepted: float | None = None

    # --- records ---------------------------------------------------------------------------

    def chat_requests(self) -> list[UpstreamRequest]:
        return [r for r in self.requests if r.path == CHAT_PATH]

    async def wait_for_requests(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109 - part of the shared test-bench API
        *,
        path: str | None = None,
    ) -> list[UpstreamRequest]:
        """Wait until at least `count` requests (to `path` when given) arrived; return them all.

        Raises TimeoutError when they do not arrive in time.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        norm = None if path is None else _normalize_path(path)
        while True:
            matching = (
                list(self.requests)
                if norm is None
                else [r for r in self.requests if r.path == norm]
            )
            if len(matching) >= count:
                return matching
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"expected {count} upstream requests, got {len(matching)}")
            waiter = loop.create_future()
            self._request_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    self._request_waiters.remove(waiter)

    def _record(self, rec: UpstreamRequest) -> None:
        self.requests.append(rec)
        if self._request_waiters:
            waiters, self._request_waiters = self._request_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # --- fault injection -------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        body: Any = None,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        path: str = CHAT_PATH,
    ) -> None:
        """The next `times` requests to `path` answer `status` with `body`.

        `body`: None → VseGPT-like ``{"error": {"message", "type", "code"}}``; str/bytes → sent
        as is (text/plain, like a proxy's error page); anything else → JSON. Calls queue up.
        """
        self._faults.setdefault(_normalize_path(path), deque()).append(
            _Fault(status, body, dict(headers) if headers else None, times)
        )

    def break_stream_after(self, chunks: int, *, times: int = 1) -> None:
        """The next `times` streams send `chunks` content chunks, then the TCP connection drops."""
        self._breaks.append([chunks, times])

    def enforce_rps(
        self, rate: float | None, *, tolerance: float = 0.0, retry_after: str | None = "2"
    ) -> None:
        """429 (Retry-After: 2) for chat requests arriving < 1/rate s after the last accepted one.

        `tolerance` (seconds) forgives that much arrival jitter; None/0 rate switches it off.
        """
        self._rps = rate if rate else None
        self._rps_tolerance = tolerance
        self._rps_retry_after = retry_after
        self._last_accepted = None

    def error_in_stream(self, message: str, *, times: int = 1) -> None:
        """The next `times` streams send ``data: {"error": {"message": ...}}`` before content."""
        self._stream_errors.append([message, times])

    def _take_fault(self, path: str) -> _Fault | None:
        queue = self._faults.get(path)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    @staticmethod
    def _take(queue: deque[list[Any]]) -> Any:
        if not queue:
            return None
        item = queue[0]
        item[1] -= 1
        if item[1] <= 0:
            queue.popleft()
        return item[0]

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
        rec = UpstreamRequest(
            path=request.path,
            method=request.method,
            headers=_Headers((k.lower(), v) for k, v in request.headers.items()),
            json=None,
            started_at=time.monotonic(),
        )
        if request.body_exists:
            raw = await request.read()
            with contextlib.suppress(ValueError):
                rec.json = jsonlib.loads(raw)
        self._record(rec)

        fault = self._take_fault(rec.path)
        if fault is not None:
            return self._fault_response(rec, fault)

        key_error = self._check_key(request.headers.get("Authorization", ""))
        if key_error is not None:
            return self._error(rec, 400, key_error)

        if rec.path == CHAT_PATH and request.method == "POST":
            return await self._chat(request, rec)
        if rec.path == MODELS_PATH and request.method == "GET":
            rec.completed = True
            return web.json_response({"object": "list", "data": self.models})
        return self._error(rec, 404, f"Not found: {request.method} {rec.path}")

    def _check_key(self, authorization: str) -> str | None:
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() == "bearer" and key == self.api_key:
            return None
        if key.startswith("sk-") and not key.startswith("sk-or-"):
            return OPENAI_KEY_MESSAGE
        return WRONG_KEY_MESSAGE

    def _error(
        self,
        rec: UpstreamRequest,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        rec.status = status
        return web.Response(
            status=status,
            body=_error_body(message),
            content_type="application/json",
            headers=headers,
        )

    def _fault_response(self, rec: UpstreamRequest, fault: _Fault) -> web.Response:
        rec.status = fault.status
        body = fault.body
        if body is None:
            message = _DEFAULT_FAULT_MESSAGES.get(fault.status, f"HTTP {fault.status}")
            data = _error_body(message, status=fault.status, kind=_fault_kind(fault.status))
            content_type = "application/json"
        elif isinstance(body, bytes | str):
            data = body.encode() if isinstance(body, str) else body
            content_type = "text/plain"
        else:
            data = jsonlib.dumps(body, ensure_ascii=False).encode()
            content_type = "application/json"
        headers = dict(fault.headers) if fault.headers else {}
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        return web.Response(status=fault.status, body=data, headers=headers)

    def _check_rate(self, now: float) -> bool:
        if self._rps is None:
            return True
        last = self._last_accepted
        if last is not None and now - last < 1.0 / self._rps - self._rps_tolerance:
            return False
        self._last_accepted = now
        return True

    async def _chat(self, request: web.Request, rec: UpstreamRequest) -> web.StreamResponse:
        if not self._check_rate(rec.started_at):
            self.rejected_429 += 1
            headers = {"Retry-After": self._rps_retry_after} if self._rps_retry_after else None
            rec.status = 429
            return web.Response(
                status=429,
                body=_error_body(RATE_LIMIT_MESSAGE, status=429, kind="rate_limit_error"),
                content_type="application/json",
                headers=headers,
            )

        payload = rec.json
        if not isinstance(payload, dict):
            return self._error(rec, 400, "Invalid request: the body must be a JSON object")
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(rec, 400, "Invalid request: 'messages' must be a non-empty list")
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            return self._error(rec, 400, "Invalid request: 'model' is required")
        if payload.get("max_tokens") is None:
            return self._error(rec, 400, MISSING_MAX_TOKENS_MESSAGE)
        max_tokens = _as_int(payload.get("max_tokens"))
        if max_tokens is None or max_tokens <= 0:
            return self._error(rec, 400, "Invalid request: 'max_tokens' must be a positive integer")

        prompt_tokens = _tokens(_messages_chars(messages))
        context = self._context_length(model)
        if context is not None and prompt_tokens + max_tokens > context:
            return self._error(
                rec,
                400,
                f"This model's maximum context length is {context} tokens. However, you "
                f"requested {prompt_tokens + max_tokens} tokens. Please reduce the length of "
                "the messages or completion.",
            )

        text = self.reply(payload) if self.reply is not None else _echo_reply(payload)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _tokens(len(text)),
            "total_tokens": prompt_tokens + _tokens(len(text)),
        }
        self._completion_ids += 1
        base = {
            "id": f"chatcmpl-fake-{self._completion_ids}",
            "created": int(time.time()),
            "model": model,
        }
        headers = {"x-used-credits": self.credits} if self.credits is not None else {}
        pieces = _split(text, self.chunks)
        try:
            if payload.get("stream") is True:
                options = payload.get("stream_options")
                include_usage = isinstance(options, dict) and options.get("include_usage") is True
                return await self._stream(
                    request, rec, base, pieces, usage if include_usage else None, headers
                )
            return await self._complete(rec, base, text, usage, len(pieces), headers)
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the connection is lost (handler_cancellation).
            if not self._stopping:
                self._mark_disconnected(rec)
            raise

    def _context_length(self, model: str) -> int | None:
        for info in self.models:
            if info.get("id") == model:
                ctx = _as_int(info.get("context_length"))
                return ctx if ctx else None
        return None

    async def _complete(
        self,
        rec: UpstreamRequest,
        base: dict[str, Any],
        text: str,
        usage: dict[str, int],
        pieces: int,
        headers: dict[str, str],
    ) -> web.Response:
        # A non-stream answer takes as long as the stream would have taken.
        delay = self.first_token_delay + self.chunk_delay * (pieces - 1)
        if delay > 0:
            await asyncio.sleep(delay)
        body = {
            **base,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        rec.completed = True
        return web.Response(
            body=jsonlib.dumps(body, ensure_ascii=False).encode(),
            content_type="application/json",
            headers=headers,
        )

    async def _stream(
        self,
        request: web.Request,
        rec: UpstreamRequest,
        base: dict[str, Any],
        pieces: list[str],
        usage: dict[str, int] | None,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        break_after: int | None = self._take(self._breaks)
        stream_error: str | None = self._take(self._stream_errors)
        resp = web.StreamResponse(status=200, headers={**_SSE_HEADERS, **headers})
        await resp.prepare(request)  # StreamResponse sends the headers right away
        chunk_base = {**base, "object": "chat.completion.chunk"}
        try:
            if stream_error is not None:
                await resp.write(_sse({"error": {"message": stream_error}}))
                await resp.write_eof()
                return resp
            if break_after is not None and break_after <= 0:
                return self._break(request, resp)
            if self.first_token_delay > 0:
                await asyncio.sleep(self.first_token_delay)
            for index, piece in enumerate(pieces):
                if index and self.chunk_delay > 0:
                    await asyncio.sleep(self.chunk_delay)
                if _client_gone(request):
                    self._mark_disconnected(rec)
                    return resp
                delta = (
                    {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
                )
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                await resp.write(_sse({**chunk_base, "choices": [choice]}))
                rec.chunks_sent += 1
                if break_after is not None and rec.chunks_sent >= break_after:
                    return self._break(request, resp)
            if break_after is not None:
                return self._break(request, resp)
            # The tail goes out in one write: fewer syscalls under benchmark load.
            finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
            tail = _sse({**chunk_base, "choices": [finish]})
            if usage is not None:
                tail += _sse({**chunk_base, "choices": [], "usage": usage})
            await resp.write(tail + _DONE)
            await resp.write_eof()
            rec.completed = True
        except ConnectionResetError:  # includes aiohttp's ClientConnectionResetError
            self._mark_disconnected(rec)
        return resp

    @staticmethod
    def _break(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
        # close(), not abort(): the chunks already written are flushed first, then the socket
        # closes without the terminating zero-length chunk, so the client sees a broken body.
        transport = request.transport
        if transport is not None:
            transport.close()
        return resp

    @staticmethod
    def _mark_disconnected(rec: UpstreamRequest) -> None:
        if not rec.completed and not rec.disconnected:
            rec.disconnected = True
            rec.disconnected_event.set()


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _normalize_path(path: str) -> str:
    """Accept "chat/completions", "/chat/completions" or "/v1/chat/completions"."""
    path = "/" + path.lstrip("/")
    return path if path.startswith("/v1/") else "/v1" + path
