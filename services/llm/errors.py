"""The upstream error hierarchy, documented in one place.

Every failure of the OpenAI-compatible upstream surfaces as a subclass of `UpstreamError`:

    UpstreamError                 status: HTTP status or None (network), detail: upstream's text
    ├── ContextTooLong            400/413 the prompt + max_tokens overflow the model's context
    ├── MaxTokensTooLarge         400 max_tokens above what the model may generate
    ├── AuthFailed                401, 400 unknown key, an original OpenAI key used by mistake
    ├── InsufficientFunds         400/402 expected cost above the balance (or a 429 "quota")
    ├── RequestCostLimit          400/402 expected cost above the user's per-request limit
    ├── ModelUnavailable          400 not on the subscription plan, 404 no such model
    ├── ModerationRefused         403 the model's moderation refused the prompt
    ├── RateLimited               429 after the retries were used up
    ├── ServiceUnavailable        5xx, 408, timeouts and connection errors after the retries
    │   └── CircuitOpen           the breaker is open: the request was not sent at all
    ├── StreamInterrupted         the stream broke after the first token was delivered
    ├── BalanceUnavailable        GET /balance is disabled in the account or answered an error
    ├── NotOffered                404 on a media endpoint: this provider has no such API
    ├── ResponseTooLarge          an answer or a result download is above the allowed size
    └── BadRequest                any other 4xx

`detail` is meant for admins and logs only; users get a translated message per class.
`classify_error` maps an HTTP status and body to one of these. Upstream wording varies
(VseGPT answers in English, some texts are Russian, other aggregators phrase things their own
way), so matching is by keywords in both languages, most specific first.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "AuthFailed",
    "BadRequest",
    "BalanceUnavailable",
    "CircuitOpen",
    "ContextTooLong",
    "InsufficientFunds",
    "MaxTokensTooLarge",
    "ModelUnavailable",
    "ModerationRefused",
    "NotOffered",
    "RateLimited",
    "RequestCostLimit",
    "ResponseTooLarge",
    "ServiceUnavailable",
    "StreamInterrupted",
    "UpstreamError",
    "classify_error",
    "rejects_temperature",
]

# Upstream bodies can be whole HTML error pages; admins need the gist, not 50 kB.
_MAX_DETAIL = 1000


class UpstreamError(Exception):
    """Base class. `detail` never contains the API key (the client redacts it)."""

    status: int | None
    detail: str
    retry_after: float | None

    def __init__(
        self, status: int | None = None, detail: str = "", *, retry_after: float | None = None
    ) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        # Seconds the upstream (or the breaker) asked us to wait; handlers may show it.
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.status is None:
            return self.detail or type(self).__name__
        return f"HTTP {self.status}: {self.detail}" if self.detail else f"HTTP {self.status}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, detail={self.detail!r})"


class ContextTooLong(UpstreamError):
    """The conversation plus max_tokens does not fit the model's context window."""


class MaxTokensTooLarge(UpstreamError):
    """max_tokens is above the model's own generation limit."""


class AuthFailed(UpstreamError):
    """Unknown, revoked or wrong kind of API key."""


class InsufficientFunds(UpstreamError):
    """The account balance does not cover the request's expected cost."""


class RequestCostLimit(UpstreamError):
    """The expected cost is above the per-request limit set in the account."""


class ModelUnavailable(UpstreamError):
    """No such model, or it is not included in the subscription plan."""


class ModerationRefused(UpstreamError):
    """The model's moderation refused the request."""


class RateLimited(UpstreamError):
    """429 that persisted through the retries."""


class ServiceUnavailable(UpstreamError):
    """The upstream is down, overloaded, timing out or unreachable."""


class CircuitOpen(ServiceUnavailable):
    """The circuit breaker is open; the request was not sent."""


class StreamInterrupted(UpstreamError):
    """The stream broke after text had already been delivered (never retried)."""


