"""The one request-with-retries loop shared by the chat and media clients.

Every upstream call, streamed chat or a multipart upload, is a series of attempts: each attempt
of a paid call first passes the circuit breaker and the fair limiter (a retry is a new start for
the upstream's rate counter, so it must be paced like one), then sends; a failed attempt is
retried per `RetryPolicy` or raised as its classified `UpstreamError`. The callers only supply
"one attempt" and "what a good answer looks like", so the retry, pacing, breaker and secrecy
rules exist exactly once.

The breaker hears about each request once, when it is decided (not about each attempt), with
the user's key: see `CircuitBreaker` for why. Operators get one log line per failed attempt
(provider, model, status, kind, attempt, the upstream's request id), never a key or a text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from services.llm.breaker import CircuitBreaker
from services.llm.errors import (
    BadRequest,
    RateLimited,
    ResponseTooLarge,
    ServiceUnavailable,
    UpstreamError,
    classify_error,
)
from services.llm.limiter import FairRateLimiter
from services.llm.retry import RetryPolicy, parse_retry_after, retry_delay, should_retry

__all__ = ["Classifier", "Failure", "UpstreamTransport", "is_health_failure", "request_id_of"]

T = TypeVar("T")
log = logging.getLogger(__name__)

_REDACTED = "***"
# An error body is read for its message only; a proxy's HTML page may be huge.
_MAX_ERROR_BODY = 64 * 1024
# JSON answers (a base64 image is the largest) are trusted up to this much.
DEFAULT_MAX_BODY = 64 * 1024 * 1024
# Where gateways put the id of a request (OpenAI, most proxies; Cloudflare's ray as a last resort).
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid", "cf-ray")
# A request id goes into the log as is: nothing but id-like characters, and not much of them.
_UNSAFE_ID = re.compile(r"[^\w.:/+=-]")

Classifier = Callable[[int, str], UpstreamError]


class Failure:
    """One failed attempt: the error to raise if no retry follows, and whether one may."""

    __slots__ = ("error", "headers", "request_id", "retryable")

    def __init__(
        self, error: UpstreamError, *, retryable: bool, headers: Mapping[str, str] | None = None
    ) -> None:
        self.error = error
        self.retryable = retryable
        self.headers = headers
        self.request_id = request_id_of(headers) if headers is not None else None


def _is_certificate_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):  # httpx's error, the transport's, then the ssl module's
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def request_id_of(headers: Mapping[str, str]) -> str | None:
    """The upstream's id of a request, from its response headers, fit for a log line."""
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return _UNSAFE_ID.sub("?", value[:100])
    return None


def is_health_failure(error: UpstreamError) -> bool:
    # What says "the upstream is unwell" (feeds the breaker); a 400 says it is alive and well.
    return isinstance(error, RateLimited | ServiceUnavailable)


