"""Media endpoints of the OpenAI-compatible upstream: speech, images, video, balance.

Everything that costs money (transcribe, speech, generate_image, start_video) is paced and
guarded exactly like a chat start — breaker, fair limiter and retries per attempt — through the
same `UpstreamTransport` as the chat client. Status polls, the balance and result downloads are
free and cheap: retried on 5xx/network errors, but neither paced nor gated by the breaker, so a
video already paid for is still collected while the breaker holds new work back.

Answers are parsed leniently (numbers as strings, a JSON envelope or a bare body), because
aggregators forward whatever the underlying provider said.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import mimetypes
import re
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import httpx

from services.llm.breaker import CircuitBreaker
from services.llm.errors import (
    AuthFailed,
    BadRequest,
    BalanceUnavailable,
    NotOffered,
    RateLimited,
    ResponseTooLarge,
    ServiceUnavailable,
    UpstreamError,
    classify_error,
)
from services.llm.limiter import FairRateLimiter
from services.llm.retry import RetryPolicy, should_retry
from services.llm.transport import Classifier, Failure, UpstreamTransport
from services.llm.types import to_float, to_int

__all__ = [
    "MAX_SPEECH_BYTES",
    "Balance",
    "BalanceUnavailable",
    "ImageResult",
    "MediaClient",
    "ResponseTooLarge",
    "VideoState",
    "VideoStatus",
]

# Synthesised speech for one 4096-character TTS request is a few MB at most; a provider that
# answers with a link gets its file downloaded up to this size too.
MAX_SPEECH_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImageResult:
    url: str | None  # data[0].url
    data: bytes | None  # decoded data[0].b64_json
    revised_prompt: str | None = None


class VideoState(StrEnum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


# Spellings other providers behind the aggregator use; anything else unknown still reads as
# IN_PROGRESS so polling simply goes on (the caller's timeout ends it).
_STATE_ALIASES: Mapping[str, VideoState] = MappingProxyType(
    {
        "QUEUED": VideoState.IN_QUEUE,
        "PENDING": VideoState.IN_QUEUE,
        "PROCESSING": VideoState.IN_PROGRESS,
        "RUNNING": VideoState.IN_PROGRESS,
        "SUCCEEDED": VideoState.COMPLETED,
        "SUCCESS": VideoState.COMPLETED,
        "ERROR": VideoState.FAILED,
        "CANCELLED": VideoState.FAILED,
        "CANCELED": VideoState.FAILED,
    }
)


@dataclass(frozen=True, slots=True)
class VideoStatus:
    state: VideoState
    url: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    credits: float | None
    subscription_status: str | None
    subscription_end: str | None
    user_status: int | None  # 0 ok, 1 warning, 2 problem
    user_status_text: str | None


def _parse_state(value: Any) -> VideoState:
    if not isinstance(value, str):
        return VideoState.IN_PROGRESS
    key = value.strip().upper().replace(" ", "_")
    try:
        return VideoState(key)
    except ValueError:
        return _STATE_ALIASES.get(key, VideoState.IN_PROGRESS)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _first_url(obj: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, dict):
            value = value.get("url")
        url = _text(value)
        if url:
            return url
    return None


def _decode_json(body: bytes) -> Any:
    """The parsed body, or None when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def _says_json(response: httpx.Response) -> bool:
    return "json" in response.headers.get("content-type", "")


def _looks_json(response: httpx.Response, body: bytes) -> bool:
    return _says_json(response) or body[:64].lstrip()[:1] in (b"{", b"[")


