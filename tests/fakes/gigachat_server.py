"""A fake GigaChat (Sber) for tests and benchmarks: OAuth, chat, files, balance, embeddings.

It runs an aiohttp server on 127.0.0.1 (random port) over HTTPS with a certificate from a test
CA (``trustme``), because the real service chains to a CA that is not in the usual stores and
the bot must be given a CA bundle for it; ``ca_pem_path`` is that bundle. One server plays both
hosts: the OAuth endpoint (``auth_url``, ``/api/v2/oauth``) and the API (``base_url``,
``/api/v1``).

The fake is STRICT on purpose: whatever the real API rejects, it rejects with the real status
and ``{"status", "message"}`` body (``{"code", "message"}`` on the OAuth endpoint), so a wire
mistake in the bot fails its tests instead of production: unknown top-level fields (such as
OpenAI's ``stream_options``), a second or misplaced system message, content parts instead of a
string, more than one attachment per message or ten per request, ids of files never uploaded,
non-image uploads, a missing or stale token, more concurrent chat requests than the account
allows (``max_streams``; individuals get one).

Answers follow GigaChat's own shapes: no ``id``, ``"object": "chat.completion"`` even on stream
chunks, a versioned model name (``GigaChat:2.0.28.2``), the last chunk carrying
``finish_reason`` and ``usage`` (with ``precached_prompt_tokens``), then ``data: [DONE]``.
A drawing request (``function_call: "auto"``) answers ``<img src="<file id>" fuse="true"/>``
for a real JPEG kept in the file store, after a ``function_in_progress`` chunk when streamed.

Every request is recorded as a :class:`GigaChatRequest` (Authorization values are masked:
tokens and the authorization key are secrets even in a fake's records). Behaviour is switched
by attributes and methods on :class:`FakeGigaChat`; ``reset()`` restores the defaults.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import hashlib
import io
import json as jsonlib
import math
import secrets
import shutil
import ssl
import tempfile
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import trustme
from aiohttp import BodyPartReader, hdrs, web
from PIL import Image

from tests.fakes.upstream_server import (
    _DONE,
    _SSE_HEADERS,
    Arrivals,
    UpstreamRequest,
    _client_gone,
    _Fault,
    _Headers,
    _split,
    _sse,
    _tokens,
)

__all__ = [
    "BLACKLIST_TEXT",
    "DEFAULT_CREDENTIALS",
    "DEFAULT_SCOPE",
    "FakeGigaChat",
    "GigaChatRequest",
    "default_balance",
    "default_models",
    "tiny_jpeg",
]

API_PREFIX = "/api/v1"
OAUTH_PATH = "/api/v2/oauth"
CHAT_PATH = API_PREFIX + "/chat/completions"
MODELS_PATH = API_PREFIX + "/models"
FILES_PATH = API_PREFIX + "/files"
BALANCE_PATH = API_PREFIX + "/balance"
EMBEDDINGS_PATH = API_PREFIX + "/embeddings"

# The authorization key is base64("<client id>:<client secret>"), sent as is after "Basic ".
DEFAULT_CREDENTIALS = base64.b64encode(b"fake-client-id:fake-client-secret").decode()
DEFAULT_SCOPE = "GIGACHAT_API_PERS"
SCOPES = frozenset({"GIGACHAT_API_PERS", "GIGACHAT_API_B2B", "GIGACHAT_API_CORP"})
DEFAULT_TOKEN_LIFETIME = 30 * 60.0  # seconds, as the real tokens live
MODEL_VERSION = "2.0.28.2"
BLACKLIST_TEXT = "Не люблю менять тему разговора, но вот сейчас тот самый случай."
# What a built-in function reports while it works (streamed with role function_in_progress):
# text on purpose, so a client that forgets to skip these messages shows it and fails a test.
IN_PROGRESS_TEXT = "Рисую, осталось около 5 секунд"
DRAW_WORDS = ("нарисуй", "draw")
MAX_ATTACHMENTS = 10  # images per request
MAX_ATTACHED_BYTES = 20 * 1024 * 1024  # all attached files of one request
MAX_IMAGE_BYTES = 15 * 1024 * 1024  # one uploaded image
_STORE_MAX_BYTES = 256 * 1024 * 1024  # the fake's file store drops its oldest files beyond this
_TOKENS_MAX = 10_000  # issued tokens kept; the oldest are forgotten beyond this
EMBEDDING_SIZE = 16

# Top-level fields the chat endpoint knows. The real API rejects anything else with 422; so
# does the fake, which keeps the bot honest: OpenAI habits such as `stream_options` or
# `presence_penalty` must not leak into GigaChat requests.
_CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "n",
        "stream",
        "max_tokens",
        "repetition_penalty",
        "update_interval",
        "profanity_check",
        "function_call",
        "functions",
        "flags",
    }
)
_MESSAGE_FIELDS = frozenset(
    {
        "role",
        "content",
        "attachments",
        "functions_state_id",
        "function_call",
        "name",
        "data_for_context",
        "created",
    }
)
_ROLES = ("system", "user", "assistant", "function")
# The image types the file store takes, with the first bytes each must start with.
_IMAGE_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
    "image/bmp": (b"BM",),
}
_DEFAULT_FAULT_MESSAGES = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Permission denied",
    404: "Not Found",
    413: "Payload too large",
    422: "Unprocessable Entity",
    429: "Too many requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_Problem = tuple[int, str]  # (HTTP status, message) of a rejected request


def default_models() -> list[dict[str, Any]]:
    """A fresh copy of the default GET /models list (chat models and embedders)."""

    def model(mid: str, kind: str) -> dict[str, Any]:
        return {"id": mid, "object": "model", "owned_by": "salutedevices", "type": kind}

    return [
        model("GigaChat-2", "chat"),
        model("GigaChat-2-Pro", "chat"),
        model("GigaChat-2-Max", "chat"),
        model("Embeddings", "embedder"),
        model("EmbeddingsGigaR", "embedder"),
    ]


def default_model_aliases() -> dict[str, str]:
    """Older model names the chat endpoint still takes, though GET /models does not list them."""
    return {
        "GigaChat": "GigaChat-2",
        "GigaChat-Pro": "GigaChat-2-Pro",
        "GigaChat-Max": "GigaChat-2-Max",
    }


def default_balance() -> list[dict[str, Any]]:
    """A fresh copy of the default GET /balance entries (tokens left per model family)."""
    return [
        {"usage": "GigaChat", "value": 50000},
        {"usage": "GigaChat-Pro", "value": 991490},
        {"usage": "GigaChat-Max", "value": 120000},
        {"usage": "embeddings", "value": 1000000},
    ]


def tiny_jpeg(size: int = 64) -> bytes:
    """A real small JPEG (a colour gradient), what the fake "draws"."""
    ramp = Image.linear_gradient("L").resize((size, size))
    image = Image.merge("RGB", (ramp, ramp.rotate(90), Image.new("L", (size, size), 128)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


@dataclass
class GigaChatRequest(UpstreamRequest):
    """One request as the fake saw it. Authorization values are masked in `headers`."""

    auth_scheme: str | None = None  # "Basic", "Bearer", another word, or None when absent
    part_types: dict[str, str] = field(default_factory=dict)  # multipart part → content type

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat request's messages ([] for other requests or a malformed body)."""
        messages = self.json.get("messages") if isinstance(self.json, dict) else None
        return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []

    @property
    def attachments(self) -> list[str]:
        """Every attachment id of the chat request, in message order."""
        found: list[str] = []
        for message in self.messages:
            ids = message.get("attachments")
            if isinstance(ids, list):
                found.extend(i for i in ids if isinstance(i, str))
        return found


