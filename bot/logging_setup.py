"""Logging with secrets redacted from every record, whatever library wrote it; as text lines
or as one JSON object per line (`LOG_FORMAT=json`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from contextvars import ContextVar

# (update id, chat id, user id) of the update being handled in this context, if any: set by
# bot/log_context.py's middleware, copied by asyncio into the tasks the handling starts.
UPDATE_CONTEXT: ContextVar[tuple[int, int | None, int | None] | None] = ContextVar(
    "log_update", default=None
)


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is redacted whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._clean(message)
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            formatted = "".join(traceback.format_exception(*record.exc_info))
            cleaned_exc = self._clean(formatted)
            if cleaned_exc != formatted:
                record.exc_info = None
                record.exc_text = cleaned_exc
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class UpdateContextFilter(logging.Filter):
    """Adds `update_id`, `chat` and `user` of the update being handled to each record (unless
    the call gave its own with `extra=`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = UPDATE_CONTEXT.get()
        if current is not None:
            update_id, chat, user = current
            if not hasattr(record, "update_id"):
                record.update_id = update_id
            if chat is not None and not hasattr(record, "chat"):
                record.chat = chat
            if user is not None and not hasattr(record, "user"):
                record.user = user
        return True


# What a log call may add with `extra=` that JSON lines carry as their own fields.
CONTEXT_FIELDS = ("update_id", "chat", "user", "model", "latency")


def json_formatter(secrets: Iterable[str] = ()) -> logging.Formatter:
    """One JSON object per line: time, level, logger, message, whatever the call gave in
    `extra=` (update_id, chat, user, model, latency), and the traceback if any.

    `RedactSecrets` cleans the message and the traceback before this runs; the finished line is
    cleaned once more, so a secret passed in `extra=` is redacted too (secrets are made of
    characters JSON never escapes, so they read the same inside the line)."""
    from pythonjsonlogger.json import JsonFormatter  # only when LOG_FORMAT=json

    redact = RedactSecrets(secrets)

    class _Formatter(JsonFormatter):
        def format(self, record: logging.LogRecord) -> str:
            return redact._clean(super().format(record))

    return _Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        json_ensure_ascii=False,
    )


def setup_logging(level: str, secrets: Iterable[str], log_format: str = "text") -> None:
    secrets = list(secrets)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(json_formatter(secrets))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    # The update a line was written for (its id, chat and user), as JSON fields.
    handler.addFilter(UpdateContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per upstream request is noise on the hot path (and would log URLs).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
    # aiosqlite logs every statement with its parameters at DEBUG: users' messages would
    # reach the log. Its warnings and errors still come through.
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
