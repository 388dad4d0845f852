"""Storage for the admins: blocked users, broadcast recipients, broadcasts, statistics, on
SQLite and PostgreSQL.

SQLite tests use a database file, so the statistics run on their own read-only connection as
in production; one test covers the ``:memory:`` fallback to the main connection.
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import fields
from pathlib import Path

import aiosqlite
import pytest

from services.storage import (
    BROADCAST_STATES,
    BROADCAST_UPDATE_FIELDS,
    MIGRATIONS,
    SCHEMA_VERSION,
    BotStatistics,
    Broadcast,
    ModelUse,
    SQLiteStorage,
    Storage,
    UsageRecord,
)
from services.storage import rows as rows_module
from services.storage import sqlite as sqlite_module
from services.storage.migrations import migrate
from tests.fakes.clock import FakeClock
from tests.unit.storage_backends import BACKENDS, backend_storage, fetch, sqlite_only

NOW = 1_700_000_000.0
DAY = 86400.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Storage]:
    async with backend_storage(request.param, clock, tmp_path / "bot.db") as store:
        yield store


async def add_users(store: SQLiteStorage, *user_ids: int) -> None:
    for user_id in user_ids:
        await store.upsert_user(user_id, username=None, first_name=None, language_code=None)


async def add_usage(
    store: SQLiteStorage,
    clock: FakeClock,
    at: float,
    user_id: int,
    model: str = "m",
    prompt: int = 10,
    completion: int = 5,
    credits: float | None = 0.5,
) -> None:
    saved, clock.now = clock.now, at
    try:
        await store.record_usage(
            UsageRecord(user_id, user_id, model, prompt, completion, credits, "ok")
        )
    finally:
        clock.now = saved


async def blocked_flags(store: SQLiteStorage, *user_ids: int) -> list[bool]:
    users = [await store.get_user(user_id) for user_id in user_ids]
    return [user.is_blocked for user in users if user is not None]


async def new_broadcast(store: SQLiteStorage, **kw: object) -> Broadcast:
    args: dict[str, object] = {
        "admin_id": 1,
        "from_chat_id": 10,
        "message_id": 500,
        "lang": "ru",
        "total": 3,
        "progress_message_id": 501,
    }
    args.update(kw)
    return await store.create_broadcast(**args)  # type: ignore[arg-type]


class CountingConnection:
    """Counts the statements sent through the storage's main connection."""

    def __init__(self, store: SQLiteStorage, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements: list[str] = []
        conn = store._conn
        original = conn.execute_fetchall

        async def counting(sql: str, *args: object) -> object:
            self.statements.append(sql)
            return await original(sql, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(conn, "execute_fetchall", counting)


EMPTY_STATISTICS = BotStatistics(
    users=0,
    blocked_users=0,
    new_users_day=0,
    new_users_week=0,
    active_day=0,
    active_week=0,
    active_month=0,
    requests_day=0,
    requests_week=0,
    requests_month=0,
    tokens_month=0,
    credits_month=0.0,
    top_models=(),
)


# -------------------------------------------------------------------------------- schema


async def test_implements_protocol(storage: SQLiteStorage) -> None:
    assert isinstance(storage, Storage)


@sqlite_only
async def test_broadcasts_table_matches_the_dataclass(storage: SQLiteStorage) -> None:
    columns = [row[1] for row in await fetch(storage, "PRAGMA table_info(broadcasts)")]
    # Then the replicas' columns (migration 8), kept out of the dataclass: services/replicas.py.
    assert columns == [f.name for f in fields(Broadcast)] + ["owner", "attempted"]
    indexes = {row[0] for row in await fetch(storage, "SELECT name FROM sqlite_master")}
    assert {
        "broadcasts_running_idx",
        "users_created_idx",
        "usage_records_time_user_idx",
    } <= indexes


async def test_version_2_database_is_upgraded_to_3_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    # A database as the media release left it: migrations 1 and 2, with real data.
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        assert await migrate(conn, MIGRATIONS[:2]) == 2
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO users (user_id, username, created_at, is_blocked, reply_mode) "
            "VALUES (7, 'old', 1000.0, 0, 'voice'), (8, 'gone', 2000.0, 1, NULL)"
        )
        conn.execute("INSERT INTO conversations (id, chat_id, created_at) VALUES (3, 70, 1.0)")
        conn.execute(
            "INSERT INTO messages (conversation_id, user_id, role, content, tokens, created_at) "
            "VALUES (3, 7, 'user', 'q', 1, 1.0), (3, NULL, 'assistant', 'a', 1, 2.0)"
        )
        conn.execute(
            "INSERT INTO usage_records (user_id, chat_id, model, prompt_tokens, "
            "completion_tokens, credits, status, created_at) "
            f"VALUES (7, 70, 'm1', 100, 50, 0.25, 'ok', {NOW - 3600})"
        )
        conn.execute(
            "INSERT INTO video_jobs (user_id, chat_id, model, prompt, lang, state, "
            "created_at, updated_at) VALUES (7, 70, 'v', 'p', 'en', 'IN_QUEUE', 1.0, 1.0)"
        )
    store = SQLiteStorage(path)
    await store.connect()
    try:
        user = await store.get_user(7)
        assert user is not None and (user.username, user.reply_mode) == ("old", "voice")
        assert [m.content for m in await store.recent_messages(3, 10)] == ["q", "a"]
        assert (await store.usage_summary(7)).prompt_tokens == 100
        assert [job.state for job in await store.active_video_jobs()] == ["IN_QUEUE"]
        # The new parts work on the old data at once.
        assert await store.broadcast_recipients(0, 10) == [7]
        assert await store.running_broadcasts() == []
        stats = await store.bot_statistics(NOW)
        assert (stats.users, stats.blocked_users, stats.active_day, stats.tokens_month) == (
            2,
            1,
            1,
            150,
        )
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchall() == [(SCHEMA_VERSION,)]
        assert SCHEMA_VERSION >= 3
        assert conn.execute("SELECT COUNT(*) FROM broadcasts").fetchall() == [(0,)]


# ------------------------------------------------------------------------- blocked users


async def test_set_users_blocked_marks_and_unmarks(storage: SQLiteStorage) -> None:
    await add_users(storage, 1, 2, 3, 4)
    await storage.set_users_blocked([2, 4, 4, 999], True)  # duplicates and unknown ids are fine
    assert await blocked_flags(storage, 1, 2, 3, 4) == [False, True, False, True]
    assert await storage.get_user(999) is None  # no user is created
    assert await storage.count_users() == 4
    await storage.set_users_blocked((4, 1), False)
    assert await blocked_flags(storage, 1, 2, 3, 4) == [False, True, False, False]


@sqlite_only
async def test_set_users_blocked_with_no_ids_sends_nothing(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_users(storage, 1)
    counter = CountingConnection(storage, monkeypatch)
    await storage.set_users_blocked([], True)
    assert counter.statements == []


@sqlite_only
async def test_set_users_blocked_is_one_statement_for_any_number(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More ids than SQLite's default limit of 32766 bound variables.
    ids = list(range(1, 40_001))
    await storage._conn.execute_fetchall(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO users (user_id, created_at) SELECT i, 1.0 FROM n",
        (len(ids),),
    )
    counter = CountingConnection(storage, monkeypatch)
    await storage.set_users_blocked(ids, True)
    assert len(counter.statements) == 1
    assert await storage.count_broadcast_recipients() == 0


@sqlite_only
async def test_set_users_blocked_skips_rows_already_in_that_state(storage: SQLiteStorage) -> None:
    await add_users(storage, 1, 2)
    await storage.set_users_blocked([1], True)
    before = storage._conn.total_changes
    await storage.set_users_blocked([1, 2], True)
    assert storage._conn.total_changes == before + 1  # only user 2 was rewritten


@pytest.mark.parametrize("bad", ["1", True, 1.0, None])
async def test_set_users_blocked_rejects_non_int_ids(storage: SQLiteStorage, bad: object) -> None:
    await add_users(storage, 1)
    with pytest.raises(TypeError):
        await storage.set_users_blocked([1, bad], True)  # type: ignore[list-item]
    assert await blocked_flags(storage, 1) == [False]


async def test_writing_again_unblocks(storage: SQLiteStorage) -> None:
    await add_users(storage, 1)
    await storage.set_users_blocked([1], True)
    user = await storage.upsert_user(1, username=None, first_name=None, language_code=None)
    assert user.is_blocked is False
    assert await storage.broadcast_recipients(0, 10) == [1]


# --------------------------------------------------------------------------- recipients


async def test_recipients_are_paged_in_id_order_skipping_blocked(storage: SQLiteStorage) -> None:
    ids = [5, 10, 15, 20, 25, 30, 35]
    await add_users(storage, *reversed(ids))  # insertion order does not matter
    await storage.set_users_blocked([15, 20, 35], True)
    assert await storage.count_broadcast_recipients() == 4

    pages = []
    cursor = 0
    while page := await storage.broadcast_recipients(cursor, 2):
        pages.append(page)
        cursor = page[-1]
    assert pages == [[5, 10], [25, 30]]

    assert await storage.broadcast_recipients(12, 10) == [25, 30]  # after an unknown id
    assert await storage.broadcast_recipients(10, 1) == [25]  # the blocked ones are skipped
    assert await storage.broadcast_recipients(30, 10) == []
    assert await storage.broadcast_recipients(0, 0) == []
    assert await storage.broadcast_recipients(0, -1) == []  # not SQLite's "no limit"


async def test_recipient_cursor_is_stable_while_users_change(storage: SQLiteStorage) -> None:
    await add_users(storage, 10, 20, 30, 40)
    first = await storage.broadcast_recipients(0, 2)
    assert first == [10, 20]
    # Mid-broadcast: a new user below the cursor, one above it; one ahead blocks the bot.
    await add_users(storage, 15, 35)
    await storage.set_users_blocked([30], True)
    assert await storage.broadcast_recipients(first[-1], 10) == [35, 40]


async def test_empty_database_has_no_recipients(storage: SQLiteStorage) -> None:
    assert await storage.count_broadcast_recipients() == 0
    assert await storage.broadcast_recipients(0, 100) == []


# --------------------------------------------------------------------------- broadcasts


async def test_create_broadcast(storage: SQLiteStorage, clock: FakeClock) -> None:
    broadcast = await new_broadcast(storage)
    assert broadcast == Broadcast(
        id=broadcast.id,
        admin_id=1,
        from_chat_id=10,
        message_id=500,
        lang="ru",
        state="running",
        total=3,
        cursor=0,
        delivered=0,
        blocked=0,
        failed=0,
        progress_message_id=501,
        created_at=clock.now,
        updated_at=clock.now,
        finished_at=None,
    )
    assert isinstance(broadcast.created_at, float) and isinstance(broadcast.updated_at, float)
    assert await storage.get_broadcast(broadcast.id) == broadcast
    other = await new_broadcast(storage, progress_message_id=None)
    assert other.id > broadcast.id and other.progress_message_id is None
    assert await storage.get_broadcast(other.id + 1) is None


class Reason(enum.StrEnum):
    STOPPED = "stopped"


async def test_update_broadcast_changes_fields_and_updated_at(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    broadcast = await new_broadcast(storage)
    clock.now += 2
    page = await storage.update_broadcast(broadcast.id, cursor=30, delivered=2, blocked=1)
    assert (page.cursor, page.delivered, page.blocked, page.failed) == (30, 2, 1, 0)
    assert page.state == "running" and page.finished_at is None
    assert page.created_at == broadcast.created_at and page.updated_at == clock.now
    clock.now += 2
    done = await storage.update_broadcast(
        broadcast.id,
        state=Reason.STOPPED,
        failed=4,
        finished_at=int(clock.now),
        progress_message_id=None,
    )
    assert (done.state, done.failed, done.progress_message_id) == ("stopped", 4, None)
    assert type(done.state) is str  # the enum member is stored as its value
    assert done.finished_at == clock.now and isinstance(done.finished_at, float)
    assert (done.cursor, done.delivered, done.total, done.lang) == (30, 2, 3, "ru")  # kept
    assert await storage.get_broadcast(broadcast.id) == done
    assert await storage.update_broadcast(broadcast.id) == done  # no fields: just read
    reopened = await storage.update_broadcast(broadcast.id, finished_at=None, state="running")
    assert reopened.finished_at is None


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("total", 5, ValueError),  # not updatable
        ("admin_id", 2, ValueError),
        ("message_id", 2, ValueError),
        ("lang", "en", ValueError),
        ("updated_at", 1.0, ValueError),
        ("state", "paused", ValueError),
        ("state", None, ValueError),
        ("cursor", "5", TypeError),
        ("cursor", None, TypeError),
        ("cursor", 5.0, TypeError),
        ("delivered", True, TypeError),
        ("blocked", None, TypeError),
        ("failed", "1", TypeError),
        ("progress_message_id", "7", TypeError),
        ("progress_message_id", False, TypeError),
        ("finished_at", "now", TypeError),
        ("finished_at", True, TypeError),
    ],
)
async def test_update_broadcast_validates(
    storage: SQLiteStorage, field: str, value: object, error: type[Exception]
) -> None:
    broadcast = await new_broadcast(storage)
    with pytest.raises(error, match=field if error is ValueError else None):
        # A valid field alongside: nothing may be half-applied.
        await storage.update_broadcast(broadcast.id, delivered=9, **{field: value})
    assert await storage.get_broadcast(broadcast.id) == broadcast


async def test_update_of_a_missing_broadcast(storage: SQLiteStorage) -> None:
    with pytest.raises(LookupError):
        await storage.update_broadcast(42, state="done")
    with pytest.raises(LookupError):
        await storage.update_broadcast(42)


async def test_every_broadcast_state_is_storable(storage: SQLiteStorage) -> None:
    broadcast = await new_broadcast(storage)
    for state in sorted(BROADCAST_STATES):
        assert (await storage.update_broadcast(broadcast.id, state=state)).state == state


def test_every_update_field_is_accepted() -> None:
    for name in BROADCAST_UPDATE_FIELDS:
        value = "done" if name == "state" else 1
        assert rows_module.check_broadcast_field(name, value) == value


async def test_running_broadcasts_oldest_first(storage: SQLiteStorage) -> None:
    made = [await new_broadcast(storage, admin_id=i) for i in range(1, 6)]
    await storage.update_broadcast(made[1].id, state="done", finished_at=NOW)
    await storage.update_broadcast(made[2].id, state="stopped", finished_at=NOW)
    await storage.update_broadcast(made[4].id, state="failed", finished_at=NOW)
    running = await storage.running_broadcasts()
    assert [b.id for b in running] == [made[0].id, made[3].id]
    assert running[0] == made[0]


async def test_no_broadcasts(storage: SQLiteStorage) -> None:
    assert await storage.running_broadcasts() == []
    assert await storage.get_broadcast(1) is None


def test_running_state_sql_matches_the_index() -> None:
    (migration,) = [m for m in MIGRATIONS if m.version == 3]
    (index,) = [s for s in migration.sql("sqlite") if "broadcasts_running_idx" in s]
    assert index.endswith("WHERE " + rows_module.RUNNING_BROADCAST_SQL)


@pytest.mark.parametrize(
    ("sql", "params", "steps"),
    [
        (
            sqlite_module._SQL_RUNNING_BROADCASTS,
            (),
            ["SCAN broadcasts USING INDEX broadcasts_running_idx"],
        ),
        (
            sqlite_module._SQL_GET_BROADCAST,
            (1,),
            ["SEARCH broadcasts USING INTEGER PRIMARY KEY (rowid=?)"],
        ),
        (
            sqlite_module._SQL_BROADCAST_RECIPIENTS,
            (0, 10),
            ["SEARCH users USING INTEGER PRIMARY KEY (rowid>?)"],
        ),
        (
            sqlite_module._SQL_SET_USERS_BLOCKED,
            (1, "[1]"),
            [
                "SEARCH users USING INTEGER PRIMARY KEY (rowid=?)",
                "LIST SUBQUERY 1",
                "SCAN json_each VIRTUAL TABLE INDEX 1:",
            ],
        ),
    ],
)
@sqlite_only
async def test_admin_queries_use_keys_and_indexes(
    storage: SQLiteStorage, sql: str, params: tuple, steps: list[str]
) -> None:
    rows = await fetch(storage, "EXPLAIN QUERY PLAN " + sql, params)
    assert [str(row[-1]) for row in rows] == steps


@sqlite_only
async def test_statistics_scan_usage_only_through_the_time_index(storage: SQLiteStorage) -> None:
    params = {"day": 1.0, "week": 1.0, "month": 1.0}
    plan = [
        str(row[-1])
        for row in await storage._conn.execute_fetchall(
            "EXPLAIN QUERY PLAN " + sqlite_module._SQL_STATISTICS, params
        )
    ]
    plan += [
        str(row[-1])
        for row in await storage._conn.execute_fetchall(
            "EXPLAIN QUERY PLAN " + sqlite_module._SQL_TOP_MODELS, (1.0,)
        )
    ]
    usage = [step for step in plan if "usage_records" in step]
    assert len(usage) == 9  # 7 for people, 2 for active groups
    assert all(
        step.startswith("SEARCH usage_records USING")
        and "usage_records_time_user_idx (created_at>?)" in step
        for step in usage
    ), plan
    new_users = [step for step in plan if "users_created_idx (created_at>?)" in step]
    assert len(new_users) == 2, plan


# --------------------------------------------------------------------------- statistics


async def test_statistics_of_an_empty_database(storage: SQLiteStorage) -> None:
    stats = await storage.bot_statistics(NOW)
    assert stats == EMPTY_STATISTICS
    assert isinstance(stats.credits_month, float) and isinstance(stats.tokens_month, int)


async def test_statistics_figures(storage: SQLiteStorage, clock: FakeClock) -> None:
    # Users: created at these ages (seconds before NOW).
    ages = {
        1: 10,  # new today
        2: DAY,  # exactly 24 h: still "today" (created_at >= now - 1 day)
        3: DAY + 1,  # this week
        4: 7 * DAY,  # exactly 7 days: this week
        5: 7 * DAY + 1,  # older
        6: 100 * DAY,
    }
    for user_id, age in ages.items():
        clock.now = NOW - age
        await add_users(storage, user_id)
    await storage.set_users_blocked([5, 6], True)

    # Usage: (age, user, model, prompt, completion, credits).
    usage = [
        (60, 1, "a", 10, 5, 0.5),
        (DAY, 2, "a", 1, 1, None),  # exactly a day old: counted for the day
        (DAY + 1, 1, "b", 100, 50, 1.0),
        (3 * DAY, 3, "a", 20, 0, 0.25),
        (7 * DAY, 4, "b", 7, 3, None),  # exactly a week old
        (10 * DAY, 5, "c", 1000, 1000, 2.0),
        (30 * DAY, 6, "c", 3, 3, 0.125),  # exactly 30 days: still the month
        (30 * DAY + 1, 1, "a", 99_999, 99_999, 99.0),  # older than the month: ignored
        (400 * DAY, 2, "z", 5, 5, 5.0),
    ]
    for age, user_id, model, prompt, completion, credits in usage:
        await add_usage(storage, clock, NOW - age, user_id, model, prompt, completion, credits)

    stats = await storage.bot_statistics(NOW)
    assert stats == BotStatistics(
        users=6,
        blocked_users=2,
        new_users_day=2,  # 1, 2
        new_users_week=4,  # 1, 2, 3, 4
        active_day=2,  # 1, 2
        active_week=4,  # 1, 2, 3, 4
        active_month=6,  # 1..6
        requests_day=2,
        requests_week=5,
        requests_month=7,
        tokens_month=15 + 2 + 150 + 20 + 10 + 2000 + 6,
        credits_month=0.5 + 1.0 + 0.25 + 2.0 + 0.125,  # NULL counts as 0
        top_models=(ModelUse("a", 3), ModelUse("b", 2), ModelUse("c", 2)),
    )
    # The figures follow ``now``, not the storage clock.
    later = await storage.bot_statistics(NOW + 2 * DAY)
    assert (later.new_users_day, later.active_day, later.requests_day) == (0, 0, 0)
    assert (later.new_users_week, later.active_week, later.requests_week) == (3, 3, 4)
    assert later.requests_month == 6 and later.active_month == 5  # the 30-day-old one dropped


async def test_top_models_order_ties_and_cap(storage: SQLiteStorage, clock: FakeClock) -> None:
    counts = {"m-b": 3, "m-a": 3, "m-c": 5, "m-e": 1, "m-d": 2, "m-f": 1, "m-g": 4}
    for model, count in counts.items():
        for _ in range(count):
            await add_usage(storage, clock, NOW - DAY * 2, 1, model)
    for _ in range(10):  # the most used model overall, but only before the month
        await add_usage(storage, clock, NOW - 31 * DAY, 1, "m-old")

    stats = await storage.bot_statistics(NOW)
    assert stats.top_models == (
        ModelUse("m-c", 5),
        ModelUse("m-g", 4),
        ModelUse("m-a", 3),  # ties: model name ascending
        ModelUse("m-b", 3),
        ModelUse("m-d", 2),
    )
    assert stats.requests_month == sum(counts.values())


async def test_credits_of_only_null_records_are_zero(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    await add_usage(storage, clock, NOW - 5, 1, credits=None)
    await add_usage(storage, clock, NOW - 6, 2, credits=None)
    stats = await storage.bot_statistics(NOW)
    assert stats.credits_month == 0.0 and isinstance(stats.credits_month, float)
    assert (stats.requests_month, stats.active_day) == (2, 2)
    # Usage of users the bot never stored (rows are not tied to users) still counts.
    assert stats.users == 0


# ----------------------------------------------------------- the statistics' connection


@sqlite_only
async def test_statistics_run_on_a_separate_read_only_connection(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    assert storage._stats_db is None  # opened lazily
    await add_users(storage, 1)
    assert (await storage.bot_statistics(NOW)).users == 1
    reader = storage._stats_db
    assert reader is not None and reader is not storage._db
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await reader.execute_fetchall("DELETE FROM users")

    # Rows the main connection writes later are visible: no snapshot is kept open.
    await add_users(storage, 2, 3)
    await storage.set_users_blocked([3], True)
    await add_usage(storage, clock, NOW - 1, 2)
    stats = await storage.bot_statistics(NOW)
    assert (stats.users, stats.blocked_users, stats.requests_day) == (3, 1, 1)
    assert storage._stats_db is reader  # reused
    assert not storage._conn.in_transaction and not reader.in_transaction


@sqlite_only
async def test_concurrent_statistics_open_one_connection(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = []
    original = storage._open_stats_connection

    async def counting(main: aiosqlite.Connection) -> aiosqlite.Connection:
        conn = await original(main)
        opened.append(conn)
        return conn

    monkeypatch.setattr(storage, "_open_stats_connection", counting)
    await add_users(storage, 1)
    results = await asyncio.gather(*(storage.bot_statistics(NOW) for _ in range(5)))
    assert len(opened) == 1
    assert {r.users for r in results} == {1}


async def test_close_closes_the_statistics_connection(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "bot.db")
    await store.connect()
    await store.bot_statistics(NOW)
    reader = store._stats_db
    assert reader is not None
    await store.close()
    assert store._stats_db is None
    with pytest.raises(ValueError):  # aiosqlite refuses a closed connection
        await reader.execute_fetchall("SELECT 1")
    with pytest.raises(RuntimeError, match="connect"):
        await store.bot_statistics(NOW)
    # Reconnecting opens a fresh reader that sees the same file.
    await store.connect()
    try:
        await add_users(store, 1)
        assert (await store.bot_statistics(NOW)).users == 1
        assert store._stats_db is not None and store._stats_db is not reader
    finally:
        await store.close()


async def test_statistics_before_connect_raises() -> None:
    store = SQLiteStorage(":memory:")
    with pytest.raises(RuntimeError, match="connect"):
        await store.bot_statistics(NOW)


async def test_reader_opens_a_path_that_needs_escaping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A relative path with URI metacharacters, and a working directory changed afterwards.
    directory = tmp_path / "odd ?#% dir"
    directory.mkdir()
    monkeypatch.chdir(directory)
    store = SQLiteStorage("b?t#1%.db")
    await store.connect()
    try:
        await add_users(store, 1)
        monkeypatch.chdir(tmp_path)
        assert (await store.bot_statistics(NOW)).users == 1
    finally:
        await store.close()
    assert (directory / "b?t#1%.db").is_file()
    assert not (tmp_path / "b?t#1%.db").exists()


async def test_in_memory_statistics_use_the_main_connection(clock: FakeClock) -> None:
    # A second connection to ":memory:" would be a different, empty database.
    store = SQLiteStorage(":memory:", clock=clock)
    await store.connect()
    try:
        assert await store.bot_statistics(NOW) == EMPTY_STATISTICS
        await add_users(store, 1, 2)
        await add_usage(store, clock, NOW - 10, 1, model="x", prompt=3, completion=4, credits=1.5)
        stats = await store.bot_statistics(NOW)
        assert (stats.users, stats.active_day, stats.tokens_month, stats.credits_month) == (
            2,
            1,
            7,
            1.5,
        )
        assert stats.top_models == (ModelUse("x", 1),)
        assert store._stats_db is None
    finally:
        await store.close()


@sqlite_only
async def test_close_while_the_reader_opens_leaks_nothing(
    storage: SQLiteStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[aiosqlite.Connection] = []
    original = storage._open_stats_connection

    async def slow(main: aiosqlite.Connection) -> aiosqlite.Connection:
        conn = await original(main)
        opened.append(conn)
        await storage.close()  # shutdown arrives while the reader is being opened
        return conn

    monkeypatch.setattr(storage, "_open_stats_connection", slow)
    with pytest.raises(RuntimeError, match="connect"):
        await storage.bot_statistics(NOW)
    assert storage._stats_db is None
    with pytest.raises(ValueError):  # closed, not leaked
        await opened[0].execute_fetchall("SELECT 1")