def _b64(value: str) -> bytes | None:
    if value.startswith("data:"):
        _, _, value = value.partition(",")
    value = "".join(value.split())
    # Some providers send the URL-safe alphabet; padding is often dropped.
    altchars = b"-_" if "-" in value or "_" in value else None
    value += "=" * (-len(value) % 4)
    try:
        return base64.b64decode(value, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None


def _classify_balance(status: int, body: str) -> UpstreamError:
    # "Balance API is disabled" would otherwise read as a funds problem ("balance"): only a
    # bad key and upstream trouble keep their own class, the rest means "no balance for you".
    error = classify_error(status, body)
    if isinstance(error, AuthFailed | RateLimited | ServiceUnavailable):
        return error
    return BalanceUnavailable(status, error.detail)


_MODEL_WORD = re.compile(r"model|модел", re.IGNORECASE)


def _classify_endpoint(status: int, body: str) -> UpstreamError:
    # Any OpenAI-compatible server may lack VseGPT's media endpoints: its 404 then says "no
    # such API here", which users are told plainly, unless the body speaks of the model.
    error = classify_error(status, body)
    if status == 404 and not _MODEL_WORD.search(error.detail):
        return NotOffered(status, error.detail)
    return error


def _classify_download(status: int, body: str) -> UpstreamError:
    # A result link answering 403/404 is an expired or missing file, not a moderation or
    # "no such model" verdict; 5xx and 429 keep their retryable classes.
    if should_retry(status):
        return classify_error(status, body)
    return BadRequest(status, f"download failed: {body[:300]}" if body else "download failed")


class MediaClient:
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
        self._origin = _origin(httpx.URL(self._t.base_url))

    def __repr__(self) -> str:
        return f"MediaClient(base_url={self._t.base_url!r}, app_title={self._t.app_title!r})"

    # --- paid calls --------------------------------------------------------------------------

    async def transcribe(
        self,
        audio: bytes,
        *,
        filename: str,
        model: str,
        language: str | None,
        user_key: Hashable = None,
    ) -> str:
        """Speech to text (POST /audio/transcriptions, multipart). "" when nothing was heard."""
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        form = {"model": model, "response_format": "json"}
        if language:
            form["language"] = language
        t = self._t

        def parse(response: httpx.Response, body: bytes) -> str | Failure:
            obj = _decode_json(body) if _looks_json(response, body) else None
            if isinstance(obj, dict):
                if obj.get("error"):
                    return t.body_failure(obj["error"])
                text = obj.get("text")
                if isinstance(text, str):
                    return text.strip()
                if text is None and "text" in obj:
                    return ""
                return t.malformed(f"transcription without text: {body[:200]!r}")
            if isinstance(obj, str) and _says_json(response):
                return obj.strip()
            # response_format "text" (or a provider ignoring ours): the body is the transcript.
            return body.decode("utf-8", "replace").strip()

        return await t.request(
            "POST",
            t.url("audio/transcriptions"),
            parse,
            classify=_classify_endpoint,
            paced=True,
            user_key=user_key,
            model=model,
            files={"file": (filename, audio, mime)},
            data=form,
        )

    async def speech(
        self,
        text: str,
        *,
        model: str,
        voice: str,
        response_format: str = "mp3",
        user_key: Hashable = None,
    ) -> bytes:
        """Text to speech (POST /audio/speech) → the audio file's bytes.

        Some models answer JSON with a link (or base64) instead of audio; the link is then
        downloaded with the usual size cap.
        """
        t = self._t
        payload = {
            "model": model,
            "input": text,
            "voice": voice,
            "response_format": response_format,
        }

        def parse(response: httpx.Response, body: bytes) -> bytes | str | Failure:
            # Audio never starts with "{" (ID3/0xFF, RIFF, OggS, fLaC): a JSON object there is
            # a link, base64 or an error even when the content type says otherwise.
            if not _says_json(response) and body[:64].lstrip()[:1] != b"{":
                if not body:
                    return t.malformed("empty audio answer", response.status_code)
                return body
            obj = _decode_json(body)
            if isinstance(obj, dict):
                if obj.get("error"):
                    return t.body_failure(obj["error"])
                data = obj.get("data")
                item = data[0] if isinstance(data, list) and data else obj
                if isinstance(item, dict):
                    url = _first_url(item, "url", "audio_url", "file_url")
                    if url:
                        return url  # downloaded below, outside the paid retry loop
                    encoded = _text(item.get("b64_json") or item.get("audio"))
                    audio = _b64(encoded) if encoded else None
                    if audio:
                        return audio
            return t.malformed(f"speech answer without audio: {body[:200]!r}")

        result: bytes | str = await t.request(
            "POST",
            t.url("audio/speech"),
            parse,
            classify=_classify_endpoint,
            paced=True,
            user_key=user_key,
            model=model,
            headers=t.json_headers,
            content=json.dumps(payload, ensure_ascii=False).encode(),
            max_bytes=MAX_SPEECH_BYTES,
        )
        if isinstance(result, str):
            return await self.download(result, max_bytes=MAX_SPEECH_BYTES)
        return result

    async def generate_image(
        self, prompt: str, *, model: str, size: str | None = None, user_key: Hashable = None
    ) -> ImageResult:
        """POST /images/generations with n=1: a result URL and/or the decoded image bytes."""
        t = self._t
        payload: dict[str, Any] = {"model": model, "prompt": prompt, "n": 1}
        if size:
            payload["size"] = size

        def parse(response: httpx.Response, body: bytes) -> ImageResult | Failure:
            obj = _decode_json(body)
            if not isinstance(obj, dict):
                return t.malformed(f"malformed image answer: {body[:200]!r}")
            if obj.get("error"):
                return t.body_failure(obj["error"])
            data = obj.get("data")
            item = data[0] if isinstance(data, list) and data else None
            if not isinstance(item, dict):
                return t.malformed("image answer without data[0]")
            url = _text(item.get("url"))
            encoded = _text(item.get("b64_json"))
            image = _b64(encoded) if encoded else None
            if encoded and not image:
                return t.malformed("image answer with undecodable b64_json")
            if url is None and image is None:
                return t.malformed("image answer with neither url nor b64_json")
            return ImageResult(url, image, _text(item.get("revised_prompt")))

        return await t.request(
            "POST",
            t.url("images/generations"),
            parse,
            classify=_classify_endpoint,
            paced=True,
            user_key=user_key,
            model=model,
            headers=t.json_headers,
            content=json.dumps(payload, ensure_ascii=False).encode(),
        )

    async def start_video(
        self,
        prompt: str,
        *,
        model: str,
        aspect_ratio: str | None = None,
        image_url: str | None = None,
        user_key: Hashable = None,
    ) -> str:
        """POST /video/generate → the request_id to poll with `video_status`."""
        t = self._t
        payload: dict[str, Any] = {"model": model, "action": "generate", "prompt": prompt}
        if aspect_ratio:
            payload["aspect_ratio"] = aspect_ratio
        if image_url:
            payload["image_url"] = image_url

        def parse(response: httpx.Response, body: bytes) -> str | Failure:
            obj = _decode_json(body)
            if not isinstance(obj, dict):
                return t.malformed(f"malformed video answer: {body[:200]!r}")
            request_id = _text(obj.get("request_id")) or _text(obj.get("id"))
            if request_id:
                return request_id
            if obj.get("error"):
                return t.body_failure(obj["error"])
            reason = _text(obj.get("reason")) or _text(obj.get("message"))
            if reason:
                return t.body_failure({"message": reason})
            return t.malformed(f"video answer without request_id: {body[:200]!r}")

        return await t.request(
            "POST",
            t.url("video/generate"),
            parse,
            classify=_classify_endpoint,
            paced=True,
            user_key=user_key,
            model=model,
            headers=t.json_headers,
            content=json.dumps(payload, ensure_ascii=False).encode(),
        )

    # --- free calls --------------------------------------------------------------------------

    async def video_status(self, request_id: str) -> VideoStatus:
        """GET /video/status?request_id=… (unpaced: the caller polls at its own pace)."""
        t = self._t

        def parse(response: httpx.Response, body: bytes) -> VideoStatus | Failure:
            obj = _decode_json(body)
            if not isinstance(obj, dict):
                return t.malformed(f"malformed video status: {body[:200]!r}")
            if obj.get("error") and "status" not in obj:
                return t.body_failure(obj["error"])
            data = obj.get("data")
            if "status" not in obj and isinstance(data, dict):
                obj = data
            state = _parse_state(obj.get("status") or obj.get("state"))
            url = _first_url(obj, "url", "video_url", "result_url", "output")
            reason = _text(obj.get("reason"))
            if reason is None:
                error = obj.get("error")
                reason = _text(error.get("message") if isinstance(error, dict) else error)
            return VideoStatus(state, url, t.redact(reason) if reason else None)

        return await t.request(
            "GET", t.url("video/status"), parse, params={"request_id": request_id}
        )

    async def balance(self) -> Balance:
        """GET /balance. Raises BalanceUnavailable when it is disabled in the account."""
        t = self._t

        def parse(response: httpx.Response, body: bytes) -> Balance | Failure:
            obj = _decode_json(body)
            if not isinstance(obj, dict):
                return t.malformed(f"malformed balance: {body[:200]!r}")
            status = obj.get("status")
            data = obj.get("data")
            if (status is None or str(status).lower() == "ok") and isinstance(data, dict):
                return Balance(
                    credits=to_float(data.get("credits")),
                    subscription_status=_text(data.get("subscription_status")),
                    subscription_end=_text(data.get("subscription_end")),
                    user_status=to_int(data.get("user_status")),
                    user_status_text=_text(data.get("user_status_text")),
                )
            reason = _text(obj.get("reason")) or _text(obj.get("message"))
            if reason is None and obj.get("error"):
                error = obj["error"]
                reason = _text(error.get("message") if isinstance(error, dict) else error)
            detail = t.redact(reason or f"balance status {status!r}")
            return Failure(BalanceUnavailable(response.status_code, detail), retryable=False)

        return await t.request("GET", t.url("balance"), parse, classify=_classify_balance)

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """GET a result URL (retried on 5xx/network), at most `max_bytes` (ResponseTooLarge).

        The API key goes only to the upstream's own origin: result links usually point at a
        CDN or a storage bucket, which must never see it (redirects away drop it too).
        """
        if url.startswith("data:"):
            data = _b64(url)
            if data is None:
                raise BadRequest(None, "undecodable data: URL")
            if len(data) > max_bytes:
                raise ResponseTooLarge(None, f"the result is larger than {max_bytes} bytes")
            return data
        target = httpx.URL(self._t.base_url + "/").join(url)
        if target.scheme not in ("http", "https") or not target.host:
            raise BadRequest(None, f"not a downloadable URL: {target.scheme or 'relative'} link")
        same_origin = _origin(target) == self._origin
        return await self._t.request(
            "GET",
            str(target),
            lambda _response, body: body,
            # Only Authorization: httpx drops it when a redirect leaves the host, but it
            # would carry any other auth header (MashaGPT's x-api-key) to the new host.
            headers=self._t.redirect_safe_headers if same_origin else {},
            authenticate=same_origin,
            max_bytes=max_bytes,
            classify=_classify_download,
            follow_redirects=True,
        )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, port
