from __future__ import annotations

import json

import pytest

from services.llm.errors import (
    AuthFailed,
    BadRequest,
    CircuitOpen,
    ContextTooLong,
    InsufficientFunds,
    MaxTokensTooLarge,
    ModelUnavailable,
    ModerationRefused,
    RateLimited,
    RequestCostLimit,
    ServiceUnavailable,
    StreamInterrupted,
    UpstreamError,
    classify_error,
    rejects_temperature,
)


def envelope(message: str) -> str:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}})


CASES = [
    # --- context overflow ---
    (
        400,
        envelope(
            "This model's maximum context length is 4097 tokens. However, you requested "
            "5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the "
            "length of the messages or completion."
        ),
        ContextTooLong,
    ),
    (400, envelope("prompt is too long: 210000 tokens > 200000 maximum"), ContextTooLong),
    (
        400,
        envelope(
            "input length and `max_tokens` exceed context limit: 187254 + 20000 > 200000, "
            "decrease input length or `max_tokens` and try again"
        ),
        ContextTooLong,
    ),
    (400, envelope("Запрос превышает размер контекста модели"), ContextTooLong),
    (400, "Request exceeds model context", ContextTooLong),
    (413, "Payload Too Large", ContextTooLong),
    # --- max_tokens ---
    (
        400,
        envelope(
            "max_tokens is too large: 100000. This model supports at most 4096 completion "
            "tokens, whereas you provided 100000."
        ),
        MaxTokensTooLarge,
    ),
    (400, envelope("Invalid max_tokens value for this model"), MaxTokensTooLarge),
    (400, json.dumps({"error": "Слишком большое значение max_tokens"}), MaxTokensTooLarge),
    # --- auth ---
    (400, envelope("User with this API key not found"), AuthFailed),
    (
        400,
        envelope(
            "Seems you use original OpenAI API key. This key will not work on this site; you "
            "need VseGPT API Key, you can get your own here: https://vsegpt.ru/User/API"
        ),
        AuthFailed,
    ),
    (400, json.dumps({"detail": "Пользователь с таким ключом не найден"}), AuthFailed),
    (401, envelope("whatever"), AuthFailed),
    (401, "", AuthFailed),
    (403, envelope("Invalid API key provided"), AuthFailed),
    # --- funds and per-request limit ---
    (
        400,
        envelope(
            "Expected cost of the request for this model is higher than the funds on your "
            "balance. Please top up your balance or choose another model."
        ),
        InsufficientFunds,
    ),
    (
        400,
        envelope("Ожидаемая стоимость запроса превышает средства на вашем аккаунте"),
        InsufficientFunds,
    ),
    (400, envelope("Недостаточно средств на балансе"), InsufficientFunds),
    (402, envelope("Payment Required"), InsufficientFunds),
    (429, envelope("You exceeded your current quota, please check your plan"), InsufficientFunds),
    (
        400,
        envelope(
            "Expected cost of the request (max_tokens 4000) is higher than your user limit for "
            "1 request. You can change it at https://vsegpt.ru/User/SettingsModels"
        ),
        RequestCostLimit,
    ),
    (
        400,
        envelope("Ожидаемая стоимость запроса превышает пользовательский лимит на 1 запрос"),
        RequestCostLimit,
    ),
    (402, envelope("Request cost exceeds the configured limit"), RequestCostLimit),
    # --- model availability ---
    (
        400,
        envelope(
            "This model is not available on your subscription plan. Please, upgrade your "
            "subscription plan to use it. Subscription plans: https://vsegpt.ru/Docs/Tariffs"
        ),
        ModelUnavailable,
    ),
    (400, envelope("Данная модель не доступна на вашем тарифном плане"), ModelUnavailable),
    (400, envelope("The model `foo/bar` does not exist"), ModelUnavailable),
    (400, json.dumps({"message": "Модель не найдена"}), ModelUnavailable),
    (404, json.dumps({"status": 404, "message": "No such model"}), ModelUnavailable),
    # --- moderation ---
    (403, envelope("Request blocked by moderation"), ModerationRefused),
    (403, "", ModerationRefused),
    (400, envelope("Your input was flagged by the moderation system"), ModerationRefused),
    (400, envelope("Запрос отклонён модерацией"), ModerationRefused),
    # --- rate limiting / availability ---
    (429, envelope("Too many requests"), RateLimited),
    (429, "Вы отправляете запросы слишком часто", RateLimited),
    (500, "INTERNAL_SERVER_ERROR", ServiceUnavailable),
    (502, "<html>bad gateway from the load balancer</html>", ServiceUnavailable),
    (504, "EDGE_FUNCTION_INVOCATION_TIMEOUT", ServiceUnavailable),
    (408, "", ServiceUnavailable),
    # --- everything else ---
    (400, envelope("messages: field required"), BadRequest),
    (422, json.dumps({"detail": [{"loc": ["body"], "msg": "field required"}]}), BadRequest),
    (409, "conflict", BadRequest),
    (400, "", BadRequest),
    (400, "not json at all {", BadRequest),
]