@dataclass(slots=True)
class _Token:
    credentials: str  # whose token it is: concurrency is counted per account
    expires_at: float  # on the fake's clock, seconds


@dataclass(slots=True)
class _StoredFile:
    content: bytes
    content_type: str
    filename: str
    created_at: int


@dataclass(slots=True)
class _Scripted:
    pieces: list[str] | None  # None: the usual reply, only the finish reason is scripted
    finish_reason: str


@dataclass(slots=True)
class _Answer:
    pieces: list[str]
    finish_reason: str
    drawing: bool = False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _last_user_text(payload: dict[str, Any]) -> str:
    for message in reversed(payload.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def _prompt_chars(payload: dict[str, Any]) -> int:
    return sum(
        len(m["content"])
        for m in payload.get("messages") or []
        if isinstance(m, dict) and isinstance(m.get("content"), str)
    )


def _response_model(model: str) -> str:
    """The name answers carry: the family name plus the serving version (GigaChat:2.0.28.2)."""
    family = model.removesuffix("-preview")
    if family.startswith("GigaChat-2"):
        family = "GigaChat" + family[len("GigaChat-2") :]
    return f"{family}:{MODEL_VERSION}"


def _embedding(text: str) -> list[float]:
    """A deterministic vector in [-1, 1] per text: equal texts embed equally."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 127.5 - 1.0, 6) for b in digest[:EMBEDDING_SIZE]]


def _mask(name: str, value: str) -> str:
    if name.lower() != "authorization":
        return value
    scheme, _, rest = value.partition(" ")
    return f"{scheme} ***" if rest else "***"


def _normalize_path(path: str) -> str:
    """A full API path from "chat/completions", "/chat/completions" or the full one; "oauth"."""
    if path.strip("/") == "oauth":
        return OAUTH_PATH
    path = "/" + path.lstrip("/")
    return path if path.startswith("/api/") else API_PREFIX + path


class FakeGigaChat:
    """GigaChat-like HTTPS server on 127.0.0.1: ``auth_url`` for OAuth, ``base_url`` for the API.

    Adjustable attributes (``reset()`` restores them): ``models``, ``model_aliases``,
    ``reply`` (payload → text), ``chunks``, ``first_token_delay``, ``chunk_delay``,
    ``token_lifetime`` (seconds), ``legacy_token_fields`` (answer ``{"tok", "exp"}``),
    ``max_streams``, ``balance``, ``pay_as_you_go``. Records: ``requests``, ``token_requests``,
    ``tokens_issued``, ``max_in_flight``, ``rejected_429``, ``drawn_files``.
    """

    def __init__(
        self,
        credentials: str = DEFAULT_CREDENTIALS,
        *,
        scope: str = DEFAULT_SCOPE,
        max_streams: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.scope = scope
        self._default_max_streams = max_streams
        self._clock = clock  # token expiry; injectable so tests expire tokens without waiting
        self.ca = trustme.CA()
        self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._server_ssl)
        self._ca_dir = Path(tempfile.mkdtemp(prefix="fake-gigachat-"))
        self._write_ca()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = False
        self._handlers: set[asyncio.Task[Any]] = set()
        self._arrivals = Arrivals()
        self._jpeg = tiny_jpeg()
        # Issued tokens outlive reset(): a client keeps its token between tests, as it would
        # between requests to the real service.
        self._tokens: OrderedDict[str, _Token] = OrderedDict()
        self.reset()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._write_ca()
        app = web.Application(client_max_size=2 * MAX_ATTACHED_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a lost connection cancels the handler, so disconnects are seen
        # at once; access_log=None: no per-request logging (benchmarks).
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self._server_ssl)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]
        self._stopping = False

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            self._stopping = True
            for task in list(self._handlers):  # slow streams would hold up cleanup()
                task.cancel()
            if self._handlers:
                await asyncio.gather(*self._handlers, return_exceptions=True)
            await runner.cleanup()
        shutil.rmtree(self._ca_dir, ignore_errors=True)  # start() writes the CA file again

    async def __aenter__(self) -> FakeGigaChat:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def origin(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeGigaChat is not started")
        return f"https://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        return self.origin + API_PREFIX

    @property
    def auth_url(self) -> str:
        return self.origin + OAUTH_PATH

    @property
    def ca_pem_path(self) -> str:
        """The test CA's certificate (PEM): the bot's GIGACHAT_CA_BUNDLE."""
        return str(self._ca_dir / "gigachat-test-ca.pem")

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the fake's certificate (for tests' own clients)."""
        return ssl.create_default_context(cafile=self.ca_pem_path)

    def _write_ca(self) -> None:
        if not Path(self.ca_pem_path).exists():
            self._ca_dir.mkdir(parents=True, exist_ok=True)
            self.ca.cert_pem.write_to_path(self.ca_pem_path)

    def reset(self) -> None:
        """Back to defaults: records, switches, scripts, faults and files (tokens are kept)."""
        self.requests: list[GigaChatRequest] = []
        self.models: list[dict[str, Any]] = default_models()
        self.model_aliases: dict[str, str] = default_model_aliases()
        self.reply: Callable[[dict[str, Any]], str] | None = None
        self.chunks: int = 5
        self.first_token_delay: float = 0.0
        self.chunk_delay: float = 0.0
        self.token_lifetime: float = DEFAULT_TOKEN_LIFETIME
        self.legacy_token_fields: bool = False
        self.max_streams: int = self._default_max_streams
        self.balance: list[dict[str, Any]] = default_balance()
        self.pay_as_you_go: bool = False
        self.token_requests: int = 0  # every request to the OAuth endpoint
        self.tokens_issued: int = 0
        self.max_in_flight: int = 0  # the most chat requests of one account seen at once
        self.rejected_429: int = 0
        self.drawn_files: list[str] = []  # file ids of the images "drawn", in order
        self._in_flight: dict[str, int] = {}
        self._forced_401 = 0
        self._draw_next = False
        self._scripts: deque[_Scripted] = deque()
        self._faults: dict[str, deque[_Fault]] = {}
        self._files: OrderedDict[str, _StoredFile] = OrderedDict()
        self._files_bytes = 0
        self._released = asyncio.Event()
        self._released.set()

    # --- records ---------------------------------------------------------------------------

    def chat_requests(self) -> list[GigaChatRequest]:
        return [r for r in self.requests if r.path == CHAT_PATH]

    def requests_to(self, path: str) -> list[GigaChatRequest]:
        """Requests to `path` ("files", "/files", "/api/v1/files"; "oauth" for OAuth)."""
        norm = _normalize_path(path)
        return [r for r in self.requests if r.path == norm]

    def file_content(self, file_id: str) -> bytes | None:
        """The bytes of a stored file (uploaded or drawn), None when unknown."""
        stored = self._files.get(file_id)
        return None if stored is None else stored.content

    @property
    def in_flight(self) -> int:
        """Chat requests being answered now, over all accounts."""
        return sum(self._in_flight.values())

    async def wait_for_requests(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109 - the same test-bench API as FakeUpstream's
        *,
        path: str | None = None,
    ) -> list[GigaChatRequest]:
        """Wait until at least `count` requests (to `path` when given) arrived; return them.

        Raises TimeoutError when they do not arrive in time.
        """

        def matching() -> list[GigaChatRequest]:
            return list(self.requests) if path is None else self.requests_to(path)

        return await self._arrivals.wait(count, timeout, matching, "GigaChat")

    def _record(self, rec: GigaChatRequest) -> None:
        self.requests.append(rec)
        self._arrivals.notify()

    # --- switches and scripts --------------------------------------------------------------

    def expire_all_tokens(self) -> None:
        """Every token issued so far stops working at once ("Token has expired")."""
        for token in self._tokens.values():
            token.expires_at = -math.inf

    def reject_next_token(self, n: int = 1) -> None:
        """The next `n` API calls answer 401 whatever token they carry."""
        self._forced_401 += n

    def script_next(self, *pieces: str, finish_reason: str = "stop") -> None:
        """The next chat answer is exactly `pieces` (one stream chunk each). Calls queue up."""
        self._scripts.append(_Scripted(list(pieces) or [""], finish_reason))

    def blacklist_next(self) -> None:
        """The next chat answer is the canned refusal of a blacklisted topic."""
        self.script_next(BLACKLIST_TEXT, finish_reason="blacklist")

    def length_next(self) -> None:
        """The next chat answer is the usual one, reported as cut by max_tokens."""
        self._scripts.append(_Scripted(None, "length"))

    def draw_next(self) -> None:
        """The next chat request with ``function_call: "auto"`` draws, whatever its text."""
        self._draw_next = True

    def hold_answers(self) -> None:
        """Chat answers wait (a stream after its headers) until ``release_answers()``: a test
        can keep requests in flight without sleeping."""
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
        """The next `times` requests to `path` answer `status` with ``{"status", "message"}``
        (before any auth check). Calls queue up."""
        body = {"status": status, "message": message or _DEFAULT_FAULT_MESSAGES.get(status, "")}
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
        authorization = request.headers.get(hdrs.AUTHORIZATION)
        rec = GigaChatRequest(
            path=request.path,
            method=request.method,
            headers=_Headers((k.lower(), _mask(k, v)) for k, v in request.headers.items()),
            json=None,
            started_at=time.monotonic(),
            auth_scheme=authorization.partition(" ")[0] if authorization else None,
        )
        if request.query_string:
            rec.query = dict(request.query)
        bad_body = await _read_body(request, rec)
        self._record(rec)

        fault = self._take_fault(rec.path)
        if fault is not None:
            rec.status = fault.status
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        if rec.path == OAUTH_PATH and request.method == "POST":
            return self._oauth(request, rec)
        if not rec.path.startswith(API_PREFIX + "/"):
            return _error(rec, 404, "Not Found")

        credentials, problem = self._authorize(authorization)
        if credentials is None:
            return _error(rec, 401, problem)
        if bad_body is not None:
            return _error(rec, 400, bad_body)
        try:
            return await self._route(request, rec, credentials)
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client goes away (handler_cancellation).
            if not self._stopping:
                _mark_disconnected(rec)
            raise

    async def _route(
        self, request: web.Request, rec: GigaChatRequest, credentials: str
    ) -> web.StreamResponse:
        method, path = request.method, rec.path
        if method == "POST" and path == CHAT_PATH:
            return await self._chat(request, rec, credentials)
        if method == "GET" and path == MODELS_PATH:
            return _json(rec, {"object": "list", "data": copy.deepcopy(self.models)})
        if method == "POST" and path == FILES_PATH:
            return self._upload(rec)
        if method == "GET" and path.startswith(FILES_PATH + "/") and path.endswith("/content"):
            return self._download(rec, path[len(FILES_PATH) + 1 : -len("/content")])
        if method == "GET" and path == BALANCE_PATH:
            if self.pay_as_you_go:  # the balance method is not offered to such accounts
                return _error(rec, 403, "Permission denied")
            return _json(rec, {"balance": copy.deepcopy(self.balance)})
        if method == "POST" and path == EMBEDDINGS_PATH:
            return self._embeddings(rec)
        return _error(rec, 404, "Not Found")

    # --- OAuth -----------------------------------------------------------------------------

    def _oauth(self, request: web.Request, rec: GigaChatRequest) -> web.Response:
        self.token_requests += 1
        scheme, _, key = (request.headers.get(hdrs.AUTHORIZATION) or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "basic" or not _is_base64(key):
            return _oauth_error(rec, 401, 4, "Can't decode 'Authorization' header")
        if key != self.credentials:
            return _oauth_error(rec, 401, 6, "credentials doesn't match db data")
        if not _is_uuid4(request.headers.get("RqUID")):
            # The real wording of this refusal is not documented; the status is.
            rec.status = 400
            return web.json_response({"message": "RqUID must be a uuid4"}, status=400)
        scope = rec.form.get("scope", "")
        if not scope:
            return _oauth_error(rec, 400, 5, "scope is empty")
        if scope not in SCOPES:
            return _oauth_error(rec, 400, 1, "scope data format invalid")
        if scope != self.scope:
            return _oauth_error(rec, 400, 7, "scope from db not fully includes consumed scope")

        token = secrets.token_urlsafe(32)
        expires_at = self._clock() + self.token_lifetime
        self._forget_tokens()
        self._tokens[token] = _Token(key, expires_at)
        self.tokens_issued += 1
        expires_ms = int(expires_at * 1000)  # milliseconds, as the real endpoint answers
        if self.legacy_token_fields:
            return _json(rec, {"tok": token, "exp": expires_ms})
        return _json(rec, {"access_token": token, "expires_at": expires_ms})

    def _forget_tokens(self) -> None:
        now = self._clock()
        for token in [t for t, v in self._tokens.items() if v.expires_at <= now]:
            del self._tokens[token]
        while len(self._tokens) >= _TOKENS_MAX:
            self._tokens.popitem(last=False)

    def _authorize(self, authorization: str | None) -> tuple[str | None, str]:
        """(the token's account, "") or (None, why the call is refused)."""
        if self._forced_401 > 0:
            self._forced_401 -= 1
            return None, "Unauthorized"
        scheme, _, token = (authorization or "").partition(" ")
        entry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if entry is None:
            return None, "Unauthorized"
        if entry.expires_at <= self._clock():
            return None, "Token has expired"
        return entry.credentials, ""

    # --- chat ------------------------------------------------------------------------------

    async def _chat(
        self, request: web.Request, rec: GigaChatRequest, credentials: str
    ) -> web.StreamResponse:
        busy = self._in_flight.get(credentials, 0)
        if busy >= self.max_streams:
            self.rejected_429 += 1
            return _error(rec, 429, "Too many requests")
        self._in_flight[credentials] = busy + 1
        self.max_in_flight = max(self.max_in_flight, busy + 1)
        try:
            problem = self._check_chat(rec.json)
            if problem is not None:
                return _error(rec, *problem)
            payload = cast(dict[str, Any], rec.json)  # checked above
            answer = self._answer(payload)
            text = "".join(answer.pieces)
            prompt_tokens = _tokens(_prompt_chars(payload))
            completion_tokens = _tokens(len(text))
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "precached_prompt_tokens": 0,
            }
            base = {
                "created": int(time.time()),
                "model": _response_model(payload["model"]),
                "object": "chat.completion",
            }
            if payload.get("stream") is True:
                return await self._stream(request, rec, base, answer, usage)
            return await self._complete(rec, base, answer, usage)
        finally:
            self._in_flight[credentials] -= 1

    def _is_chat_model(self, model: str) -> bool:
        model = self.model_aliases.get(model, model)
        return any(m.get("id") == model and m.get("type") == "chat" for m in self.models)

    def _check_chat(self, payload: Any) -> _Problem | None:
        if not isinstance(payload, dict):
            return 400, "Bad Request: the body must be a JSON object"
        unknown = sorted(set(payload) - _CHAT_FIELDS)
        if unknown:
            return 422, f"Invalid params: unknown field {unknown[0]!r}"
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            return 422, "Invalid params: model is required"
        if not self._is_chat_model(model):
            return 404, "No such model"
        problem = self._check_messages(payload.get("messages"))
        if problem is not None:
            return problem
        if "max_tokens" in payload:
            max_tokens = payload["max_tokens"]
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
                return 422, "Invalid params: max_tokens must be a positive integer"
        if "stream" in payload and not isinstance(payload["stream"], bool):
            return 422, "Invalid params: stream must be a boolean"
        return _check_sampling(payload) or _check_functions(payload)

    def _check_messages(self, messages: Any) -> _Problem | None:
        if not isinstance(messages, list) or not messages:
            return 422, "Invalid params: messages must be a non-empty array"
        images = attached_bytes = 0
        for index, message in enumerate(messages):
            where = f"messages[{index}]"
            if not isinstance(message, dict):
                return 422, f"Invalid params: {where} must be an object"
            unknown = sorted(set(message) - _MESSAGE_FIELDS)
            if unknown:
                return 422, f"Invalid params: {where}: unknown field {unknown[0]!r}"
            role = message.get("role")
            if role not in _ROLES:
                return 422, f"Invalid params: {where}.role must be one of {', '.join(_ROLES)}"
            if role == "system" and index > 0:
                if messages[0].get("role") == "system":
                    return 422, "Invalid params: only one system message is allowed"
                return 422, "system message must be the first message"
            problem = _check_content(where, role, message.get("content"))
            if problem is not None:
                return problem
            ids = message.get("attachments")
            if ids is None:
                continue
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                return 422, f"Invalid params: {where}.attachments must be an array of file ids"
            if len(ids) > 1:
                return 422, "Invalid params: only one image can be attached to a message"
            for file_id in ids:
                stored = self._files.get(file_id)
                if stored is None:
                    return 422, f"Invalid params: file {file_id} not found"
                attached_bytes += len(stored.content)
            images += len(ids)
        if images > MAX_ATTACHMENTS:
            return 422, f"Invalid params: at most {MAX_ATTACHMENTS} images per request"
        if attached_bytes > MAX_ATTACHED_BYTES:
            return 413, "Payload too large"
        return None

    def _answer(self, payload: dict[str, Any]) -> _Answer:
        scripted = self._scripts.popleft() if self._scripts else None
        if scripted is not None and scripted.pieces is not None:
            return _Answer(scripted.pieces, scripted.finish_reason)
        if scripted is None and self._wants_drawing(payload):
            self._draw_next = False
            file_id = self._store(self._jpeg, "image/jpeg", "image.jpg")
            self.drawn_files.append(file_id)
            return _Answer([f'<img src="{file_id}" fuse="true"/>'], "stop", drawing=True)
        text = self.reply(payload) if self.reply is not None else _echo(payload)
        finish = "stop" if scripted is None else scripted.finish_reason
        max_tokens = payload.get("max_tokens")
        if finish == "stop" and isinstance(max_tokens, int) and _tokens(len(text)) > max_tokens:
            text, finish = text[: max_tokens * 4], "length"  # cut as the model would be
        return _Answer(_split(text, self.chunks), finish)

    def _wants_drawing(self, payload: dict[str, Any]) -> bool:
        # Built-in functions (text2image) run only with function_call "auto" and no functions
        # of the client's own; then the model draws when asked to.
        if payload.get("function_call") != "auto" or payload.get("functions"):
            return False
        text = _last_user_text(payload).lower()
        return self._draw_next or any(word in text for word in DRAW_WORDS)

    async def _complete(
        self,
        rec: GigaChatRequest,
        base: dict[str, Any],
        answer: _Answer,
        usage: dict[str, int],
    ) -> web.Response:
        await self._released.wait()
        delay = self.first_token_delay + self.chunk_delay * (len(answer.pieces) - 1)
        if delay > 0:
            await asyncio.sleep(delay)
        message: dict[str, Any] = {"content": "".join(answer.pieces), "role": "assistant"}
        if answer.drawing:
            message["functions_state_id"] = str(uuid.uuid4())
        choice = {"message": message, "index": 0, "finish_reason": answer.finish_reason}
        return _json(rec, {"choices": [choice], **base, "usage": usage})

    async def _stream(
        self,
        request: web.Request,
        rec: GigaChatRequest,
        base: dict[str, Any],
        answer: _Answer,
        usage: dict[str, int],
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers=_SSE_HEADERS)
        await resp.prepare(request)
        try:
            await self._released.wait()
            if self.first_token_delay > 0:
                await asyncio.sleep(self.first_token_delay)
            if answer.drawing:
                delta = {
                    "content": IN_PROGRESS_TEXT,
                    "role": "function_in_progress",
                    "name": "text2image",
                    "created": base["created"],
                }
                await resp.write(_sse({"choices": [{"delta": delta, "index": 0}], **base}))
            last = len(answer.pieces) - 1
            for index, piece in enumerate(answer.pieces):
                if index and self.chunk_delay > 0:
                    await asyncio.sleep(self.chunk_delay)
                if _client_gone(request):
                    _mark_disconnected(rec)
                    return resp
                choice: dict[str, Any] = {
                    "delta": {"content": piece, "role": "assistant"},
                    "index": 0,
                }
                event: dict[str, Any] = {"choices": [choice], **base}
                tail = b""
                if index == last:  # GigaChat puts the finish reason and usage on the last chunk
                    choice["finish_reason"] = answer.finish_reason
                    event["usage"] = usage
                    tail = _DONE
                await resp.write(_sse(event) + tail)
                rec.chunks_sent += 1
            await resp.write_eof()
            rec.completed = True
        except ConnectionResetError:  # includes aiohttp's ClientConnectionResetError
            _mark_disconnected(rec)
        return resp

    # --- files, embeddings -----------------------------------------------------------------

    def _store(self, content: bytes, content_type: str, filename: str) -> str:
        file_id = str(uuid.uuid4())
        self._files[file_id] = _StoredFile(content, content_type, filename, int(time.time()))
        self._files_bytes += len(content)
        while self._files_bytes > _STORE_MAX_BYTES and len(self._files) > 1:
            _, dropped = self._files.popitem(last=False)
            self._files_bytes -= len(dropped.content)
        return file_id

    def _upload(self, rec: GigaChatRequest) -> web.Response:
        content = rec.files.get("file")
        if content is None:
            return _error(rec, 422, "Invalid params: a multipart 'file' part is required")
        if rec.form.get("purpose") != "general":
            return _error(rec, 422, "Invalid params: purpose must be 'general'")
        content_type = rec.part_types.get("file", "").partition(";")[0].strip().lower()
        signatures = _IMAGE_SIGNATURES.get(content_type)
        if signatures is None:
            return _error(
                rec,
                422,
                f"Invalid params: unsupported file type {content_type or 'unknown'!r}: "
                "images must be JPEG, PNG, TIFF or BMP",
            )
        if not content.startswith(signatures):
            return _error(rec, 422, f"Invalid params: the file is not a valid {content_type}")
        if len(content) > MAX_IMAGE_BYTES:
            return _error(rec, 413, "Payload too large")
        filename = rec.filenames.get("file", "file")
        file_id = self._store(content, content_type, filename)
        stored = self._files[file_id]
        body = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": stored.created_at,
            "filename": filename,
            "purpose": "general",
            "access_policy": "private",
        }
        return _json(rec, body)

    def _download(self, rec: GigaChatRequest, file_id: str) -> web.Response:
        stored = self._files.get(file_id)
        if stored is None:
            return _error(rec, 404, "File not found")
        rec.completed = True
        return web.Response(body=stored.content, content_type=stored.content_type)

    def _embeddings(self, rec: GigaChatRequest) -> web.Response:
        payload = rec.json
        if not isinstance(payload, dict):
            return _error(rec, 400, "Bad Request: the body must be a JSON object")
        model = payload.get("model")
        if not any(m.get("id") == model and m.get("type") == "embedder" for m in self.models):
            return _error(rec, 404, "No such model")
        texts = payload.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return _error(rec, 422, "Invalid params: input must be a non-empty string array")
        data = [
            {
                "object": "embedding",
                "embedding": _embedding(text),
                "index": index,
                "usage": {"prompt_tokens": _tokens(len(text))},
            }
            for index, text in enumerate(texts)
        ]
        return _json(rec, {"object": "list", "data": data, "model": model})


