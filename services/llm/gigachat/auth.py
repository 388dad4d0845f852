"""GigaChat's OAuth as an `httpx.Auth`: a short-lived access token from the authorization key.

GigaChat does not take the authorization key on API calls: it is exchanged at the OAuth
endpoint for an access token that lives 30 minutes. The token is cached and refreshed a minute
before it expires, under a lock with a double check, so a burst of requests makes one token
request (the endpoint allows ten a second and answers 429 beyond). A 401 from the API (a token
revoked or expired early) drops the token, fetches a new one and re-sends the request once.

Token requests go through the API's own httpx client (the proxy and the CA bundle that reach
GigaChat reach its OAuth host too), without any auth of their own. Their failures surface as
the usual UpstreamError classes, and nothing raised or logged here contains the authorization
key or a token.

Shared (`shared`, REDIS_URL): the token is one for all replicas. A replica without a usable
token reads it from the shared store; when there is none, one replica takes the refresh lock,
requests it and stores it until its refresh time, while the others wait (polling every
`SHARED_POLL` seconds) and read it. A holder that does not store a token in time (it died, or
its request hangs) is waited for no longer than a token request may last; a 401 drops the token
from the store too. Store unreachable: this replica requests its own token, as without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from services.llm.errors import AuthFailed, RateLimited, ServiceUnavailable, UpstreamError
from services.llm.retry import parse_retry_after
from services.llm.transport import read_capped
from services.llm.types import to_float

__all__ = ["GigaChatAuth", "SharedToken", "TokenClaim"]

log = logging.getLogger(__name__)

# The token answer is a few hundred bytes; an error page is read only for its message.
_MAX_BODY = 64 * 1024
# What a token answer without an expiry is taken to live (the documented lifetime).
_DEFAULT_LIFETIME = 30 * 60.0
# A token is used at least this long after it arrived, whatever expiry it states: a local
# clock running ahead must not turn every API call into a token request. A token that really
# expired meanwhile is replaced on the API's 401.
_MIN_REUSE = 30.0
# Expiries are unix milliseconds; a number below this is seconds (1e11 s is the year 5138).
_MILLISECONDS_FROM = 1e11
_REDACTED = "***"
# Replicas waiting for another one's token request look for its token this often (seconds).
SHARED_POLL = 0.05


@dataclass(frozen=True, slots=True)
class TokenClaim:
    """The shared store's answer: its token, or whether this replica should request one."""

    token: str | None  # a token other replicas use, valid for `ttl` more seconds
    ttl: float
    locked: bool  # no token: True = this replica holds the refresh lock; False = wait


class SharedToken(Protocol):
    """The token store shared by replicas (services/shared/token.py on Redis). Calls answer
    None when the store is unreachable."""

    async def claim(self, holder: str, lock_seconds: float) -> TokenClaim | None: ...

    async def store(self, holder: str, token: str, seconds: float) -> None: ...

    async def release(self, holder: str) -> None: ...

    async def drop(self, token: str) -> None: ...


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    refresh_at: float  # clock time from which a new token is fetched instead


class _Discarded(httpx.AsyncByteStream):
    """The body of a 401 that is about to be re-sent: httpx reads a rejected answer whole
    before re-sending, and nothing of it is needed, so it reads nothing (whatever its size)."""

    def __init__(self, original: httpx.AsyncByteStream) -> None:
        self._original = original

    async def __aiter__(self) -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an (empty) async generator

    async def aclose(self) -> None:
        await self._original.aclose()