class BalanceUnavailable(UpstreamError):
    """GET /balance is switched off in the account settings, or it answered `status != ok`."""


class NotOffered(UpstreamError):
    """The provider has no such endpoint (an OpenAI-compatible server without VseGPT's video
    API, or without speech): a 404 that names no model. Never retried."""


class ResponseTooLarge(UpstreamError):
    """An answer (or a downloaded result) is larger than the caller allowed; never retried."""


class BadRequest(UpstreamError):
    """Any other client error."""


# --- keyword tables (all lower case) -----------------------------------------------------------

_AUTH = (
    "api key",
    "api-key",
    "api_key",
    "apikey",
    "unauthorized",
    "unauthenticated",
    "authentication",
    "invalid token",
    "авториз",
)
# "ключ" as a word of its own: "ключ", "ключом", "ключа" — but not "включить", "ключевые".
_AUTH_RU = re.compile(r"(?<![а-яё])ключ(?:а|у|ом|е|и|ей|ами)?(?![а-яё])")
_COST_LIMIT = (
    "settingsmodels",  # VseGPT's message links to the page where the limit is set
    "per-request limit",
    "per request limit",
    "limit per request",
    "limit for one request",
    "limit for 1 request",
    "user limit",
    "cost limit",
    "spending limit",
    "лимит на 1 запрос",
    "лимит на один запрос",
    "лимит на запрос",
    "пользовательский лимит",
    "лимит стоимост",
)
_LIMIT_WORDS = ("limit", "лимит")
_COST_WORDS = ("cost", "price", "стоимост", "цен")
_FUNDS = (
    "insufficient",
    "not enough",
    "balance",
    "funds",
    "top up",
    "payment required",
    "quota",
    "billing",
    "недостаточно",
    "баланс",
    "средств",
    "пополн",
    "оплат",
)
_CONTEXT_STRONG = (
    "context length",
    "context_length",
    "context window",
    "context limit",
    "context size",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "reduce the length",
    "контекст",
)
_MAX_TOKENS = (
    "max_tokens",
    "max tokens",
    "max_completion_tokens",
    "max_new_tokens",
    "maximum tokens",
    "completion tokens",
    "max_output_tokens",
)
_MODEL_PHRASES = (
    "subscription plan",
    "upgrade your subscription",
    "not available on your",
    "model_not_found",
    "no such model",
    "unknown model",
    "invalid model",  # LiteLLM: "Invalid model name passed in model=..."
    "тарифн",
    "нет такой модели",
    "неизвестная модель",
)
_MODEL_WORDS = ("model", "модел")
_MODEL_PROBLEMS = (
    "not found",
    "does not exist",
    "doesn't exist",
    "not exist",
    "not available",
    "unavailable",
    "not supported",
    "не найден",
    "не существует",
    "недоступн",
    "не доступн",
    "не поддерж",
)
_MODERATION = (
    "moderation",
    "flagged",
    "content policy",
    "content_filter",
    "safety",
    "модерац",
)
_QUOTA = ("quota", "insufficient", "balance")
_RATE = ("too many requests", "rate limit", "rate_limit", "too frequent", "слишком част")


def _has(text: str, words: tuple[str, ...]) -> bool:
    return any(w in text for w in words)


def _is_auth(text: str) -> bool:
    return _has(text, _AUTH) or _AUTH_RU.search(text) is not None


def _is_cost_limit(text: str) -> bool:
    return _has(text, _COST_LIMIT) or (_has(text, _LIMIT_WORDS) and _has(text, _COST_WORDS))