def _check_content(where: str, role: str, content: Any) -> _Problem | None:
    if content is not None and not isinstance(content, str):
        # OpenAI-style content parts are not GigaChat's: images go in `attachments`.
        return 422, f"Invalid params: {where}.content must be a string"
    if role in ("system", "user") and not (content or "").strip():
        return 422, f"Invalid params: {where}.content must not be empty"
    if role == "function":
        try:
            parsed = jsonlib.loads(content or "")
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return 422, f"Invalid params: {where}.content must be a JSON object"
    return None


def _check_sampling(payload: dict[str, Any]) -> _Problem | None:
    temperature = payload.get("temperature")
    if temperature is not None and (not _is_number(temperature) or temperature < 0):
        return 422, "Invalid params: temperature must be in range [0, +inf)"
    top_p = payload.get("top_p")
    if top_p is not None and (not _is_number(top_p) or not 0 <= top_p <= 1):
        return 422, "Invalid params: top_p must be in range [0, 1]"
    penalty = payload.get("repetition_penalty")
    if penalty is not None and (not _is_number(penalty) or penalty <= 0):
        return 422, "Invalid params: repetition_penalty must be in range (0, +inf)"
    return None


def _check_functions(payload: dict[str, Any]) -> _Problem | None:
    call = payload.get("function_call")
    by_name = isinstance(call, dict) and isinstance(call.get("name"), str)
    if call is not None and call not in ("auto", "none") and not by_name:
        return 422, "Invalid params: function_call must be 'auto', 'none' or {\"name\": ...}"
    functions = payload.get("functions")
    if functions is not None and not isinstance(functions, list):
        return 422, "Invalid params: functions must be an array"
    return None


