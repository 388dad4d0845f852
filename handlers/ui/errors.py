"""Upstream failures as short messages in the user's language.

Admins also see the upstream's own words (escaped, shortened): they are the ones
who can fix a key, a balance or a plan.
"""

from __future__ import annotations

import html

from handlers.ui.texts import t
from services.llm import (
    AuthFailed,
    BadRequest,
    ContextTooLong,
    InsufficientFunds,
    MaxTokensTooLarge,
    ModelUnavailable,
    ModerationRefused,
    NotOffered,
    RateLimited,
    RequestCostLimit,
    ServiceUnavailable,
    StreamInterrupted,
    UpstreamError,
)

ADMIN_DETAIL_LIMIT = 500

# Order matters: the first matching class wins (subclasses before their bases).
_KEYS: tuple[tuple[type[UpstreamError], str], ...] = (
    (ContextTooLong, "err_context"),
    (MaxTokensTooLarge, "err_max_tokens"),
    (AuthFailed, "err_auth"),
    (InsufficientFunds, "err_funds"),
    (RequestCostLimit, "err_cost_limit"),
    (ModelUnavailable, "err_model"),
    (ModerationRefused, "err_moderation"),
    (NotOffered, "err_not_offered"),
    (RateLimited, "err_rate"),
    (ServiceUnavailable, "err_unavailable"),
    (StreamInterrupted, "err_unavailable"),
    (BadRequest, "err_bad_request"),
)


def error_key(error: UpstreamError | None) -> str:
    if error is not None:
        for cls, key in _KEYS:
            if isinstance(error, cls):
                return key
    return "err_unexpected"


def error_text(error: UpstreamError | None, lang: str, *, model: str, is_admin: bool) -> str:
    """HTML text for a failed reply."""
    text = t(lang, error_key(error), model=html.escape(model))
    if is_admin and error is not None and error.detail:
        detail = error.detail.strip()
        if len(detail) > ADMIN_DETAIL_LIMIT:
            detail = detail[:ADMIN_DETAIL_LIMIT] + "…"
        status = f"{error.status} " if error.status else ""
        text += "\n\n<i>" + t(lang, "admin_detail", detail=html.escape(status + detail)) + "</i>"
    return text