class UpstreamTransport:
    """Authenticated requests to one OpenAI-compatible base URL, with retries.

    The httpx.AsyncClient is owned by the composition root (timeouts, pool, closing).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str | None = None,
        *,
        limiter: FairRateLimiter,
        breaker: CircuitBreaker,
        retry: RetryPolicy,
        app_title: str | None,
        sleep: Callable[[float], Awaitable[None]],
        deadline: float | None = None,
        auth: httpx.Auth | None = None,
        auth_headers: Mapping[str, str] | None = None,
        classify: Classifier = classify_error,
        secrets: Sequence[str] = (),
        provider: str | None = None,
    ) -> None:
        """`api_key` is sent as `Authorization: Bearer`; a provider with another scheme gives
        `auth_headers` (a static header such as `x-api-key`) or an `httpx.Auth` (OAuth), which
        httpx applies to every request to the provider's own origin. `classify` maps the
        provider's error bodies onto the UpstreamError classes; `secrets` (the key, tokens)
        are redacted from every detail and log line besides `api_key`."""
        self.http = http
        self.base_url = base_url.rstrip("/")
        # For the log: which provider failed (no path, no credentials).
        parsed = httpx.URL(self.base_url)
        self.provider = provider or parsed.host + (f":{parsed.port}" if parsed.port else "")
        # The longest one non-streamed attempt may take, first byte out to last byte in.
        self.deadline = deadline
        self.limiter = limiter
        self.breaker = breaker
        self.retry = retry
        self.app_title = app_title
        self.auth = auth
        self.classify = classify
        self._secrets = tuple(s for s in (api_key, *secrets) if s)
        self._sleep = sleep
        headers: dict[str, str] = {}
        if auth_headers is not None:
            headers.update(auth_headers)
        elif api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if app_title:
            headers["X-Title"] = app_title
        self.headers = headers
        self.json_headers = {**headers, "Content-Type": "application/json"}
        self.redirect_safe_headers = {
            k: v for k, v in headers.items() if k.lower() in ("authorization", "x-title")
        }

    def __repr__(self) -> str:
        return f"UpstreamTransport(base_url={self.base_url!r})"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # --- failures ----------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text

    def network_failure(self, exc: Exception) -> Failure:
        message = str(exc)
        detail = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        error = ServiceUnavailable(None, self.redact(detail))
        error.__cause__ = exc
        # A certificate that does not verify will not verify on the next attempt either.
        return Failure(error, retryable=not _is_certificate_error(exc))

    async def status_failure(
        self, response: httpx.Response, classify: Classifier | None = None
    ) -> Failure:
        body = b""
        try:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= _MAX_ERROR_BODY:
                    break
        except httpx.HTTPError:
            pass
        text = body[:_MAX_ERROR_BODY].decode("utf-8", "replace")
        error = (classify or self.classify)(response.status_code, self.redact(text))
        return Failure(
            error, retryable=should_retry(response.status_code), headers=response.headers
        )

    def body_failure(self, payload: Any) -> Failure:
        """An `{"error": ...}` object in a 200 answer (or a stream), classified like HTTP."""
        status = None
        code = payload.get("code") if isinstance(payload, dict) else None
        if isinstance(code, int | str) and not isinstance(code, bool):
            try:
                number = int(code)
            except ValueError:
                number = 0
            if 400 <= number <= 599:
                status = number
        body = self.redact(json.dumps({"error": payload}, ensure_ascii=False, default=str))
        if status is not None:
            return Failure(self.classify(status, body), retryable=should_retry(status))
        # Without a status we cannot tell whether resending helps: classify by the wording and
        # do not retry; an unrecognised text reads as a provider-side failure.
        error = self.classify(400, body)
        if type(error) is BadRequest:
            error = ServiceUnavailable(None, error.detail)
        return Failure(error, retryable=False)

    def stalled(self, seconds: float) -> Failure:
        """An attempt that outlived its deadline (a slow or dripping body). Not retried: the
        deadline bounds the user's wait, and a paid request may have been billed."""
        error = ServiceUnavailable(None, f"no complete answer within {seconds:g} s")
        error.__cause__ = TimeoutError()
        return Failure(error, retryable=False)

    def malformed(self, what: str, status: int | None = None) -> Failure:
        """A success status with an unusable body. Not retried: a paid request may have been
        billed already, and a gateway that answers garbage once usually answers it again."""
        return Failure(ServiceUnavailable(status, self.redact(what)[:1000]), retryable=False)

    def json_or_failure(self, body: bytes, what: str, status: int | None = None) -> Any:
        """`body` parsed as JSON, or a `malformed` Failure naming `what` (e.g. "models list")
        with the start of the body. Callers check `isinstance(result, Failure)`."""
        try:
            return json.loads(body)
        except ValueError as exc:
            sample = body[:200].decode("utf-8", "replace")
            failure = self.malformed(f"malformed {what}: {sample!r}", status)
            failure.error.__cause__ = exc
            return failure

    # --- the loop ----------------------------------------------------------------------------

    async def run(
        self,
        attempt: Callable[[], Awaitable[T | Failure]],
        *,
        paced: bool,
        user_key: Hashable = None,
        on_wait: Callable[[int], Awaitable[None]] | None = None,
        model: str | None = None,
    ) -> T:
        """Call `attempt` until it returns a result, retrying failures per the policy.

        `paced` calls (everything that costs money) pass `breaker.before_request()` once and
        `limiter.acquire()` before every attempt (a retry is a new start for the upstream's
        rate counter); the request's outcome is reported to the breaker once, with
        `user_key`. A retry is dropped when the breaker opened meanwhile. Unpaced calls (model
        list, status polls, downloads) touch neither: they are cheap and must keep working
        while the breaker holds back the expensive traffic.
        An `attempt` that raises (cancellation, say) ends the loop without a breaker report;
        such an attempt must close whatever it opened itself.
        """
        breaker = self.breaker
        tries = 0
        if paced:
            breaker.before_request()
        while True:
            if paced:
                await self.limiter.acquire(user_key, on_wait)
            outcome = await attempt()
            if not isinstance(outcome, Failure):
                if paced:
                    breaker.record_success(user_key)
                return outcome
            delay = self._delay(tries, outcome)
            if delay is not None and paced and breaker.state == "open":
                delay = None  # others' failures opened it meanwhile: no more traffic now
            self.log_failure(outcome, model=model, attempt=tries + 1, retrying=delay is not None)
            if delay is None:
                if paced:
                    self.report(outcome.error, user_key)
                raise self._give_up(outcome) from outcome.error.__cause__
            tries += 1
            await self._sleep(delay)
            if paced and breaker.state == "open":
                # Others' failures opened it while this one waited: give up with its own error.
                self.report(outcome.error, user_key)
                raise self._give_up(outcome) from outcome.error.__cause__

    def report(self, error: UpstreamError, user_key: Hashable) -> None:
        """Tell the breaker how a request ended: a health failure, or "the service answered"."""
        if is_health_failure(error):
            self.breaker.record_failure(user_key)
        else:
            self.breaker.record_success(user_key)

    def log_failure(
        self,
        failure: Failure,
        *,
        model: str | None,
        attempt: int,
        retrying: bool,
        stage: str = "request",
    ) -> None:
        """One line per failed attempt for operators: never the key, never a message text
        (an upstream's error text may quote the user's prompt)."""
        error = failure.error
        cause = error.__cause__
        log.warning(
            "upstream %s failed: provider=%s model=%s status=%s kind=%s%s attempt=%d "
            "retry=%s request_id=%s",
            stage,
            self.provider,
            model or "-",
            error.status if error.status is not None else "-",
            type(error).__name__,
            f" cause={type(cause).__name__}" if cause is not None else "",
            attempt,
            "yes" if retrying else "no",
            failure.request_id or "-",
        )

    def _delay(self, tries: int, failure: Failure) -> float | None:
        if not failure.retryable or tries >= self.retry.max_retries:
            return None
        return retry_delay(tries, failure.headers, self.retry)

    @staticmethod
    def _give_up(failure: Failure) -> UpstreamError:
        error = failure.error
        if failure.headers is not None and error.retry_after is None:
            error.retry_after = parse_retry_after(failure.headers)
        return error

    # --- one plain request -------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        parse: Callable[[httpx.Response, bytes], T | Failure],
        *,
        paced: bool = False,
        user_key: Hashable = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int = DEFAULT_MAX_BODY,
        classify: Classifier | None = None,
        follow_redirects: bool | None = None,
        model: str | None = None,
        authenticate: bool = True,
        **kwargs: Any,
    ) -> T:
        """A non-streamed call with retries: `parse(response, body)` judges a 2xx answer.

        The body is read with a cap (counted while streaming, never read unbounded): a larger
        one is a ResponseTooLarge failure. Each attempt, from sending to the body's last byte,
        is bounded by the transport's `deadline`. `kwargs` go to
        `httpx.AsyncClient.build_request` (json, content, files, data, params) and are rebuilt
        for each attempt. `model` only names the request in the log. `authenticate=False`
        (a download from another origin) sends neither the auth headers nor the `httpx.Auth`.
        """
        http = self.http
        send_headers = self.headers if headers is None else headers
        # None keeps the AsyncClient's own setting, as a plain `http.get()` would.
        redirects = httpx.USE_CLIENT_DEFAULT if follow_redirects is None else follow_redirects
        deadline = self.deadline
        auth = self.auth if authenticate else None

        async def exchange() -> T | Failure:
            request = http.build_request(method, url, headers=send_headers, **kwargs)
            try:
                response = await http.send(
                    request, stream=True, follow_redirects=redirects, auth=auth
                )
            except httpx.TooManyRedirects as exc:
                failure = Failure(BadRequest(None, "too many redirects"), retryable=False)
                failure.error.__cause__ = exc
                return failure
            except httpx.RequestError as exc:
                return self.network_failure(exc)
            try:
                if not response.is_success:
                    return await self.status_failure(response, classify)
                body = await read_capped(response, max_bytes)
                if body is None:
                    outcome: T | Failure = Failure(
                        ResponseTooLarge(
                            response.status_code, f"the answer is larger than {max_bytes} bytes"
                        ),
                        retryable=False,
                    )
                else:
                    outcome = parse(response, body)
                if isinstance(outcome, Failure) and outcome.request_id is None:
                    outcome.request_id = request_id_of(response.headers)
                return outcome
            except httpx.RequestError as exc:
                failure = self.network_failure(exc)
                failure.request_id = request_id_of(response.headers)
                return failure
            finally:
                await response.aclose()

        async def attempt() -> T | Failure:
            if deadline is None:
                return await exchange()
            try:
                async with asyncio.timeout(deadline) as scope:
                    return await exchange()
            except TimeoutError:
                if not scope.expired():
                    raise
                return self.stalled(deadline)

        return await self.run(attempt, paced=paced, user_key=user_key, model=model)


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes | None:
    """The whole (decoded) body, or None as soon as it is known to exceed `max_bytes`."""
    length = response.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > max_bytes:
                return None
        except ValueError:
            pass
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            return None
        parts.append(chunk)
    return b"".join(parts)
