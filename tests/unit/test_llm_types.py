from __future__ import annotations

import pytest

from services.llm.types import ModelInfo, parse_model_info, parse_usage, to_float, to_int


def test_model_with_numbers_as_strings() -> None:
    info = parse_model_info(
        {
            "id": "test/tiny-context",
            "name": "Tiny",
            "context_length": "1024",
            "pricing": {"prompt": "0.15", "completion": "0.6"},
        }
    )
    assert info == ModelInfo("test/tiny-context", "Tiny", 1024, 0.15, 0.6)


def test_model_with_missing_fields() -> None:
    info = parse_model_info({"id": "openai/gpt-4o-mini"})
    assert info == ModelInfo("openai/gpt-4o-mini", "openai/gpt-4o-mini", None, None, None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (128000, 128000),
        (128000.0, 128000),
        ("128000", 128000),
        (" 128 000 ", 128000),
        ("128,000", 128000),
        ("128k", 128000),
        ("1M", 1_000_000),
        ("", None),
        ("unknown", None),
        (None, None),
        (True, None),
        ([1], None),
        (0, None),
        (-5, None),
    ],
)
def test_context_length_is_parsed_leniently(raw: object, expected: int | None) -> None:
    info = parse_model_info({"id": "m", "context_length": raw})
    assert info is not None
    assert info.context_length == expected


def test_odd_shapes() -> None:
    assert parse_model_info({"name": "no id"}) is None
    assert parse_model_info({"id": ""}) is None
    assert parse_model_info({"id": 5}) is None
    assert parse_model_info("openai/gpt-4o") is None
    info = parse_model_info({"id": " m ", "name": 7, "pricing": "free"})
    assert info == ModelInfo("m", "m", None)
    info = parse_model_info({"id": "m", "pricing": {"prompt": "n/a", "completion": 2}})
    assert info is not None and info.prompt_price is None and info.completion_price == 2.0
    # OpenRouter-style nesting
    info = parse_model_info({"id": "m", "top_provider": {"context_length": "8192"}})
    assert info is not None and info.context_length == 8192


def test_is_chat_follows_the_kind() -> None:
    assert ModelInfo("m", "m", None).is_chat
    assert not ModelInfo("m", "m", None, kind="image").is_chat


def test_number_helpers() -> None:
    assert to_float("0,5") == 0.5
    assert to_float("inf") is None
    assert to_float("nan") is None
    assert to_float(False) is None
    assert to_int("12.7") == 12


def test_parse_usage() -> None:
    usage = parse_usage({"prompt_tokens": "10", "completion_tokens": 5}, 0.25)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 5, 15)
    assert usage.credits == 0.25
    assert parse_usage(None, 1.0).credits == 1.0
    assert parse_usage({"total_tokens": 99}).total_tokens == 99


@pytest.mark.parametrize(
    ("entry", "context"),
    [
        ({"id": "m", "context_length": 8192}, 8192),
        ({"id": "m", "max_input_tokens": 128000}, 128000),  # LiteLLM
        ({"id": "m", "context_window": "32k"}, 32000),
        ({"id": "m", "max_model_len": 4096}, 4096),  # vLLM
        ({"id": "m"}, None),
    ],
)
def test_context_window_under_each_server_s_name(
    entry: dict[str, object], context: int | None
) -> None:
    info = parse_model_info(entry)
    assert info is not None and info.context_length == context


@pytest.mark.parametrize(
    ("entry", "kind"),
    [
        ({"id": "GigaChat-2", "type": "chat"}, "chat"),
        ({"id": "Embeddings", "type": "embedder"}, "embedding"),
        ({"id": "gpt-image-1", "mode": "image_generation"}, "image"),  # LiteLLM
        ({"id": "whisper", "mode": "audio_transcription"}, "audio"),
        ({"id": "x", "architecture": {"output_modalities": ["image"]}}, "image"),  # OpenRouter
        ({"id": "y", "architecture": {"output_modalities": ["text"]}}, "chat"),
        ({"id": "claude", "type": "model"}, "chat"),  # a list's generic word says nothing
        ({"id": "plain"}, "chat"),
    ],
)
def test_model_kind_from_the_list_s_own_fields(entry: dict[str, object], kind: str) -> None:
    info = parse_model_info(entry)
    assert info is not None and info.kind == kind
    assert info.is_chat is (kind == "chat")
