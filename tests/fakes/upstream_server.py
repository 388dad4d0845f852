"""A fake OpenAI-compatible upstream that behaves like VseGPT, for tests and benchmarks.

It runs an aiohttp server on 127.0.0.1 (random port) and serves ``/v1/chat/completions``
(SSE streaming and plain JSON), ``/v1/models`` and the media endpoints: ``/v1/audio/
transcriptions`` (multipart), ``/v1/audio/speech`` (a real WAV, or MP3 through ffmpeg),
``/v1/images/generations`` (a real PNG by URL or base64), ``/v1/video/generate`` +
``/v1/video/status`` (a job walking through ``video_steps``, ending in a real MP4),
``/v1/balance`` and ``/v1/files/<name>`` (the results the others link to). Every request is
recorded as an :class:`UpstreamRequest`; faults (HTTP errors, broken streams, in-stream errors,
a request-rate rule) are injected through methods on :class:`FakeUpstream`, and so is outright
misbehaviour (``misbehave_next``: huge response headers, an endless SSE line, a body that
drips a byte at a time; ``redirect_file``: a result link that redirects elsewhere).

Disconnects are detected through aiohttp's ``handler_cancellation``: when the peer's socket
closes, aiohttp cancels the handler task, so a handler sleeping between chunks wakes up at once
instead of polling the transport. The record is then marked ``disconnected`` and its event set.

The server must stay cheap: benchmarks push thousands of requests through it, so there is no
access log, no per-request logging and no sleeping unless a delay is configured.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import io
import json as jsonlib
import math
import ssl
import struct
import sys
import tempfile
import time
import wave
import zlib
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import BodyPartReader, web

__all__ = [
    "FakeUpstream",
    "UpstreamRequest",
    "default_balance",
    "default_models",
    "sine_wav",
    "tiny_png",
]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
SPEECH_PATH = "/v1/audio/speech"
IMAGES_PATH = "/v1/images/generations"
VIDEO_GENERATE_PATH = "/v1/video/generate"
VIDEO_STATUS_PATH = "/v1/video/status"
BALANCE_PATH = "/v1/balance"
FILES_PREFIX = "/v1/files/"
# Paid POSTs: the request-rate rule (enforce_rps) counts them like chat starts, as VseGPT does.
_PAID_PATHS = frozenset(
    {CHAT_PATH, TRANSCRIPTIONS_PATH, SPEECH_PATH, IMAGES_PATH, VIDEO_GENERATE_PATH}
)

DEFAULT_TRANSCRIPT = "hello from the voice note"
DEFAULT_VIDEO_STEPS = ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
BALANCE_DISABLED_REASON = "Balance API is disabled in account settings"
MODERATION_MESSAGE = (
    "Your request was rejected as a result of our safety system. Your prompt may contain text "
    "that is not allowed by our safety system."
)
SPEECH_MAX_INPUT = 4096  # OpenAI's limit for /audio/speech
SPEECH_SECONDS_PER_CHAR = 0.05
SPEECH_MAX_SECONDS = 30.0
SPEECH_RATE = 24000

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


def default_balance() -> dict[str, Any]:
    """A fresh copy of the default GET /v1/balance answer (numbers as strings, like VseGPT)."""
    return {
        "status": "ok",
        "data": {
            "credits": "10.75",
            "subscription_status": "ok",
            "subscription_end": "2026-12-31",
            "user_status": 0,
            "user_status_text": "OK",
        },
    }


def sine_wav(seconds: float, *, rate: int = SPEECH_RATE, freq: int = 400) -> bytes:
    """A mono 16-bit WAV with a sine tone at -10 dBFS (loud enough for any silence check)."""
    frames = max(1, round(seconds * rate))
    period = rate // freq  # whole samples per cycle, so one cycle can simply be repeated
    cycle = array(
        "h", (round(0.3 * 32767 * math.sin(2 * math.pi * i / period)) for i in range(period))
    )
    if sys.byteorder == "big":
        cycle.byteswap()  # WAV samples are little-endian
    one = cycle.tobytes()
    pcm = (one * (frames // period + 1))[: frames * 2]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buf.getvalue()


def tiny_png(width: int = 64, height: int = 64) -> bytes:
    """A valid RGB PNG with a colour gradient, built with zlib only."""
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")  # filter type "none"
        for x in range(width):
            row += bytes(((x * 255) // max(1, width - 1), (y * 255) // max(1, height - 1), 128))
        rows.append(bytes(row))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


async def _ffmpeg(args: list[str], data: bytes | None = None) -> bytes:
    """Run ffmpeg without blocking the loop; stdout is the result. Killed if cancelled."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg",
        "-hide_banner",
        "-loglevel",
        "error",
        *args,
        stdin=asyncio.subprocess.DEVNULL if data is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await proc.communicate(data)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {err.decode(errors='replace')[-500:]}")
    return out


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
    query: dict[str, str] = field(default_factory=dict)  # URL query parameters
    form: dict[str, str] = field(default_factory=dict)  # multipart/urlencoded plain fields
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # multipart file parts
    filenames: dict[str, str] = field(default_factory=dict)  # multipart part → its filename
    bytes_sent: int = 0  # body (or raw head) bytes written by a misbehaving answer


