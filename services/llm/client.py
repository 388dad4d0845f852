"""Streaming client for an OpenAI-compatible chat API (VseGPT and friends).

The httpx.AsyncClient is owned by the composition root (timeouts, pool limits, closing); this
class only builds requests on it. Retries, pacing, the breaker and key redaction live in
`UpstreamTransport`, shared with the media client. A stream is retried only before its first
token, so one attempt is "send and read up to the first text delta"; the rest of the stream is
read outside the retry loop, where any break is a StreamInterrupted.

The hot path (one SSE chunk) is: a line split from the raw bytes, one `json.loads`, a few dict
lookups, one small frozen dataclass — no logging, no copies.

A 200 answer that is not an event stream or JSON (a proxy's HTML page), invalid JSON, an
endless line or a body that stalls between lines is a failure that is not retried: the
request may have been paid for, and a gateway answering garbage once usually does again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any

import httpx

from services.llm.breaker import CircuitBreaker
from services.llm.errors import StreamInterrupted, classify_error
from services.llm.limiter import FairRateLimiter
from services.llm.retry import RetryPolicy
from services.llm.sse import DONE, MAX_LINE, SSELineTooLong, SSEStalled, iter_sse_data
from services.llm.transport import (
    Classifier,
    Failure,
    UpstreamTransport,
    is_health_failure,
    request_id_of,
)
from services.llm.types import (
    ModelInfo,
    StreamChunk,
    parse_model_info,
    parse_usage,
    to_float,
)

__all__ = ["LLMClient"]


class _StreamState:
    __slots__ = ("attempt", "done", "events", "failure", "finish", "usage")

    def __init__(self, attempt: int = 1) -> None:
        self.attempt = attempt  # which attempt opened the stream (for the log)
        self.events = 0  # SSE payloads seen
        self.done = False  # [DONE] seen
        self.failure: Failure | None = None
        self.finish: str | None = None
        self.usage: Any = None  # the raw usage object


class _Opened:
    """A successful attempt: either a live stream whose first text arrived, or a finished one."""

    __slots__ = ("events", "final", "response", "state", "text")

    def __init__(
        self,
        text: str,
        *,
        final: StreamChunk | None = None,
        response: httpx.Response | None = None,
        events: AsyncGenerator[str, None] | None = None,
        state: _StreamState | None = None,
    ) -> None:
        self.text = text  # the first text delta ("" when the answer had none)
        self.final = final  # set when the answer is complete (nothing left to read)
        self.response = response  # still open when the stream goes on
        self.events = events
        self.state = state


async def _close_events(events: AsyncGenerator[str, None]) -> None:
    # Left suspended, the SSE generator would only be finalised by the event loop later.
    with contextlib.suppress(RuntimeError):
        await events.aclose()


class LLMClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str | None = None,
        *,
        limiter: FairRateLimiter,
        breaker: CircuitBreaker,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass, safe as a default
        app_title: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        deadline: float | None = None,
        auth: httpx.Auth | None = None,
        auth_headers: Mapping[str, str] | None = None,
        classify: Classifier = classify_error,
        secrets: Sequence[str] = (),
        provider: str | None = None,
        stream_gap: float | None = None,
        max_line: int = MAX_LINE,
        skip_roles: frozenset[str] = frozenset(),
        credits_header: str | None = None,
    ) -> None:
        self._t = UpstreamTransport(
            http,
            base_url,
            api_key,
            limiter=limiter,
            breaker=breaker,
            retry=retry,
            app_title=app_title,
            sleep=sleep,
            deadline=deadline,
            auth=auth,
            auth_headers=auth_headers,
            classify=classify,
            secrets=secrets,
            provider=provider,
        )
        self._http = http
        self._breaker = breaker
        # The longest wait for a complete SSE line (see iter_sse_data), and its longest length.
        self._stream_gap = stream_gap
        self._max_line = max_line
        # Messages of these roles are not the answer (GigaChat's `function_in_progress`
        # status notes of its built-in functions): skipped, like a chunk without text.
        self._skip_roles = skip_roles
        # The response header that carries a request's cost, for a provider that sends one
        # (VseGPT's x-used-credits).
        self._credits_header = credits_header
        # Parsed once: httpx re-parses (and IP-checks) a str URL on every request.
        self._chat_url = httpx.URL(self._t.url("chat/completions"))
        # The streamed request is built once per attempt from these, not through the
        # client's merge of defaults. Identity encoding: the body is parsed as it is read.
        self._stream_headers = httpx.Headers(
            {
                **http.headers,
                **self._t.json_headers,
                "Accept": "text/event-stream",
                "Accept-Encoding": "identity",
            }
        )
        self._stream_extensions = {"timeout": http.timeout.as_dict()}
        self._models_url = self._t.url("models")

    def __repr__(self) -> str:
        return f"LLMClient(base_url={self._t.base_url!r}, app_title={self._t.app_title!r})"

    # --- SSE / JSON digestion ----------------------------------------------------------------

    def _credits_of(self, response: httpx.Response) -> float | None:
        header = self._credits_header
        return to_float(response.headers.get(header)) if header else None

    async def _json_reply(self, response: httpx.Response) -> Failure | _Opened:
        """A stream request answered with one JSON body: an error with status 200, or a whole
        non-streamed completion (some gateways do either)."""
        try:
            raw = await response.aread()
        except httpx.RequestError as exc:
            return self._t.network_failure(exc)
        obj = self._t.json_or_failure(raw, "JSON reply", response.status_code)
        if isinstance(obj, Failure):
            return obj
        if not isinstance(obj, dict):
            return self._t.malformed("malformed JSON reply: not an object", response.status_code)
        if obj.get("error"):
            return self._t.body_failure(obj["error"])
        text, finish = "", None
        choices = obj.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message") or choices[0].get("delta") or {}
            content = message.get("content") if isinstance(message, dict) else None
            text = content if isinstance(content, str) else ""
            finish = choices[0].get("finish_reason") or None
        credits = self._credits_of(response)
        usage = obj.get("usage")
        final_usage = parse_usage(usage, credits) if usage or credits is not None else None
        return _Opened(text, final=StreamChunk("", final_usage, finish))

    def _on_data(self, data: str, state: _StreamState) -> str | None:
        """Digest one SSE payload; return its text delta (or None) and update `state`."""
        state.events += 1
        if data == DONE:
            state.done = True
            return None
        try:
            obj = json.loads(data)
        except ValueError:
            if data.strip() == DONE:
                state.done = True
            else:
                state.failure = self._t.malformed(f"malformed SSE data: {data[:200]!r}")
            return None
        if type(obj) is not dict:
            return None
        error = obj.get("error")
        if error:
            state.failure = self._t.body_failure(error)
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
            if self._skip_roles and delta and delta.get("role") in self._skip_roles:
                return None
            text = delta.get("content") if delta else None
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
        if reason:
            if reason == "error":
                state.failure = self._t.body_failure(
                    {"message": "the upstream ended with an error"}
                )
                return None
            state.finish = reason
        return text if type(text) is str else None

    def _ending(self, response: httpx.Response, state: _StreamState) -> Failure | StreamChunk:
        """How a stream that yields no more text ended: a failure or the final chunk."""
        failure = state.failure
        if failure is None and not state.done and state.finish is None:
            failure = self._t.network_failure(EOFError("the stream ended before completion"))
        if failure is not None:
            return failure
        credits = self._credits_of(response)
        usage = None
        if state.usage is not None or credits is not None:
            usage = parse_usage(state.usage, credits)
        return StreamChunk("", usage, state.finish)

    def _stream_failure(self, exc: Exception) -> Failure:
        """What a broken read of the event stream means."""
        if isinstance(exc, SSELineTooLong):
            failure = self._t.malformed(f"protocol error: {exc}")
            failure.error.__cause__ = exc
            return failure
        if isinstance(exc, SSEStalled):
            return self._t.stalled(self._stream_gap or 0.0)
        return self._t.network_failure(exc)

    async def _open_stream(self, body: bytes, attempt: int = 1) -> _Opened | Failure:
        """One attempt: send, then read up to the first text delta (or the end)."""
        request = httpx.Request(
            "POST",
            self._chat_url,
            headers=self._stream_headers,
            content=body,
            extensions=self._stream_extensions,
        )
        try:
            response = await self._http.send(request, stream=True, auth=self._t.auth)
        except httpx.RequestError as exc:
            return self._t.network_failure(exc)
        handed_over = False
        events: AsyncGenerator[str, None] | None = None
        try:
            if not response.is_success:
                return await self._t.status_failure(response)
            content_type = response.headers.get("content-type", "").lower()
            if "json" in content_type:
                outcome = await self._json_reply(response)
                if isinstance(outcome, Failure) and outcome.request_id is None:
                    outcome.request_id = request_id_of(response.headers)
                return outcome
            if content_type and "event-stream" not in content_type:
                # An HTML login page, a proxy's notice: not an answer, and not worth paying
                # for again. The content type only is kept; the page may be huge.
                failure = self._t.malformed(
                    f"unexpected content type {content_type[:100]!r}", response.status_code
                )
                failure.request_id = request_id_of(response.headers)
                return failure
            state = _StreamState(attempt)
            # A server that compresses anyway is decoded by httpx; otherwise bytes go as read.
            encoded = "content-encoding" in response.headers
            chunks = response.aiter_bytes() if encoded else response.aiter_raw()
            events = iter_sse_data(
                chunks, stop_at_done=False, max_line=self._max_line, gap=self._stream_gap
            )
            try:
                async for data in events:
                    if state.done:
                        continue  # read to the end so the connection is reused
                    text = self._on_data(data, state)
                    if text:
                        handed_over = True
                        return _Opened(text, response=response, events=events, state=state)
                    if state.failure is not None:
                        break
            except (httpx.RequestError, SSELineTooLong, SSEStalled) as exc:
                state.failure = self._stream_failure(exc)
            if state.failure is None and state.events == 0 and not content_type:
                # No content type and not a single event: whatever it was, it was no stream.
                state.failure = self._t.malformed("an answer without any event")
            ending = self._ending(response, state)
            if isinstance(ending, Failure):
                ending.request_id = ending.request_id or request_id_of(response.headers)
                return ending
            return _Opened("", final=ending)
        except BaseException:
            if response.is_success:
                # Cancelled mid-stream: the upstream answered, so it is alive.
                self._breaker.record_success()
            raise
        finally:
            if not handed_over:
                await response.aclose()
                if events is not None:
                    await _close_events(events)

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
        extra: Mapping[str, Any] | None = None,
        include_usage: bool = True,
    ) -> AsyncGenerator[StreamChunk, None]:
        """Stream an answer as StreamChunks; the last one carries usage and finish_reason.

        `messages` are in the wire shape already (a provider builds them from turns);
        `extra` adds provider-specific fields to the body; `include_usage=False` leaves out
        OpenAI's `stream_options` for servers that reject it (they send usage anyway).

        Use `contextlib.aclosing()` (or cancel the consuming task) to stop early: the HTTP
        response is closed at once, so the upstream sees the disconnect and stops billing.
        Raises an UpstreamError subclass; StreamInterrupted once text has been yielded.
        """
        payload: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
        }
        if include_usage:
            payload["stream_options"] = {"include_usage": True}
        if temperature is not None:
            payload["temperature"] = temperature
        if extra:
            payload.update(extra)
        # Encoded once: retries resend the same bytes.
        body = json.dumps(payload, ensure_ascii=False).encode()
        attempts = 0

        def attempt() -> Awaitable[_Opened | Failure]:
            nonlocal attempts
            attempts += 1
            return self._open_stream(body, attempts)

        opened = await self._t.run(
            attempt, paced=True, user_key=user_key, on_wait=on_wait, model=model
        )
        response, events, state = opened.response, opened.events, opened.state
        if response is None or events is None or state is None:
            if opened.text:
                yield StreamChunk(opened.text)
            if opened.final is not None:
                yield opened.final
            return
        try:
            yield StreamChunk(opened.text)
            try:
                async for data in events:
                    if state.done:
                        continue  # read to the end so the connection is reused
                    text = self._on_data(data, state)
                    if text:
                        yield StreamChunk(text)
                    elif state.failure is not None:
                        break
            except (httpx.RequestError, SSELineTooLong, SSEStalled) as exc:
                state.failure = self._stream_failure(exc)
            ending = self._ending(response, state)
            if isinstance(ending, Failure):
                error = ending.error
                ending.request_id = ending.request_id or request_id_of(response.headers)
                self._t.log_failure(
                    ending, model=model, attempt=state.attempt, retrying=False, stage="stream"
                )
                if is_health_failure(error):
                    self._breaker.record_failure(user_key)
                raise StreamInterrupted(
                    error.status, error.detail or type(error).__name__
                ) from error
            yield ending
        finally:
            await response.aclose()
            await _close_events(events)

    async def list_models(self) -> list[ModelInfo]:
        """GET /models with the same retry policy; no limiter and no breaker (not a chat)."""
        return await self._t.request("GET", self._models_url, self._parse_models)

    def _parse_models(self, response: httpx.Response, body: bytes) -> list[ModelInfo] | Failure:
        data = self._t.json_or_failure(body, "models list", response.status_code)
        if isinstance(data, Failure):
            return data
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            return self._t.malformed("malformed models list: no data array", response.status_code)
        models: list[ModelInfo] = []
        for item in items:
            info = parse_model_info(item)
            if info is not None:
                models.append(info)
        return models