def _echo(payload: dict[str, Any]) -> str:
    return "Echo: " + _last_user_text(payload)


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return bool(value)


def _is_uuid4(value: str | None) -> bool:
    try:
        return value is not None and uuid.UUID(value).version == 4
    except ValueError:
        return False


def _error(rec: GigaChatRequest, status: int, message: str) -> web.Response:
    rec.status = status
    return web.json_response({"status": status, "message": message}, status=status)


def _json(rec: GigaChatRequest, body: Any) -> web.Response:
    rec.completed = True
    return web.Response(
        body=jsonlib.dumps(body, ensure_ascii=False).encode(), content_type="application/json"
    )


def _oauth_error(rec: GigaChatRequest, status: int, code: int, message: str) -> web.Response:
    rec.status = status
    return web.json_response({"code": code, "message": message}, status=status)


def _mark_disconnected(rec: GigaChatRequest) -> None:
    if not rec.completed and not rec.disconnected:
        rec.disconnected = True
        rec.disconnected_event.set()


async def _read_body(request: web.Request, rec: GigaChatRequest) -> str | None:
    """Record the body (JSON, form or multipart parts); returns why it is unreadable, if so."""
    if not request.body_exists:
        return None
    if request.content_type == "multipart/form-data":
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                if part.filename is None:
                    rec.form[part.name] = await part.text()
                    continue
                rec.files[part.name] = bytes(await part.read(decode=True))
                rec.filenames[part.name] = part.filename
                rec.part_types[part.name] = part.headers.get(hdrs.CONTENT_TYPE, "")
        except (ValueError, AssertionError, LookupError) as exc:
            return f"Bad Request: invalid multipart body: {exc}"
    elif request.content_type == "application/x-www-form-urlencoded":
        post = await request.post()
        rec.form = {k: v for k, v in post.items() if isinstance(v, str)}
    else:
        raw = await request.read()
        with contextlib.suppress(ValueError):
            rec.json = jsonlib.loads(raw)
    return None
