"""GigaChat's error answers mapped onto the bot's UpstreamError classes.

GigaChat answers errors as `{"status": <code>, "message": "..."}` and means something fixed by
most codes (see the table in `classify_gigachat`), so the status decides, not keyword guessing:
its 402 is always "the token package is used up", its 429 always "too many requests" (the
generic classifier would read a 429 mentioning a quota as a funds problem).
"""

from __future__ import annotations

from services.llm.errors import (
    AuthFailed,
    BadRequest,
    ContextTooLong,
    InsufficientFunds,
    ModelUnavailable,
    ModerationRefused,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
    classify_error,
)

__all__ = ["classify_gigachat"]

# A 403 is about access (a scope without the model, a blocked account) when it says so; any
# other 403 reads as the content being refused.
_ACCESS_WORDS = (
    "unauthorized",
    "access token",
    "invalid token",
    "token has expired",
    "scope",
    "permission",
    "access denied",
    "credentials",
    "авториз",
    "доступ запрещ",
    "нет доступа",
    "недостаточно прав",
)

_BY_STATUS: dict[int, type[UpstreamError]] = {
    401: AuthFailed,  # "Unauthorized", "Token has expired" (after the one refresh)
    402: InsufficientFunds,  # the prepaid tokens are used up
    404: ModelUnavailable,  # "No such model"
    413: ContextTooLong,  # "Payload too large"
    422: BadRequest,  # "Invalid params: ..." (a parameter out of range, functions unsupported)
    429: RateLimited,  # too many requests, or more concurrent streams than the key allows
}


def classify_gigachat(status: int, body: str) -> UpstreamError:
    """The UpstreamError for a GigaChat error answer (`body` is its text, redacted)."""
    # The generic classifier extracts `message` as the detail and covers whatever GigaChat
    # does not document (400 and friends).
    generic = classify_error(status, body)
    kind = _BY_STATUS.get(status)
    if kind is None and status == 403:
        text = generic.detail.lower()
        kind = AuthFailed if any(word in text for word in _ACCESS_WORDS) else ModerationRefused
    if kind is None and status >= 500:
        kind = ServiceUnavailable
    if kind is None or type(generic) is kind:
        return generic
    return kind(status, generic.detail)
