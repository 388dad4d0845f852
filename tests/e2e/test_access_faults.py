"""The spend guard when the database fails under it: the quota's usage query raises for one
question. The question is refused with the short "something went wrong" message in the user's
language (no traceback, nothing sent upstream, no quota held), polling goes on, and the update
is finished in the journal: it is not answered again after a restart."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from handlers.ui.texts import t
from services.storage.base import QuotaUsage
from tests.e2e.conftest import Bench, text_of
from tests.e2e.test_access import settled

USER = 7101


def journal_finished(bench: Bench, update_id: int) -> bool | None:
    """Whether the update's journal row is finished; None without a row."""
    with sqlite3.connect(bench.db) as conn:
        row = conn.execute(
            "SELECT finished_at FROM update_journal WHERE update_id = ?", (update_id,)
        ).fetchone()
    return None if row is None else row[0] is not None


@pytest.mark.parametrize("lang", ["en", "ru"])
async def test_quota_query_failing_refuses_that_question_and_the_bot_goes_on(
    bench: Bench, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, lang: str
) -> None:
    await bench.restart(user_daily_requests=5)
    assert bench.app is not None
    storage = bench.app.services.storage
    real_usage = storage.quota_usage
    failed: list[int] = []

    async def usage_failing_once(user_id: int, since: float) -> QuotaUsage:
        if not failed:
            failed.append(user_id)
            raise ConnectionError("connection to the database was lost")
        return await real_usage(user_id, since)

    monkeypatch.setattr(storage, "quota_usage", usage_failing_once)
    with caplog.at_level(logging.WARNING):
        update = bench.telegram.send_message(USER, "question 1", language_code=lang)
        sent = await bench.telegram.wait_for(
            ("sendRichMessage", "sendMessage"), lambda c: c.ok and c.chat_id == USER, timeout=10
        )
    assert failed == [USER]
    # Told, briefly and in their language; nothing of the error itself reaches the chat.
    text = text_of(sent[0])
    assert text == t(lang, "err_unexpected")
    assert "Traceback" not in text and "ConnectionError" not in text and "database" not in text
    # Refused, not answered: the quota could not be checked, so nothing was spent.
    assert not bench.upstream.chat_requests()
    # The operators see it once, with its cause.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["handlers.errors"]
    exc_info = errors[0].exc_info
    assert exc_info is not None and isinstance(exc_info[1], ConnectionError)
    # Finished in the journal before the user was told (JournalMiddleware, then the errors
    # handler around it).
    assert journal_finished(bench, update["update_id"]) is True

    # The polling loop goes on: the next question (the database answers again) is answered,
    # and the refused one neither counts against the quota nor holds a reservation.
    answer = await bench.ask(USER, "question 2", language_code=lang)
    assert text_of(answer) == "Echo: question 2"
    await settled(bench, USER, 1)
    assert len(bench.upstream.chat_requests()) == 1

    # Handled (if badly): still finished after the stop, and a restart does not answer it again.
    await bench.stop()
    assert journal_finished(bench, update["update_id"]) is True
    monkeypatch.undo()
    await bench.start()
    later = await bench.ask(USER, "question 3", language_code=lang)
    assert text_of(later) == "Echo: question 3"
    assert [text_of(c) for c in bench.finals(USER)] == [
        t(lang, "err_unexpected"),
        "Echo: question 2",
        "Echo: question 3",
    ]
    assert len(bench.upstream.chat_requests()) == 2