@pytest.mark.parametrize(("status", "body", "expected"), CASES)
def test_classify_error(status: int, body: str, expected: type[UpstreamError]) -> None:
    error = classify_error(status, body)
    assert type(error) is expected
    assert error.status == status


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (json.dumps({"error": {"message": "nested"}}), "nested"),
        (json.dumps({"error": "flat"}), "flat"),
        (json.dumps({"detail": "detail text"}), "detail text"),
        (json.dumps({"message": "message text"}), "message text"),
        (json.dumps({"status": "error", "reason": "reason text"}), "reason text"),
        (json.dumps([{"error": {"message": "in a list"}}]), "in a list"),
        ("  plain text  ", "plain text"),
    ],
)
def test_detail_is_the_upstream_message(body: str, detail: str) -> None:
    assert classify_error(400, body).detail == detail


def test_huge_bodies_are_truncated() -> None:
    assert len(classify_error(502, "x" * 100_000).detail) <= 1000


def test_openrouter_metadata_raw_is_matched() -> None:
    body = json.dumps(
        {"error": {"message": "Provider returned error", "metadata": {"raw": "context_length"}}}
    )
    assert isinstance(classify_error(400, body), ContextTooLong)


def test_russian_key_word_does_not_match_inside_other_words() -> None:
    # "включите" contains "ключ" but is not about an API key.
    body = envelope("Включите параметр stream")
    assert type(classify_error(400, body)) is BadRequest


def test_hierarchy_and_formatting() -> None:
    assert issubclass(CircuitOpen, ServiceUnavailable)
    for cls in (ContextTooLong, StreamInterrupted, BadRequest, RateLimited):
        assert issubclass(cls, UpstreamError)
    error = ContextTooLong(400, "too long")
    assert str(error) == "HTTP 400: too long"
    assert repr(error) == "ContextTooLong(status=400, detail='too long')"
    assert str(ServiceUnavailable(None, "ConnectError: refused")) == "ConnectError: refused"
    assert str(ServiceUnavailable()) == "ServiceUnavailable"
    assert CircuitOpen(None, "open", retry_after=3.0).retry_after == 3.0
    assert ServiceUnavailable(502, "x").status == 502
    assert ServiceUnavailable(502, "x").detail == "x"


def test_litellm_s_unknown_model_is_a_model_problem() -> None:
    body = json.dumps({"error": {"message": "Invalid model name passed in model=gpt-9"}})
    assert isinstance(classify_error(400, body), ModelUnavailable)


@pytest.mark.parametrize(
    ("body", "rejects"),
    [
        (
            "litellm.UnsupportedParamsError: o1 does not support parameters: {temperature: 0.7}",
            True,
        ),
        ("Unsupported value: 'temperature' does not support 0.7 with this model.", True),
        ("max_tokens is too large", False),
        ("temperature must be between 0 and 2", False),
    ],
)
def test_a_rejected_temperature_is_recognised(body: str, rejects: bool) -> None:
    error = classify_error(400, json.dumps({"error": {"message": body}}))
    assert rejects_temperature(error) is rejects