_Handler = Callable[[UpstreamRequest], Awaitable[web.StreamResponse]]


MISBEHAVIOURS = ("huge_headers", "endless_line", "drip")
_RAW_PIECE = 64 * 1024


@dataclass(slots=True)
class _Misbehaviour:
    kind: str
    size: int
    interval: float
    remaining: int


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


_R = TypeVar("_R")


class Arrivals:
    """What the fakes' `wait_for_requests` waits on: woken by every recorded request."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(
        self,
        count: int,
        timeout: float,  # noqa: ASYNC109 - the fakes' test-bench API
        matching: Callable[[], Sequence[_R]],
        what: str,
    ) -> list[_R]:
        """Until `matching()` holds `count` requests; TimeoutError naming `what` otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = list(matching())
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"expected {count} {what} requests, got {len(found)}")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)


class FakeUpstream:
    """VseGPT-like OpenAI-compatible server on 127.0.0.1 under ``/v1``.

    Public, freely adjustable attributes (``reset()`` restores them): ``models``, ``reply``,
    ``chunks``, ``first_token_delay``, ``chunk_delay``, ``single_write`` (the whole stream in
    one write, as a fast upstream's answer lands), ``credits``; media: ``transcript``,
    ``speech_format``, ``speech_mode``, ``image_mode``, ``video_steps``, ``video_fail_reason``,
    ``balance_payload``, ``balance_disabled``, ``files_require_auth``. Records: ``requests``,
    ``rejected_429``, ``speech_inputs``, ``video_jobs``, ``video_polls``.
    """

    def __init__(
        self, api_key: str = "test-key", *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.api_key = api_key
        self._ssl_context = ssl_context  # serve HTTPS with it (a test CA's certificate)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = False
        self._handlers: set[asyncio.Task[Any]] = set()
        self._arrivals = Arrivals()
        self._completion_ids = 0
        self._media_ids = 0  # never reset: a late poll from an old test cannot hit a new job
        self._png = tiny_png()
        self._mp4: bytes | None = None  # made by ffmpeg on first use, kept across reset()
        self._mp4_lock = asyncio.Lock()
        self._media_routes: dict[tuple[str, str], _Handler] = {
            ("POST", TRANSCRIPTIONS_PATH): self._transcribe,
            ("POST", SPEECH_PATH): self._speech,
            ("POST", IMAGES_PATH): self._image,
            ("POST", VIDEO_GENERATE_PATH): self._video_generate,
            ("GET", VIDEO_STATUS_PATH): self._video_status,
            ("GET", BALANCE_PATH): self._balance,
        }
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
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048, ssl_context=self._ssl_context)
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
        scheme = "https" if self._ssl_context is not None else "http"
        host = "localhost" if self._ssl_context is not None else "127.0.0.1"
        return f"{scheme}://{host}:{self._port}/v1"

    def reset(self) -> None:
        """Back to defaults: clears records, faults and behaviour overrides (api_key is kept)."""
        self.requests: list[UpstreamRequest] = []
        self.models: list[dict[str, Any]] = default_models()
        self.reply: Callable[[dict[str, Any]], str] | None = None
        self.chunks: int = 5
        self.first_token_delay: float = 0.0
        self.chunk_delay: float = 0.0
        self.single_write: bool = False
        self.credits: str | None = "0.0123"
        self.rejected_429: int = 0
        self._faults: dict[str, deque[_Fault]] = {}
        self._misbehaviours: dict[str, deque[_Misbehaviour]] = {}
        self._redirects: dict[str, tuple[str, int]] = {}  # file name → (Location, status)
        self._mirror: FakeUpstream | None = None  # result links redirect there
        self._mirror_hops = 1
        self._breaks: deque[list[int]] = deque()  # [chunks, remaining times]
        self._stream_errors: deque[list[Any]] = deque()  # [message, remaining times]
        self._rps: float | None = None
        self._rps_tolerance = 0.0
        self._rps_retry_after: str | None = "2"
        self._last_accepted: float | None = None
        # --- media ---
        self.transcript: str = DEFAULT_TRANSCRIPT  # what /audio/transcriptions hears
        self.speech_format: str = "wav"  # "wav" whatever was asked; "mp3" encodes via ffmpeg
        self.speech_mode: str = "audio"  # "url": answer {"url": <file link>} instead of audio
        self.speech_inputs: list[str] = []  # every accepted /audio/speech `input`, in order
        self.image_mode: str = "url"  # or "b64_json"
        self.video_steps: list[str] = list(DEFAULT_VIDEO_STEPS)  # status per poll; last repeats
        self.video_fail_reason: str | None = None  # the last step becomes FAILED with it
        self.video_jobs: dict[str, dict[str, Any]] = {}  # request_id → the generate request
        self.video_polls: dict[str, int] = {}  # request_id → status polls answered
        self.balance_payload: dict[str, Any] = default_balance()  # the whole /balance answer
        self.balance_disabled: bool = False
        self.files_require_auth: bool = False  # result links are public, like a CDN's
        self._files: dict[str, tuple[bytes, str]] = {}  # name → (content, content type)

    # --- records ---------------------------------------------------------------------------

    def chat_requests(self) -> list[UpstreamRequest]:
        return [r for r in self.requests if r.path == CHAT_PATH]

    def requests_to(self, path: str) -> list[UpstreamRequest]:
        """Requests to `path` ("audio/speech", "/audio/speech" or "/v1/audio/speech")."""
        norm = _normalize_path(path)
        return [r for r in self.requests if r.path == norm]

    def file_url(self, name: str) -> str:
        """The public link of a served result file."""
        return f"{self.url}/files/{name}"

    def add_file(self, name: str, content: bytes, content_type: str) -> str:
        """Serve `content` at GET /v1/files/<name>; returns its URL."""
        self._files[name] = (content, content_type)
        return self.file_url(name)

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
        norm = None if path is None else _normalize_path(path)

        def matching() -> list[UpstreamRequest]:
            return [r for r in self.requests if norm is None or r.path == norm]

        return await self._arrivals.wait(count, timeout, matching, "upstream")

    def _record(self, rec: UpstreamRequest) -> None:
        self.requests.append(rec)
        self._arrivals.notify()

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

    def misbehave_next(
        self,
        kind: str,
        *,
        path: str = CHAT_PATH,
        times: int = 1,
        size: int = 8 * 1024 * 1024,
        interval: float = 0.5,
    ) -> None:
        """The next `times` requests to `path` get a misbehaving answer (before any key check):

        - ``huge_headers``: ``HTTP/1.1 200`` then `size` bytes of 4 KB header lines, written
          raw, with no end of the head;
        - ``endless_line``: a 200 event stream whose first line (``data: aaaa…``) runs for
          `size` bytes without a newline;
        - ``drip``: a 200 answer (an event stream on the chat path, JSON elsewhere) whose
          body comes one byte every `interval` seconds, up to `size` bytes.

        ``UpstreamRequest.bytes_sent`` counts what went out; a client that gives up is
        marked ``disconnected``.
        """
        if kind not in MISBEHAVIOURS:
            raise ValueError(f"unknown misbehaviour {kind!r}")
        self._misbehaviours.setdefault(_normalize_path(path), deque()).append(
            _Misbehaviour(kind, size, interval, times)
        )

    def redirect_file(self, name: str, location: str, *, status: int = 302) -> str:
        """GET /v1/files/<name> answers `status` with `location`; returns the file's URL."""
        self._redirects[name] = (location, status)
        return self.file_url(name)

    def mirror_results_to(self, other: FakeUpstream | None, *, hops: int = 1) -> None:
        """Result links (images, speech, videos) redirect to `other` (another origin: a CDN),
        which then serves the file: `hops` redirects in all, the last one to `other`."""
        self._mirror = other
        self._mirror_hops = hops

    def break_stream_after(self, chunks: int, *, times: int = 1) -> None:
        """The next `times` streams send `chunks` content chunks, then the TCP connection drops."""
        self._breaks.append([chunks, times])

    def enforce_rps(
        self, rate: float | None, *, tolerance: float = 0.0, retry_after: str | None = "2"
    ) -> None:
        """429 (Retry-After: 2) for paid requests (chat and the media POSTs: transcription,
        speech, images, video generation) arriving < 1/rate s after the last accepted one.

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

    def _take_misbehaviour(self, path: str) -> _Misbehaviour | None:
        queue = self._misbehaviours.get(path)
        if not queue:
            return None
        item = queue[0]
        item.remaining -= 1
        if item.remaining <= 0:
            queue.popleft()
        return item

    async def _misbehave(
        self, request: web.Request, rec: UpstreamRequest, how: _Misbehaviour
    ) -> web.StreamResponse:
        if how.kind == "huge_headers":
            return await self._huge_headers(request, rec, how.size)
        is_chat = rec.path == CHAT_PATH
        headers = _SSE_HEADERS if is_chat else {"Content-Type": "application/json"}
        resp = web.StreamResponse(status=200, headers=headers)
        await resp.prepare(request)
        try:
            if how.kind == "endless_line":
                piece = b"a" * _RAW_PIECE
                await resp.write(b"data: ")
                while rec.bytes_sent < how.size:
                    await resp.write(piece)
                    rec.bytes_sent += len(piece)
            else:  # drip: a real answer's first bytes, one at a time
                first = {"choices": [{"index": 0, "delta": {"content": "slow"}}]}
                body = _sse(first) if is_chat else b'{"text": "' + b"x" * how.size
                for byte in body[: how.size]:
                    await resp.write(bytes((byte,)))
                    rec.bytes_sent += 1
                    await asyncio.sleep(how.interval)
            await resp.write_eof()
        except ConnectionResetError:  # the client gave up
            self._mark_disconnected(rec)
        return resp

    async def _huge_headers(
        self, request: web.Request, rec: UpstreamRequest, size: int
    ) -> web.StreamResponse:
        # Raw bytes through the connection's own writer (it waits while the client's reads
        # lag): aiohttp would not send a head this large, nor leave it unfinished.
        transport = request.transport
        assert transport is not None
        writer = request.writer
        line = b"X-Filler: " + b"h" * 4086 + b"\r\n"
        piece = line * (_RAW_PIECE // len(line))
        try:
            await writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
            while rec.bytes_sent < size:
                await writer.write(piece)
                rec.bytes_sent += len(piece)
        except ConnectionResetError:  # the client gave up
            self._mark_disconnected(rec)
        finally:
            transport.close()
        # Nothing more can be written on the closed transport; aiohttp drops this quietly.
        return web.StreamResponse()

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
        if request.query_string:
            rec.query = dict(request.query)
        bad_body: str | None = None
        if request.body_exists:
            content_type = request.content_type
            if content_type == "multipart/form-data":
                try:
                    await _read_multipart(request, rec)
                except (ValueError, AssertionError, LookupError) as exc:
                    bad_body = f"Invalid multipart body: {exc}"
            elif content_type == "application/x-www-form-urlencoded":
                post = await request.post()
                rec.form = {k: v for k, v in post.items() if isinstance(v, str)}
            else:
                raw = await request.read()
                with contextlib.suppress(ValueError):
                    rec.json = jsonlib.loads(raw)
        self._record(rec)

        fault = self._take_fault(rec.path)
        if fault is not None:
            return self._fault_response(rec, fault)
        misbehaviour = self._take_misbehaviour(rec.path)
        if misbehaviour is not None:
            try:
                return await self._misbehave(request, rec, misbehaviour)
            except asyncio.CancelledError:
                if not self._stopping:
                    self._mark_disconnected(rec)
                raise

        is_file = rec.path.startswith(FILES_PREFIX) and request.method in ("GET", "HEAD")
        if is_file and not self.files_require_auth:
            return self._serve_file(rec)

        key_error = self._check_key(request.headers.get("Authorization", ""))
        if key_error is not None:
            return self._error(rec, 400, key_error)
        if bad_body is not None:
            return self._error(rec, 400, bad_body)

        if rec.path == CHAT_PATH and request.method == "POST":
            return await self._chat(request, rec)
        if rec.path == MODELS_PATH and request.method == "GET":
            rec.completed = True
            return web.json_response({"object": "list", "data": self.models})
        if is_file:
            return self._serve_file(rec)
        handler = self._media_routes.get((request.method, rec.path))
        if handler is None:
            return self._error(rec, 404, f"Not found: {request.method} {rec.path}")
        if rec.path in _PAID_PATHS:
            rejected = self._reject_by_rate(rec)
            if rejected is not None:
                return rejected
        try:
            return await handler(rec)
        except asyncio.CancelledError:
            if not self._stopping:
                self._mark_disconnected(rec)
            raise

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

    def _reject_by_rate(self, rec: UpstreamRequest) -> web.Response | None:
        if self._check_rate(rec.started_at):
            return None
        self.rejected_429 += 1
        headers = {"Retry-After": self._rps_retry_after} if self._rps_retry_after else None
        rec.status = 429
        return web.Response(
            status=429,
            body=_error_body(RATE_LIMIT_MESSAGE, status=429, kind="rate_limit_error"),
            content_type="application/json",
            headers=headers,
        )

    async def _chat(self, request: web.Request, rec: UpstreamRequest) -> web.StreamResponse:
        rejected = self._reject_by_rate(rec)
        if rejected is not None:
            return rejected

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
            if self.single_write and break_after is None:
                return await self._stream_at_once(resp, rec, chunk_base, pieces, usage)
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

    async def _stream_at_once(
        self,
        resp: web.StreamResponse,
        rec: UpstreamRequest,
        chunk_base: dict[str, Any],
        pieces: list[str],
        usage: dict[str, int] | None,
    ) -> web.StreamResponse:
        body = b""
        for index, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            body += _sse({**chunk_base, "choices": [{"index": 0, "delta": delta}]})
        finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
        body += _sse({**chunk_base, "choices": [finish]})
        if usage is not None:
            body += _sse({**chunk_base, "choices": [], "usage": usage})
        await resp.write(body + _DONE)
        await resp.write_eof()
        rec.chunks_sent = len(pieces)
        rec.completed = True
        return resp

    # --- media -----------------------------------------------------------------------------

    def _json(self, rec: UpstreamRequest, body: Any, *, paid: bool = False) -> web.Response:
        rec.completed = True
        headers = {"x-used-credits": self.credits} if paid and self.credits is not None else None
        return web.Response(
            body=jsonlib.dumps(body, ensure_ascii=False).encode(),
            content_type="application/json",
            headers=headers,
        )

    def _new_id(self, prefix: str) -> str:
        self._media_ids += 1
        return f"{prefix}-{self._media_ids}"

    async def _transcribe(self, rec: UpstreamRequest) -> web.StreamResponse:
        if "file" not in rec.files:
            return self._error(rec, 400, "Invalid request: a multipart 'file' part is required")
        if not rec.form.get("model"):
            return self._error(rec, 400, "Invalid request: 'model' is required")
        if not rec.files["file"]:
            return self._error(
                rec, 400, "Invalid file format: the audio file is empty or could not be decoded"
            )
        if rec.form.get("response_format") in ("text", "srt", "vtt"):
            rec.completed = True
            headers = {"x-used-credits": self.credits} if self.credits is not None else None
            return web.Response(text=self.transcript, headers=headers)
        return self._json(rec, {"text": self.transcript}, paid=True)

    async def _speech(self, rec: UpstreamRequest) -> web.StreamResponse:
        payload = rec.json
        if not isinstance(payload, dict):
            return self._error(rec, 400, "Invalid request: the body must be a JSON object")
        if not payload.get("model"):
            return self._error(rec, 400, "Invalid request: 'model' is required")
        text = payload.get("input")
        if not isinstance(text, str) or not text:
            return self._error(rec, 400, "Invalid request: 'input' must be a non-empty string")
        if len(text) > SPEECH_MAX_INPUT:
            return self._error(
                rec,
                400,
                f"[{{'type': 'string_too_long', 'loc': ('body', 'input'), 'msg': 'String should "
                f"have at most {SPEECH_MAX_INPUT} characters', 'input': '...'}}]: the input "
                f"has {len(text)} characters, the maximum is {SPEECH_MAX_INPUT}",
            )
        self.speech_inputs.append(text)
        seconds = min(SPEECH_MAX_SECONDS, SPEECH_SECONDS_PER_CHAR * len(text))
        audio = sine_wav(seconds)
        ext, content_type = "wav", "audio/wav"
        if self.speech_format == "mp3":
            audio = await _ffmpeg(["-f", "wav", "-i", "pipe:0", "-f", "mp3", "pipe:1"], audio)
            ext, content_type = "mp3", "audio/mpeg"
        if self.speech_mode == "url":
            url = self.add_file(f"{self._new_id('speech')}.{ext}", audio, content_type)
            return self._json(rec, {"url": url}, paid=True)
        rec.completed = True
        headers = {"x-used-credits": self.credits} if self.credits is not None else {}
        return web.Response(body=audio, content_type=content_type, headers=headers)

    async def _image(self, rec: UpstreamRequest) -> web.StreamResponse:
        payload = rec.json
        if not isinstance(payload, dict):
            return self._error(rec, 400, "Invalid request: the body must be a JSON object")
        prompt = payload.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return self._error(rec, 400, "Invalid request: 'prompt' is required")
        if not payload.get("model"):
            return self._error(rec, 400, "Invalid request: 'model' is required")
        if "forbidden" in prompt.lower():
            return self._error(rec, 403, MODERATION_MESSAGE)
        count = max(1, min(4, _as_int(payload.get("n")) or 1))
        data = []
        for _ in range(count):
            item: dict[str, Any] = {"revised_prompt": prompt}
            if self.image_mode == "b64_json":
                item["b64_json"] = base64.b64encode(self._png).decode()
            else:
                item["url"] = self.add_file(f"{self._new_id('img')}.png", self._png, "image/png")
            data.append(item)
        return self._json(rec, {"created": int(time.time()), "data": data}, paid=True)

    async def _video_generate(self, rec: UpstreamRequest) -> web.StreamResponse:
        payload = rec.json
        if not isinstance(payload, dict):
            return self._error(rec, 400, "Invalid request: the body must be a JSON object")
        if not payload.get("model"):
            return self._error(rec, 400, "Invalid request: 'model' is required")
        if payload.get("action") != "generate":
            return self._error(rec, 400, "Invalid request: 'action' must be 'generate'")
        prompt = payload.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return self._error(rec, 400, "Invalid request: 'prompt' is required")
        if "forbidden" in prompt.lower():
            return self._error(rec, 403, MODERATION_MESSAGE)
        request_id = self._new_id("vid")
        self.video_jobs[request_id] = payload
        self.video_polls[request_id] = 0
        return self._json(rec, {"request_id": request_id}, paid=True)

    async def _video_status(self, rec: UpstreamRequest) -> web.StreamResponse:
        request_id = rec.query.get("request_id")
        if not request_id:
            return self._error(rec, 400, "Invalid request: 'request_id' is required")
        if request_id not in self.video_jobs:
            return self._error(rec, 404, f"Unknown request_id: {request_id}")
        polls = self.video_polls[request_id] = self.video_polls.get(request_id, 0) + 1
        steps = self.video_steps or list(DEFAULT_VIDEO_STEPS[-1:])
        state = str(steps[min(polls, len(steps)) - 1])
        body: dict[str, Any] = {"request_id": request_id, "status": state}
        if polls >= len(steps) and self.video_fail_reason is not None:
            body.update(status="FAILED", reason=self.video_fail_reason)
        elif state == "COMPLETED":
            body["url"] = self.add_file(f"{request_id}.mp4", await self._video_bytes(), "video/mp4")
        return self._json(rec, body)

    async def _video_bytes(self) -> bytes:
        async with self._mp4_lock:
            if self._mp4 is None:
                with tempfile.TemporaryDirectory() as tmp:
                    path = f"{tmp}/video.mp4"
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

    async def _balance(self, rec: UpstreamRequest) -> web.StreamResponse:
        if self.balance_disabled:
            return self._json(rec, {"status": "error", "reason": BALANCE_DISABLED_REASON})
        return self._json(rec, copy.deepcopy(self.balance_payload))

    def _serve_file(self, rec: UpstreamRequest) -> web.Response:
        redirect = self._redirects.get(rec.path[len(FILES_PREFIX) :])
        if redirect is not None:
            location, status = redirect
            rec.status = status
            rec.completed = True
            return web.Response(status=status, headers={"Location": location})
        found = self._files.get(rec.path[len(FILES_PREFIX) :])
        if found is not None and self._mirror is not None:
            name = rec.path[len(FILES_PREFIX) :]
            hop = int(rec.query.get("hop", "0"))
            if hop + 1 < self._mirror_hops:
                location = f"{self.file_url(name)}?hop={hop + 1}"
            else:
                location = self._mirror.add_file(name, *found)
            rec.status = 302
            rec.completed = True
            return web.Response(status=302, headers={"Location": location})
        if found is None:
            return self._error(rec, 404, f"File not found: {rec.path}")
        content, content_type = found
        rec.completed = True
        return web.Response(body=content, content_type=content_type)

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


async def _read_multipart(request: web.Request, rec: UpstreamRequest) -> None:
    """Record the parts of a multipart body: file parts in `files`, the rest in `form`."""
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            return
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue  # nested multipart or a nameless part: nothing a client of ours sends
        if part.filename is not None:
            rec.files[part.name] = bytes(await part.read(decode=True))
            rec.filenames[part.name] = part.filename
        else:
            rec.form[part.name] = await part.text()


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _normalize_path(path: str) -> str:
    """Accept "chat/completions", "/chat/completions" or "/v1/chat/completions"."""
    path = "/" + path.lstrip("/")
    return path if path.startswith("/v1/") else "/v1" + path
