"""classify_gigachat: GigaChat's `{"status", "message"}` error bodies → UpstreamError classes."""

from __future__ import annotations

import json

import pytest

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
)
from services.llm.gigachat.errors import classify_gigachat


def body(status: int, message: str) -> str:
    return json.dumps({"status": status, "message": message})


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (401, "Unauthorized", AuthFailed),
        (401, "Token has expired", AuthFailed),
        (402, "Payment Required", InsufficientFunds),
        (402, "Tokens limit exceeded", InsufficientFunds),
        (403, "Permission denied for scope GIGACHAT_API_PERS", AuthFailed),
        (403, "Forbidden", ModerationRefused),
        (404, "No such model", ModelUnavailable),
        (413, "Payload too large", ContextTooLong),
        (422, "Invalid params: repetition_penalty must be in range (0, +inf)", BadRequest),
        # The generic reading would call this a max_tokens problem; GigaChat's 422 is a bad
        # parameter, whatever the parameter.
        (422, "Invalid params: max_tokens must be positive", BadRequest),
        (429, "Too many requests", RateLimited),
        # OpenAI's 429 with "quota" means funds; GigaChat's 429 is always a rate limit.
        (429, "Request quota exceeded", RateLimited),
        (500, "Internal Server Error", ServiceUnavailable),
        (503, "Service Unavailable", ServiceUnavailable),
        (400, "Bad request", BadRequest),
    ],
)
def test_statuses_map_to_classes(status: int, message: str, kind: type[UpstreamError]) -> None:
    error = classify_gigachat(status, body(status, message))

    assert type(error) is kind
    assert error.status == status
    assert error.detail == message


def test_a_body_that_is_not_json_is_kept_as_the_detail() -> None:
    error = classify_gigachat(502, "<html>Bad Gateway</html>")

    assert type(error) is ServiceUnavailable
    assert "Bad Gateway" in error.detail


def test_other_statuses_fall_back_to_the_generic_rules() -> None:
    error = classify_gigachat(400, body(400, "This model's maximum context length is exceeded"))

    assert type(error) is ContextTooLong
