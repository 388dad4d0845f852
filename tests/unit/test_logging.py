from __future__ import annotations

import logging
from pathlib import Path

from bot.logging_setup import RedactSecrets, setup_logging


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


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_sql_with_users_messages_is_never_logged_even_at_debug(tmp_path: Path) -> None:
    from services.storage import open_storage
    from services.storage.base import StoredMessage

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("DEBUG", [])
    collect = _Collect()
    root.addHandler(collect)
    logging.getLogger("probe").debug("debug is on")
    storage = open_storage(f"sqlite:///{tmp_path / 'bot.db'}")
    await storage.connect()
    try:
        conversation = await storage.active_conversation(1, None)
        secret_text = "my very private question 7f3a"
        await storage.add_exchange(
            conversation,
            StoredMessage(role="user", content=secret_text, tokens=5, user_id=1),
            StoredMessage(role="assistant", content="answer 9c1d", tokens=3),
        )
    finally:
        await storage.close()
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.getLogger("aiosqlite").setLevel(logging.NOTSET)
    logged = "\n".join(r.getMessage() for r in collect.records)
    assert "probe" in {r.name for r in collect.records}  # DEBUG records do get through
    assert "aiosqlite" not in {r.name for r in collect.records if r.levelno < logging.WARNING}
    assert secret_text not in logged
    assert "answer 9c1d" not in logged