class GigaChatAuth(httpx.Auth):
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        auth_url: str,
        credentials: str,
        scope: str,
        clock: Callable[[], float] = time.time,
        refresh_ahead: float = 60.0,
        timeout: float = 30.0,
        shared: SharedToken | None = None,
    ) -> None:
        """`credentials`: the authorization key as GigaChat's console shows it (already
        base64); `scope`: GIGACHAT_API_PERS, GIGACHAT_API_B2B or GIGACHAT_API_CORP. `clock`
        is unix time in seconds (expiries are absolute); `timeout` bounds one token request."""
        credentials = credentials.strip()
        if not credentials:
            raise ValueError("the GigaChat authorization key is empty")
        self._http = http
        self._url = auth_url
        self._credentials = credentials
        self._scope = scope
        self._clock = clock
        self._ahead = refresh_ahead
        self._timeout = httpx.Timeout(timeout)
        # The refresh lock outlives a token request by a little; nobody waits longer for it.
        self._lock_seconds = timeout + 5.0
        self._shared = shared
        self._lock = asyncio.Lock()
        self._token: _Token | None = None
        self._finished = 0  # token requests that ended, well or not
        self._failure: UpstreamError | None = None  # how the last one failed, if it did

    def __repr__(self) -> str:
        return f"GigaChatAuth(auth_url={self._url!r}, scope={self._scope!r})"

    def secrets(self) -> tuple[str, ...]:
        """What must never be shown: the authorization key and the current token."""
        token = self._token
        return (self._credentials, token.value) if token is not None else (self._credentials,)

    # --- the token ---------------------------------------------------------------------------

    async def token(self) -> str:
        """A valid access token: the cached one, or a new one fetched now.

        Callers that queued behind a failing token request get its error at once instead of
        repeating it one after another (each would wait for the same timeout).
        """
        cached = self._usable()
        if cached is not None:
            return cached
        seen = self._finished
        async with self._lock:
            cached = self._usable()
            if cached is not None:
                return cached
            failure = self._failure
            if failure is not None and self._finished != seen:
                # A token request failed while this caller waited for the lock.
                raise type(failure)(failure.status, failure.detail, retry_after=failure.retry_after)
            try:
                token = await self._obtain()
            except UpstreamError as exc:
                self._finished += 1
                self._failure = exc
                log.warning(
                    "gigachat token request failed: status=%s kind=%s",
                    exc.status if exc.status is not None else "-",
                    type(exc).__name__,
                )
                raise
            self._finished += 1
            self._failure = None
            self._token = token
            return token.value

    def forget(self, token: str) -> None:
        """Drop `token` (the API refused it); a newer one someone fetched meanwhile stays."""
        if self._token is not None and self._token.value == token:
            self._token = None

    async def _obtain(self) -> _Token:
        """A new token: requested here, or (shared) another replica's."""
        shared = self._shared
        if shared is None:
            return await self._fetch()
        holder = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._lock_seconds
        while True:
            claim = await shared.claim(holder, self._lock_seconds)
            if claim is None:  # the store is unreachable: a token of our own
                return await self._fetch()
            if claim.token is not None:
                return _Token(claim.token, self._clock() + claim.ttl)
            if claim.locked:
                try:
                    token = await self._fetch()
                except BaseException:
                    await asyncio.shield(shared.release(holder))
                    raise
                await shared.store(holder, token.value, token.refresh_at - self._clock())
                return token
            if loop.time() >= give_up_at:
                return await self._fetch()  # the holder never stored one: our own
            await asyncio.sleep(SHARED_POLL)

    def _usable(self) -> str | None:
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        return None

    async def _fetch(self) -> _Token:
        request = self._http.build_request(
            "POST",
            self._url,
            headers={
                "Authorization": f"Basic {self._credentials}",
                "RqUID": str(uuid.uuid4()),  # a fresh id per request, or the endpoint answers 400
                "Accept": "application/json",
            },
            data={"scope": self._scope},
            timeout=self._timeout,
        )
        try:
            # auth=None: the token request must not go through this very auth.
            response = await self._http.send(request, stream=True, auth=None)
        except httpx.RequestError as exc:
            raise ServiceUnavailable(None, self._network_detail(exc)) from exc
        try:
            body = await read_capped(response, _MAX_BODY)
        except httpx.RequestError as exc:
            raise ServiceUnavailable(None, self._network_detail(exc)) from exc
        finally:
            await response.aclose()
        if not response.is_success:
            raise self._status_error(response, body or b"")
        if body is None:
            raise ServiceUnavailable(response.status_code, "the token answer is too large")
        return self._parse(body)

    def _parse(self, body: bytes) -> _Token:
        # The body holds the token: no part of it may go into an error.
        try:
            data: Any = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ServiceUnavailable(200, "malformed token answer: not a JSON object")
        value = data.get("access_token") or data.get("tok")
        if not isinstance(value, str) or not value.strip():
            raise ServiceUnavailable(200, "malformed token answer: no access token")
        expires = to_float(data.get("expires_at", data.get("exp")))
        return _Token(value.strip(), self._refresh_at(expires))

    def _refresh_at(self, expires: float | None) -> float:
        now = self._clock()
        if expires is None:
            expires_at = now + _DEFAULT_LIFETIME
        else:
            expires_at = expires / 1000.0 if expires >= _MILLISECONDS_FROM else expires
        return max(expires_at - self._ahead, now + _MIN_REUSE)

    def _status_error(self, response: httpx.Response, body: bytes) -> UpstreamError:
        status = response.status_code
        message = self._message(body)
        detail = f"token request failed: {message}" if message else "token request failed"
        if status == 429:
            return RateLimited(status, detail, retry_after=parse_retry_after(response.headers))
        if status >= 500:
            return ServiceUnavailable(status, detail)
        # 400 (no RqUID, a malformed key), 401 (a wrong or revoked key), 403 (a scope the key
        # does not have): only the admin can fix any of them.
        return AuthFailed(status, detail)

    def _message(self, body: bytes) -> str:
        text = body[:_MAX_BODY].decode("utf-8", "replace").strip()
        try:
            data: Any = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key in ("message", "error_description", "error"):
                value = data.get(key)
                if isinstance(value, str) and value.strip():
                    text = value.strip()
                    break
        return self._redact(text[:300])

    def _network_detail(self, exc: Exception) -> str:
        message = str(exc)
        name = type(exc).__name__
        return self._redact(f"token request failed: {name}: {message}" if message else name)

    def _redact(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, _REDACTED)
        return text

    # --- httpx.Auth ----------------------------------------------------------------------------

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _Discarded(response.stream)
        self.forget(token)
        if self._shared is not None:
            await self._shared.drop(token)  # only if no replica replaced it meanwhile
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        # A second 401 is the caller's to see (AuthFailed): one refresh per request at most.
        yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        # The token is fetched with the async client: a sync client would send no token.
        raise RuntimeError("GigaChatAuth works with httpx.AsyncClient only")
