"""LOG_FORMAT=json: one JSON object per line with the context a call gives, never a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.logging_setup import setup_logging

TOKEN = "123456:SECRET-BOT-TOKEN"
KEY = "sk-upstream-key-123"


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging("INFO", [TOKEN, KEY], "json")
    out = io.StringIO()
    root.handlers[0].setStream(out)  # type: ignore[attr-defined]
    try:
        yield out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def records(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_one_json_object_per_line_with_context(lines: io.StringIO) -> None:
    log = logging.getLogger("bot.test")
    log.info(
        "answered",
        extra={"update_id": 7, "chat": 1, "user": 2, "model": "m", "latency": 0.25},
    )
    log.warning("second\nline")
    first, second = records(lines)
    assert first["message"] == "answered"
    assert first["level"] == "INFO"
    assert first["logger"] == "bot.test"
    assert "T" in str(first["time"])
    for key, value in {"update_id": 7, "chat": 1, "user": 2, "model": "m", "latency": 0.25}.items():
        assert first[key] == value
    assert second["message"] == "second\nline"


def test_secrets_are_redacted_in_messages_extras_and_tracebacks(lines: io.StringIO) -> None:
    log = logging.getLogger("aiogram.test")
    log.error("POST https://api.telegram.org/bot%s/sendMessage failed", TOKEN)
    log.info("key", extra={"model": KEY})
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        log.exception("request failed")
    text = lines.getvalue()
    assert TOKEN not in text and KEY not in text
    first, second, third = records(lines)
    assert "***" in str(first["message"])
    assert second["model"] == "***"
    assert "ValueError: bad key ***" in str(third["exc_info"])


def test_text_format_stays_the_default() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("INFO", [TOKEN])
        assert not root.handlers[0].formatter.__class__.__name__.startswith("_")
        assert type(root.handlers[0].formatter) is logging.Formatter
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
