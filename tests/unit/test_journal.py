"""The update journal (services/journal.py) on a real SQLite file and on PostgreSQL, and
migration 4."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from services.journal import DAY, PRUNE_BATCH, UpdateJournal
from services.storage import MIGRATIONS, SQLiteStorage
from services.storage.migrations import migrate
from tests.fakes.clock import FakeClock
from tests.unit.storage_backends import BACKENDS, backend_storage, fetch

PAYLOAD = '{"update_id": 1, "message": {"text": "hi"}}'


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[SQLiteStorage]:
    async with backend_storage(request.param, clock, tmp_path / "bot.db") as storage:
        yield storage


@pytest.fixture
async def journal(store: SQLiteStorage, clock: FakeClock) -> UpdateJournal:
    return UpdateJournal(store, clock=clock)


def later_run(store: SQLiteStorage, clock: FakeClock) -> UpdateJournal:
    """The journal of the next start: a new replica id, and (one process) every earlier
    run's entries are its to replay."""
    return UpdateJournal(store, clock=clock)


async def rows(store: SQLiteStorage) -> list[tuple[object, ...]]:
    return await fetch(
        store,
        "SELECT update_id, payload, replays, finished_at IS NOT NULL FROM update_journal "
        "ORDER BY update_id",
    )


async def test_record_then_duplicate_is_refused(
    journal: UpdateJournal, store: SQLiteStorage
) -> None:
    assert await journal.record(1, PAYLOAD) is True
    assert await journal.record(1, PAYLOAD) is False
    # Even after it is finished: the id stays for dedupe.
    await journal.finish(1)
    assert await journal.record(1, PAYLOAD) is False
    assert await rows(store) == [(1, None, 0, 1)]


async def test_concurrent_records_of_one_id_admit_exactly_one(journal: UpdateJournal) -> None:
    results = await asyncio.gather(*(journal.record(7, PAYLOAD) for _ in range(20)))
    assert results.count(True) == 1


async def test_finish_drops_the_payload_and_leaves_the_unfinished_list(
    journal: UpdateJournal, store: SQLiteStorage
) -> None:
    await journal.record(1, PAYLOAD)
    await journal.record(2, PAYLOAD)
    await journal.record(3, None)
    await journal.finish(2)
    unfinished = await store.journal_unfinished()
    assert [(e.update_id, e.payload, e.replays) for e in unfinished] == [
        (1, PAYLOAD, 0),
        (3, None, 0),
    ]


async def test_replayable_lists_message_updates_and_closes_the_rest(
    journal: UpdateJournal, store: SQLiteStorage, clock: FakeClock
) -> None:
    await journal.record(1, None)  # a callback: nothing to replay
    await journal.record(2, PAYLOAD)
    await journal.record(3, PAYLOAD)
    assert await journal.begin_replay(3)  # replayed once in an earlier run that crashed
    clock.now -= DAY + 1
    await journal.record(4, PAYLOAD)  # older than a day: Telegram has forgotten it too
    clock.now += DAY + 1
    wanted = await later_run(store, clock).replayable()
    assert [e.update_id for e in wanted] == [2]
    assert [e.update_id for e in await store.journal_unfinished()] == [2]


async def test_an_update_is_replayed_once_never_twice(
    journal: UpdateJournal, store: SQLiteStorage, clock: FakeClock
) -> None:
    await journal.record(5, PAYLOAD)
    second = later_run(store, clock)
    assert [e.update_id for e in await second.replayable()] == [5]
    # Marked before it is fed; then the bot dies again while answering it.
    assert await second.begin_replay(5) is True
    assert await second.begin_replay(5) is False
    assert await later_run(store, clock).replayable() == []


async def test_deferred_update_is_owed_a_full_replay_again(
    journal: UpdateJournal, store: SQLiteStorage, clock: FakeClock
) -> None:
    await journal.record(5, PAYLOAD)
    assert await journal.begin_replay(5)
    await journal.defer(5)  # the replay was put off by a clean shutdown, not a crash
    assert [e.update_id for e in await later_run(store, clock).replayable()] == [5]


async def test_a_live_run_never_replays_its_own_unfinished_updates(
    journal: UpdateJournal, store: SQLiteStorage, clock: FakeClock
) -> None:
    await journal.record(5, PAYLOAD)  # being handled by this run right now
    assert await journal.replayable() == []
    assert [e.update_id for e in await later_run(store, clock).replayable()] == [5]


async def test_finished_update_cannot_begin_a_replay(journal: UpdateJournal) -> None:
    await journal.record(5, PAYLOAD)
    await journal.finish(5)
    assert await journal.begin_replay(5) is False


async def test_prune_removes_old_finished_rows_only(
    journal: UpdateJournal, store: SQLiteStorage, clock: FakeClock, tmp_path: Path
) -> None:
    old = PRUNE_BATCH + 5  # more than one batch
    for update_id in range(1, old + 1):
        await journal.record(update_id, None)
        await journal.finish(update_id)
    await journal.record(old + 1, PAYLOAD)  # old but unfinished: kept for the replay
    clock.now += DAY + 10
    await journal.record(old + 2, None)
    await journal.finish(old + 2)  # finished recently: kept
    assert await journal.prune() == old
    assert [r[0] for r in await rows(store)] == [old + 1, old + 2]
    assert await journal.prune() == 0


async def test_pruner_runs_at_start_and_stops_on_close(
    journal: UpdateJournal, store: SQLiteStorage, clock: FakeClock
) -> None:
    await journal.record(1, None)
    await journal.finish(1)
    clock.now += DAY + 1
    journal.start()
    for _ in range(100):
        if not await rows(store):
            break
        await asyncio.sleep(0.01)
    await journal.close()
    assert await rows(store) == []


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_unfinished_query_uses_the_partial_index(store: SQLiteStorage) -> None:
    from services.storage.sqlite import _SQL_JOURNAL_UNFINISHED

    plan = await store._conn.execute_fetchall(f"EXPLAIN QUERY PLAN {_SQL_JOURNAL_UNFINISHED}")
    assert any("update_journal_unfinished_idx" in str(row) for row in plan)


async def test_version_3_database_is_upgraded_to_4_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        assert await migrate(conn, MIGRATIONS[:3]) == 3
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO users (user_id, username, created_at) VALUES (7, 'old', 1.0)")
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "update_journal" not in tables

    store = SQLiteStorage(path)
    await store.connect()
    try:
        user = await store.get_user(7)
        assert user is not None and user.username == "old"
        assert await store.journal_record(11, PAYLOAD) is True
        assert await store.journal_record(11, PAYLOAD) is False
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchall() == [(MIGRATIONS[-1].version,)]
        indexes = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"update_journal_unfinished_idx", "update_journal_finished_idx"} <= indexes
