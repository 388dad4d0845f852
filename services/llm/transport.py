"""The one request-with-retries loop shared by the chat and media clients.

Every upstream call, streamed chat or a multipart upload, is a series of attempts: each attempt
of a paid call first passes the circuit breaker and the fair limiter (a retry is a new start for
the upstream's rate counter, so it must be paced like one), then sends; a failed attempt is
retried per `RetryPolicy` or raised as its classified `UpstreamError`. The callers only supply
"one attempt" and "what a good answer looks like", so the retry, pacing, breaker and secrecy
rules exist exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Hashable, Mapping
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

__all__ = ["Failure", "UpstreamTransport", "is_health_failure"]

T = TypeVar("T")

_REDACTED = "***"
# An error body is read for its message only; a proxy's HTML page may be huge.
_MAX_ERROR_BODY = 64 * 1024
# JSON answers (a base64 image is the largest) are trusted up to this much.
DEFAULT_MAX_BODY = 64 * 1024 * 1024

Classifier = Callable[[int, str], UpstreamError]


class Failure:
    """One failed attempt: the error to raise if no retry follows, and whether one may."""

    __slots__ = ("error", "headers", "retryable")

    def __init__(
        self, error: UpstreamError, *, retryable: bool, headers: Mapping[str, str] | None = None
    ) -> None:
        self.error = error
        self.retryable = retryable
        self.headers = headers


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
        api_key: str,
        *,
        limiter: FairRateLimiter,
        breaker: CircuitBreaker,
        retry: RetryPolicy,
        app_title: str | None,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.breaker = breaker
        self.retry = retry
        self.app_title = app_title
        self._api_key = api_key
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"}
        if app_title:
            headers["X-Title"] = app_title
        self.headers = headers
        self.json_headers = {**headers, "Content-Type": "application/json"}

    def __repr__(self) -> str:
        return f"UpstreamTransport(base_url={self.base_url!r})"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # --- failures ----------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        key = self._api_key
        if key and key in text:
            text = text.replace(key, _REDACTED)
        return text

    def network_failure(self, exc: Exception) -> Failure:
        message = str(exc)
        detail = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        error = ServiceUnavailable(None, self.redact(detail))
        error.__cause__ = exc
        return Failure(error, retryable=True)

    async def status_failure(
        self, response: httpx.Response, classify: Classifier = classify_error
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
        error = classify(response.status_code, self.redact(text))
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
            return Failure(classify_error(status, body), retryable=should_retry(status))
        # Without a status we cannot tell whether resending helps: classify by the wording and
        # do not retry; an unrecognised text reads as a provider-side failure.
        error = classify_error(400, body)
        if type(error) is BadRequest:
            error = ServiceUnavailable(None, error.detail)
        return Failure(error, retryable=False)

    def malformed(self, what: str, status: int | None = None) -> Failure:
        """A success status with an unusable body. Not retried: a paid request may have been
        billed already, and a gateway that answers garbage once usually answers it again."""
        return Failure(ServiceUnavailable(status, self.redact(what)[:1000]), retryable=False)

    # --- the loop ----------------------------------------------------------------------------

    async def run(
        self,
        attempt: Callable[[], Awaitable[T | Failure]],
        *,
        paced: bool,
        user_key: Hashable = None,
        on_wait: Callable[[int], Awaitable[None]] | None = None,
    ) -> T:
        """Call `attempt` until it returns a result, retrying failures per the policy.

        `paced` calls (everything that costs money) pass `breaker.before_request()` and
        `limiter.acquire()` before every attempt and report each outcome to the breaker.
        Unpaced calls (model list, status polls, downloads) touch neither: they are cheap and
        must keep working while the breaker holds back the expensive traffic.
        An `attempt` that raises (cancellation, say) ends the loop without a breaker report;
        such an attempt must close whatever it opened itself.
        """
        breaker = self.breaker
        tries = 0
        while True:
            if paced:
                breaker.before_request()
                await self.limiter.acquire(user_key, on_wait)
            outcome = await attempt()
            if not isinstance(outcome, Failure):
                if paced:
                    breaker.record_success()
                return outcome
            if paced:
                if is_health_failure(outcome.error):
                    breaker.record_failure()
                else:
                    breaker.record_success()
            delay = self._delay(tries, outcome)
            if delay is None:
                raise self._give_up(outcome) from outcome.error.__cause__
            tries += 1
            await self._sleep(delay)

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
        classify: Classifier = classify_error,
        follow_redirects: bool | None = None,
        **kwargs: Any,
    ) -> T:
        """A non-streamed call with retries: `parse(response, body)` judges a 2xx answer.

        The body is read with a cap (counted while streaming, never read unbounded): a larger
        one is a ResponseTooLarge failure. `kwargs` go to `httpx.AsyncClient.build_request`
        (json, content, files, data, params) and are rebuilt for each attempt.
        """
        http = self.http
        send_headers = self.headers if headers is None else headers
        # None keeps the AsyncClient's own setting, as a plain `http.get()` would.
        redirects = httpx.USE_CLIENT_DEFAULT if follow_redirects is None else follow_redirects

        async def attempt() -> T | Failure:
            request = http.build_request(method, url, headers=send_headers, **kwargs)
            try:
                response = await http.send(request, stream=True, follow_redirects=redirects)
            except httpx.RequestError as exc:
                return self.network_failure(exc)
            try:
                if not response.is_success:
                    return await self.status_failure(response, classify)
                body = await read_capped(response, max_bytes)
                if body is None:
                    return Failure(
                        ResponseTooLarge(
                            response.status_code, f"the answer is larger than {max_bytes} bytes"
                        ),
                        retryable=False,
                    )
                return parse(response, body)
            except httpx.RequestError as exc:
                return self.network_failure(exc)
            finally:
                await response.aclose()

        return await self.run(attempt, paced=paced, user_key=user_key)


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
