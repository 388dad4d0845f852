"""Streaming client for an OpenAI-compatible chat API (VseGPT and friends).

The httpx.AsyncClient is owned by the composition root (timeouts, pool limits, closing); this
class only builds requests on it. The hot path (one SSE chunk) is: one line from httpx, one
`json.loads`, a few dict lookups, one small frozen dataclass — no logging, no copies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from typing import Any

import httpx

from services.llm.breaker import CircuitBreaker
from services.llm.errors import (
    BadRequest,
    RateLimited,
    ServiceUnavailable,
    StreamInterrupted,
    UpstreamError,
    classify_error,
)
from services.llm.limiter import FairRateLimiter
from services.llm.retry import RetryPolicy, parse_retry_after, retry_delay, should_retry
from services.llm.sse import DONE, iter_sse_data
from services.llm.types import (
    ModelInfo,
    StreamChunk,
    Usage,
    parse_model_info,
    parse_usage,
    to_float,
)

__all__ = ["LLMClient"]

_REDACTED = "***"


class _Failure:
    """One failed attempt: the error to raise if no retry follows, and whether one may."""

    __slots__ = ("error", "headers", "retryable")

    def __init__(
        self, error: UpstreamError, *, retryable: bool, headers: Mapping[str, str] | None = None
    ) -> None:
        self.error = error
        self.retryable = retryable
        self.headers = headers


class _StreamState:
    __slots__ = ("done", "failure", "finish", "usage")

    def __init__(self) -> None:
        self.done = False  # [DONE] seen
        self.failure: _Failure | None = None
        self.finish: str | None = None
        self.usage: Any = None  # the raw usage object


def _is_health_failure(error: UpstreamError) -> bool:
    # What says "the upstream is unwell" (feeds the breaker); a 400 says it is alive and well.
    return isinstance(error, RateLimited | ServiceUnavailable)


class LLMClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str,
        *,
        limiter: FairRateLimiter,
        breaker: CircuitBreaker,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass, safe as a default
        app_title: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._limiter = limiter
        self._breaker = breaker
        self._retry = retry
        self._sleep = sleep
        self._app_title = app_title
        self._chat_url = f"{self._base_url}/chat/completions"
        self._models_url = f"{self._base_url}/models"
        headers = {"Authorization": f"Bearer {api_key}"}
        if app_title:
            headers["X-Title"] = app_title
        self._headers = headers
        self._chat_headers = {**headers, "Content-Type": "application/json"}

    def __repr__(self) -> str:
        return f"LLMClient(base_url={self._base_url!r}, app_title={self._app_title!r})"

    # --- helpers -----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        key = self._api_key
        if key and key in text:
            text = text.replace(key, _REDACTED)
        return text

    def _network_failure(self, exc: Exception) -> _Failure:
        message = str(exc)
        detail = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        error = ServiceUnavailable(None, self._redact(detail))
        error.__cause__ = exc
        return _Failure(error, retryable=True)

    async def _status_failure(self, response: httpx.Response) -> _Failure:
        try:
            body = (await response.aread()).decode("utf-8", "replace")
        except httpx.HTTPError:
            body = ""
        error = classify_error(response.status_code, self._redact(body))
        return _Failure(
            error, retryable=should_retry(response.status_code), headers=response.headers
        )

    def _stream_error(self, payload: Any) -> _Failure:
        """An `{"error": ...}` object inside the stream, classified like an HTTP error."""
        status = None
        code = payload.get("code") if isinstance(payload, dict) else None
        if isinstance(code, int | str) and not isinstance(code, bool):
            try:
                number = int(code)
            except ValueError:
                number = 0
            if 400 <= number <= 599:
                status = number
        body = self._redact(json.dumps({"error": payload}, ensure_ascii=False, default=str))
        if status is not None:
            return _Failure(classify_error(status, body), retryable=should_retry(status))
        # Without a status we cannot tell whether resending helps: classify by the wording and
        # do not retry; an unrecognised text reads as a provider-side failure.
        error = classify_error(400, body)
        if type(error) is BadRequest:
            error = ServiceUnavailable(None, error.detail)
        return _Failure(error, retryable=False)

    async def _json_reply(
        self, response: httpx.Response
    ) -> tuple[_Failure | None, str, str | None, Usage | None]:
        try:
            obj = json.loads(await response.aread())
        except (ValueError, httpx.RequestError) as exc:
            return self._network_failure(exc), "", None, None
        if not isinstance(obj, dict):
            return self._network_failure(ValueError("malformed JSON reply")), "", None, None
        if obj.get("error"):
            return self._stream_error(obj["error"]), "", None, None
        text, finish = "", None
        choices = obj.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message") or choices[0].get("delta") or {}
            content = message.get("content") if isinstance(message, dict) else None
            text = content if isinstance(content, str) else ""
            finish = choices[0].get("finish_reason") or None
        credits = to_float(response.headers.get("x-used-credits"))
        usage = obj.get("usage")
        final_usage = parse_usage(usage, credits) if usage or credits is not None else None
        return None, text, finish, final_usage

    def _on_data(self, data: str, state: _StreamState) -> str | None:
        """Digest one SSE payload; return its text delta (or None) and update `state`."""
        if data == DONE:
            state.done = True
            return None
        try:
            obj = json.loads(data)
        except ValueError:
            if data.strip() == DONE:
                state.done = True
            else:
                state.failure = self._network_failure(
                    ValueError(f"malformed SSE data: {data[:200]!r}")
                )
            return None
        if type(obj) is not dict:
            return None
        error = obj.get("error")
        if error:
            state.failure = self._stream_error(error)
            return None
        usage = obj.get("usage")
        if usage:
            state.usage = usage
        choices = obj.get("choices")
        if not choices:
            return None
        try:
            choice = choices[0]
            reason = choice.get("finish_reason")
            delta = choice.get("delta") or choice.get("message")
            text = delta.get("content") if delta else None
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
        if reason:
            if reason == "error":
                state.failure = self._stream_error({"message": "the upstream ended with an error"})
                return None
            state.finish = reason
        return text if type(text) is str else None

    def _delay(self, attempt: int, failure: _Failure) -> float | None:
        if not failure.retryable or attempt >= self._retry.max_retries:
            return None
        return retry_delay(attempt, failure.headers, self._retry)

    def _give_up(self, failure: _Failure) -> UpstreamError:
        error = failure.error
        if failure.headers is not None and error.retry_after is None:
            error.retry_after = parse_retry_after(failure.headers)
        return error

    # --- public API --------------------------------------------------------------------------

    async def stream_chat(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        temperature: float | None = None,
        user_key: Hashable = None,
        on_wait: Callable[[int], Awaitable[None]] | None = None,
    ) -> AsyncIterator[StreamChunk]:
        """Stream an answer as StreamChunks; the last one carries usage and finish_reason.

        Use `contextlib.aclosing()` (or cancel the consuming task) to stop early: the HTTP
        response is closed at once, so the upstream sees the disconnect and stops billing.
        Raises an UpstreamError subclass; StreamInterrupted once text has been yielded.
        """
        payload: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if temperature is not None:
            payload["temperature"] = temperature
        # Encoded once: retries resend the same bytes.
        body = json.dumps(payload, ensure_ascii=False).encode()
        breaker = self._breaker
        attempt = 0
        while True:
            breaker.before_request()
            await self._limiter.acquire(user_key, on_wait)
            request = self._http.build_request(
                "POST", self._chat_url, content=body, headers=self._chat_headers
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx.RequestError as exc:
                failure = self._network_failure(exc)
                breaker.record_failure()
            else:
                reported = False  # breaker told about this attempt
                started = False  # non-empty text yielded: no more retries
                failure = None
                try:
                    if not response.is_success:
                        failure = await self._status_failure(response)
                    elif "json" in response.headers.get("content-type", ""):
                        # Some gateways answer a stream request with one JSON body: an error
                        # with status 200, or a whole non-streamed completion.
                        failure, text, finish, usage_obj = await self._json_reply(response)
                        if failure is None:
                            reported = True
                            breaker.record_success()
                            if text:
                                started = True
                                yield StreamChunk(text)
                            yield StreamChunk("", usage_obj, finish)
                            return
                    else:
                        state = _StreamState()
                        try:
                            async for data in iter_sse_data(
                                response.aiter_lines(), stop_at_done=False
                            ):
                                if state.done:
                                    continue  # read to the end so the connection is reused
                                text = self._on_data(data, state)
                                if text:
                                    if not started:
                                        started = reported = True
                                        breaker.record_success()
                                    yield StreamChunk(text)
                                elif state.failure is not None:
                                    break
                        except httpx.RequestError as exc:
                            state.failure = self._network_failure(exc)
                        failure = state.failure
                        if failure is None and not state.done and state.finish is None:
                            failure = self._network_failure(
                                EOFError("the stream ended before completion")
                            )
                        if failure is None:
                            if not reported:
                                reported = True
                                breaker.record_success()
                            credits = to_float(response.headers.get("x-used-credits"))
                            usage = None
                            if state.usage is not None or credits is not None:
                                usage = parse_usage(state.usage, credits)
                            yield StreamChunk("", usage, state.finish)
                            return
                    if not reported:
                        reported = True
                        if _is_health_failure(failure.error):
                            breaker.record_failure()
                        else:
                            breaker.record_success()
                    if started:
                        error = failure.error
                        if _is_health_failure(error):
                            breaker.record_failure()
                        raise StreamInterrupted(
                            error.status, error.detail or type(error).__name__
                        ) from error
                finally:
                    await response.aclose()
                    if not reported and response.is_success:
                        # Cancelled mid-stream: the upstream answered, so it is alive.
                        breaker.record_success()
            delay = self._delay(attempt, failure)
            if delay is None:
                raise self._give_up(failure) from failure.error.__cause__
            attempt += 1
            await self._sleep(delay)

    async def list_models(self) -> list[ModelInfo]:
        """GET /models with the same retry policy; no limiter and no breaker (not a chat)."""
        attempt = 0
        while True:
            try:
                response = await self._http.get(self._models_url, headers=self._headers)
            except httpx.RequestError as exc:
                failure = self._network_failure(exc)
            else:
                if response.is_success:
                    return self._parse_models(response)
                failure = await self._status_failure(response)
            delay = self._delay(attempt, failure)
            if delay is None:
                raise self._give_up(failure) from failure.error.__cause__
            attempt += 1
            await self._sleep(delay)

    def _parse_models(self, response: httpx.Response) -> list[ModelInfo]:
        try:
            data = response.json()
        except ValueError as exc:
            raise ServiceUnavailable(
                response.status_code, f"malformed models list: {response.text[:200]!r}"
            ) from exc
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ServiceUnavailable(response.status_code, "malformed models list: no data array")
        models: list[ModelInfo] = []
        for item in items:
            info = parse_model_info(item)
            if info is not None:
                models.append(info)
        return models
