from __future__ import annotations

import logging

from bot.logging_setup import RedactSecrets


def test_secrets_are_redacted_from_messages_and_tracebacks() -> None:
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "url %s failed", ("https://t/bot123:SECRET/getMe",), None
    )
    try:
        raise RuntimeError("token 123:SECRET leaked")
    except RuntimeError as error:
        record.exc_info = (type(error), error, error.__traceback__)
    RedactSecrets(["123:SECRET"]).filter(record)
    formatted = logging.Formatter().format(record)
    assert "123:SECRET" not in formatted
    assert "***" in formatted