def _is_model_problem(text: str) -> bool:
    if _has(text, _MODEL_PHRASES):
        return True
    return _has(text, _MODEL_WORDS) and _has(text, _MODEL_PROBLEMS)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _from_json(data: Any) -> tuple[str, str]:
    """(message, extra matching text) from the usual error envelopes."""
    if isinstance(data, list):
        return _from_json(data[0]) if data else ("", "")
    if not isinstance(data, dict):
        return _as_text(data), ""
    err = data.get("error")
    if isinstance(err, dict):
        message = _as_text(err.get("message") or err.get("msg") or err.get("detail"))
        extra = [_as_text(err.get("code")), _as_text(err.get("type"))]
        metadata = err.get("metadata")
        if isinstance(metadata, dict):
            # OpenRouter-style aggregators put the provider's own text under metadata.raw.
            extra.append(_as_text(metadata.get("raw")))
        if message:
            return message, " ".join(extra)
    elif isinstance(err, str) and err:
        return err, ""
    for key in ("detail", "message", "reason", "error_description", "msg"):
        value = data.get(key)
        if value:
            if isinstance(value, list) and value and isinstance(value[0], dict):
                # FastAPI validation errors: [{"loc": ..., "msg": "..."}]
                value = "; ".join(_as_text(v.get("msg") or v) for v in value)
            return _as_text(value), ""
    return "", ""


def _extract(body_text: str) -> tuple[str, str]:
    text = body_text.strip()
    if text[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except ValueError:
            pass
        else:
            message, extra = _from_json(data)
            if message:
                return message[:_MAX_DETAIL], f"{message} {extra}".lower()
    return text[:_MAX_DETAIL], text.lower()


def classify_error(status: int, body_text: str) -> UpstreamError:
    """Map an HTTP error status and body to the most specific `UpstreamError`.

    The body may be `{"error": {"message": ...}}`, `{"error": "..."}`, `{"detail": ...}`,
    `{"message": ...}`, `{"reason": ...}` or plain text.
    """
    detail, text = _extract(body_text or "")
    kind: type[UpstreamError]
    if status == 401:
        kind = AuthFailed
    elif status == 402:
        kind = RequestCostLimit if _is_cost_limit(text) else InsufficientFunds
    elif status == 403:
        kind = AuthFailed if _is_auth(text) else ModerationRefused
    elif status == 404:
        kind = ModelUnavailable
    elif status == 408:
        kind = ServiceUnavailable
    elif status == 413:
        kind = ContextTooLong
    elif status == 429:
        # OpenAI answers an exhausted quota with 429; retrying will not refill it.
        kind = InsufficientFunds if _has(text, _QUOTA) else RateLimited
    elif status >= 500:
        # Bodies of 5xx are often proxy pages ("load balancer", ...): no keyword guessing.
        kind = ServiceUnavailable
    else:
        kind = _classify_text(text)
    return kind(status, detail)


def _classify_text(text: str) -> type[UpstreamError]:
    # Order matters: cost/funds texts may mention the model and max_tokens (the expected cost
    # is computed from them), and a context overflow message may mention max_tokens.
    if _is_auth(text):
        return AuthFailed
    if _is_cost_limit(text):
        return RequestCostLimit
    if _has(text, _FUNDS):
        return InsufficientFunds
    if _has(text, _CONTEXT_STRONG):
        return ContextTooLong
    if _has(text, _MAX_TOKENS):
        return MaxTokensTooLarge
    if _is_model_problem(text):
        return ModelUnavailable
    if "context" in text:
        return ContextTooLong
    if _has(text, _MODERATION):
        return ModerationRefused
    if _has(text, _RATE):
        return RateLimited
    return BadRequest


_TEMPERATURE_REFUSALS = (
    "unsupported",
    "not support",
    "does not support",
    "only the default",
    "not allowed",
    "не поддерж",
)


def rejects_temperature(error: UpstreamError) -> bool:
    """A 400 saying the model does not take a temperature (reasoning models; LiteLLM's
    UnsupportedParamsError): the request is worth one more try without it."""
    if not isinstance(error, BadRequest) or error.status != 400:
        return False
    detail = error.detail.lower()
    return "temperature" in detail and any(p in detail for p in _TEMPERATURE_REFUSALS)
