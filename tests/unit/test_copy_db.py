"""`python -m bot.copy_db`: an SQLite database copied into an empty PostgreSQL database reads
the same through the Storage methods (services/storage/copy.py, bot/copy_db.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import copy_db
from bot.instance_lock import FileInstanceLock
from services.storage import PostgresStorage, SQLiteStorage, Storage, StoredMessage, UsageRecord
from services.storage.copy import TABLES, TargetNotEmpty, copy_sqlite_to_postgres
from tests.fakes.clock import FakeClock
from tests.pg_schema import fresh_schema

NOW = 1_700_000_000.0


@pytest.fixture
async def target() -> AsyncIterator[str]:
    async with fresh_schema() as url:
        yield url


async def fill(store: Storage, clock: FakeClock) -> None:
    """One of everything a bot stores."""
    await store.upsert_user(1, username="ann", first_name="Ann", language_code="en")
    await store.upsert_user(2, username="bob", first_name="Bob", language_code="ru")
    await store.update_user_settings(1, model="gpt-4o", temperature=0.7, reply_mode="voice")
    await store.update_user_settings(-100, model="gigachat:GigaChat-2")  # a group's row
    await store.set_users_blocked([2], True)
    await store.set_daily_requests_limit(1, 5)
    for chat, thread in ((1, None), (-100, 7)):
        conv = await store.active_conversation(chat, thread)
        for i in range(3):
            await store.add_exchange(
                conv,
                StoredMessage("user", f"q{i} {chat}", 3, user_id=1),
                StoredMessage("assistant", f"a{i} {chat}", 5, status="stopped" if i else "ok"),
            )
    await store.new_conversation(1, None)
    await store.record_usage(UsageRecord(1, 1, "gpt-4o", 10, 20, 0.5, "ok"))
    await store.record_usage(UsageRecord(1, -100, "mashagpt:gpt-4o", 1, 2, None, "ok", 40.0))
    job = await store.create_video_job(
        user_id=1, chat_id=1, thread_id=None, model="v", prompt="a cat", lang="en",
        progress_message_id=9,
    )  # fmt: skip
    await store.update_video_job(job.id, state="IN_PROGRESS", request_id="r1")
    broadcast = await store.create_broadcast(
        admin_id=1, from_chat_id=1, message_id=50, lang="en", total=2, progress_message_id=51
    )
    await store.update_broadcast(broadcast.id, cursor=1, delivered=1)
    assert await store.journal_record(10, '{"update_id": 10}')
    assert await store.journal_record(11, None)
    await store.journal_finish(11)
    await store.set_access_allowed(-100, True)
    await store.set_access_banned(2, True)
    await store.count_refusal("flood", "2023-11-14")


async def snapshot(store: Storage) -> dict[str, object]:
    """Everything the Storage methods tell about the filled database."""
    conv_private = await store.active_conversation(1, None)
    old_private = conv_private - 1
    conv_group = await store.active_conversation(-100, 7)
    return {
        "users": [await store.get_user(u) for u in (1, 2, -100)],
        "count": await store.count_users(),
        "recipients": await store.broadcast_recipients(0, 10),
        "conversations": (old_private, conv_private, conv_group),
        "messages": [await store.recent_messages(c, 100) for c in (old_private, conv_group)],
        "usage": await store.usage_by_provider(1),
        "summary": await store.usage_summary(1),
        "jobs": await store.active_video_jobs(),
        "broadcasts": await store.running_broadcasts(),
        "journal": await store.journal_unfinished(),
        "access": await store.access_list(),
        "limits": await store.daily_limit_overrides(),
        "stats": await store.bot_statistics(NOW + 60),
    }


async def test_a_copied_database_reads_the_same(tmp_path: Path, target: str) -> None:
    clock = FakeClock(NOW)
    source = SQLiteStorage(tmp_path / "bot.db", clock=clock)
    await source.connect()
    try:
        await fill(source, clock)
        before = await snapshot(source)
    finally:
        await source.close()

    copied = await copy_sqlite_to_postgres(str(tmp_path / "bot.db"), target)
    counts = {c.table: c.rows for c in copied}
    assert list(counts) == list(TABLES)
    assert counts["users"] == 3 and counts["messages"] == 12 and counts["conversations"] == 3

    store = PostgresStorage(target, clock=clock)
    await store.connect()
    try:
        assert await snapshot(store) == before
        # The sequences moved past the copied ids: new rows get fresh ids.
        newest = await store.new_conversation(1, None)
        assert newest == max(before["conversations"]) + 1  # type: ignore[call-overload]
        job = await store.create_video_job(
            user_id=1, chat_id=1, thread_id=None, model="v", prompt="p", lang="en",
            progress_message_id=None,
        )  # fmt: skip
        assert job.id == 2
        assert not await store.journal_record(10, None)  # the journal's dedupe came along
    finally:
        await store.close()


async def test_a_target_with_rows_is_refused(tmp_path: Path, target: str) -> None:
    source = SQLiteStorage(tmp_path / "bot.db")
    await source.connect()
    await source.upsert_user(1, username=None, first_name=None, language_code=None)
    await source.close()
    store = PostgresStorage(target)
    await store.connect()
    await store.upsert_user(7, username=None, first_name=None, language_code=None)
    await store.close()

    with pytest.raises(TargetNotEmpty, match="users"):
        await copy_sqlite_to_postgres(str(tmp_path / "bot.db"), target)
    store = PostgresStorage(target)
    await store.connect()
    try:
        assert await store.get_user(1) is None  # nothing was copied
    finally:
        await store.close()


async def test_the_command_prints_counts_and_refuses_a_second_copy(
    tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = SQLiteStorage(tmp_path / "bot.db")
    await source.connect()
    await source.upsert_user(1, username=None, first_name=None, language_code=None)
    await source.close()
    args = ["--from", f"sqlite:///{tmp_path / 'bot.db'}", "--to", target]

    # asyncio.run() inside: run the synchronous command off this test's event loop.
    assert await asyncio.to_thread(copy_db.main, args) == 0
    out = capsys.readouterr().out
    assert "users" in out and "copied 1 rows" in out

    assert await asyncio.to_thread(copy_db.main, args) == 2
    assert "already has rows in users" in capsys.readouterr().err


def test_the_command_refuses_while_the_bot_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "bot.db")
    running = FileInstanceLock(db)
    running.acquire()
    try:
        code = copy_db.main(
            ["--from", f"sqlite:///{db}", "--to", "postgresql://u:s3cret@127.0.0.1/test"]
        )
    finally:
        running.release()
    assert code == 2
    err = capsys.readouterr().err
    assert "stop the bot first" in err and "s3cret" not in err


@pytest.mark.parametrize(
    ("source", "dest"),
    [
        ("postgresql://h/db", "postgresql://h/db"),
        ("sqlite:///a.db", "sqlite:///b.db"),
        ("sqlite:///:memory:", "postgresql://u:s3cret@h/db"),
    ],
)
def test_the_command_checks_its_urls(
    source: str, dest: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert copy_db.main(["--from", source, "--to", dest]) == 2
    assert "s3cret" not in capsys.readouterr().err
