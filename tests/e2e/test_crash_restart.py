"""The real bot as a child process, killed with SIGKILL: a question is answered once after the
restart, and a second process on the same database refuses to start."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from handlers.ui.texts import t
from tests.e2e.conftest import text_of
from tests.fakes.bot_subprocess import BotProcess, bot_env
from tests.fakes.telegram_server import Call, FakeTelegram
from tests.fakes.upstream_server import FakeUpstream

USER = 4242


def finals(telegram: FakeTelegram, chat_id: int) -> list[Call]:
    calls = telegram.calls_of("sendRichMessage", "sendMessage", chat_id=chat_id)
    return [c for c in calls if c.ok]


def history(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT role, content FROM messages ORDER BY id").fetchall()


def unfinished(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT COUNT(*) FROM update_journal WHERE finished_at IS NULL")
        return int(rows.fetchone()[0])


async def test_sigkill_mid_answer_then_restart_answers_once_after_a_note(
    telegram: FakeTelegram, upstream: FakeUpstream, tmp_path: Path
) -> None:
    telegram.reset()
    upstream.reset()
    upstream.chunks = 40
    upstream.chunk_delay = 0.1  # a 4 s answer: killed in the middle of it
    db = tmp_path / "bot.db"
    env = bot_env(telegram, upstream, db)
    first = BotProcess(env, tmp_path / "first")
    second = BotProcess(env, tmp_path / "second")
    try:
        await first.start(telegram)
        telegram.send_message(USER, "tell me a story")
        await telegram.wait_for(
            ("sendRichMessageDraft", "sendMessageDraft"), lambda c: c.chat_id == USER, timeout=15
        )
        first.kill()
        assert await first.wait() == -9
        assert finals(telegram, USER) == []  # the user has nothing but a draft

        upstream.chunks = 5
        upstream.chunk_delay = 0.0
        await second.start(telegram)
        sent = await telegram.wait_for(
            ("sendRichMessage", "sendMessage"), lambda c: c.ok and c.chat_id == USER, count=2
        )
        assert text_of(sent[0]) == t("en", "restart_note")
        assert text_of(sent[1]) == "Echo: tell me a story"
        # Another question after the restart is answered normally, once.
        telegram.send_message(USER, "and another")
        await telegram.wait_for(
            ("sendRichMessage", "sendMessage"), lambda c: c.ok and c.chat_id == USER, count=3
        )
        assert await second.terminate() == 0, second.stderr
    finally:
        await first.close()
        await second.close()
    answers = [text_of(c) for c in finals(telegram, USER)]
    assert answers == [t("en", "restart_note"), "Echo: tell me a story", "Echo: and another"]
    # The killed run's request, the replay's and the new question's: no double answer.
    assert len(upstream.chat_requests()) == 3
    assert history(db) == [
        ("user", "tell me a story"),
        ("assistant", "Echo: tell me a story"),
        ("user", "and another"),
        ("assistant", "Echo: and another"),
    ]
    assert unfinished(db) == 0


async def test_second_process_on_the_same_database_is_refused_until_the_first_dies(
    telegram: FakeTelegram, upstream: FakeUpstream, tmp_path: Path
) -> None:
    telegram.reset()
    upstream.reset()
    db = tmp_path / "data" / "bot.db"
    env = bot_env(telegram, upstream, db)
    first = BotProcess(env, tmp_path / "first")
    second = BotProcess(env, tmp_path / "second")
    third = BotProcess(env, tmp_path / "third")
    try:
        await first.start(telegram)
        await second.spawn()
        assert await second.wait(30) == 2
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert lines == [f"Refusing to start: another bot process is already using {db}"]

        # The first one never noticed and keeps answering.
        assert first.returncode is None
        telegram.send_message(USER, "still there?")
        await telegram.wait_for("sendRichMessage", lambda c: c.ok and c.chat_id == USER)

        # Killed, it leaves no lock behind: the OS lock died with it.
        first.kill()
        await first.wait()
        await third.start(telegram)
        telegram.send_message(USER, "hello again")
        await telegram.wait_for("sendRichMessage", lambda c: c.ok and c.chat_id == USER, count=2)
        assert await third.terminate() == 0, third.stderr
    finally:
        for process in (first, second, third):
            await process.close()
