from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from services.storage import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    SchemaTooNew,
    SQLiteStorage,
)
from services.storage.migrations import get_schema_version, migrate

EXPECTED_TABLES = {
    "users",
    "conversations",
    "messages",
    "usage_records",
    "video_jobs",
    "broadcasts",
}
MEDIA_COLUMNS = ("vision_model", "image_model", "tts_voice", "reply_mode")


def sync_query(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def tables(path: Path) -> set[str]:
    rows = sync_query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {name for (name,) in rows}


async def test_fresh_database_gets_latest_schema(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    store = SQLiteStorage(path)
    await store.connect()
    await store.close()
    assert sync_query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert tables(path) >= EXPECTED_TABLES


async def test_reopen_keeps_data_and_does_not_rerun(tmp_path: Path) -> None:
    # A migration with a visible side effect: re-running it would add a second marker row.
    counting = (
        *MIGRATIONS,
        Migration(
            len(MIGRATIONS) + 1,
            "marker",
            (
                "CREATE TABLE marker (n INTEGER)",
                "INSERT INTO marker (n) VALUES (1)",
            ),
        ),
    )
    path = tmp_path / "bot.db"
    for _ in range(3):
        store = SQLiteStorage(path, migrations=counting)
        await store.connect()
        await store.upsert_user(1, username="a", first_name=None, language_code=None)
        await store.close()
    assert sync_query(path, "SELECT COUNT(*) FROM marker") == [(1,)]
    assert sync_query(path, "SELECT COUNT(*) FROM users") == [(1,)]
    assert sync_query(path, "PRAGMA user_version") == [(len(counting),)]


async def test_older_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStorage(path)  # current schema = the "old" version here
    await store.connect()
    await store.upsert_user(1, username="old", first_name=None, language_code=None)
    conv = await store.active_conversation(5, None)
    await store.close()

    upgrade = Migration(
        SCHEMA_VERSION + 1,
        "add a column and an index",
        (
            "ALTER TABLE users ADD COLUMN note TEXT",
            "CREATE INDEX users_note_idx ON users (note)",
        ),
    )
    store = SQLiteStorage(path, migrations=(*MIGRATIONS, upgrade))
    await store.connect()
    try:
        user = await store.get_user(1)
        assert user is not None and user.username == "old"
        assert await store.active_conversation(5, None) == conv
    finally:
        await store.close()
    assert sync_query(path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]
    assert sync_query(path, "SELECT user_id, note FROM users") == [(1, None)]


async def test_version_1_database_is_upgraded_to_2_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    # A database as the first release left it: only migration 1, with real data.
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        assert await migrate(conn, MIGRATIONS[:1]) == 1
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO users (user_id, username, first_name, language_code, language, model, "
            "system_prompt, temperature, created_at) "
            "VALUES (7, 'old', 'Old', 'ru', 'en', 'm1', 'be brief', 0.5, 1000.0)"
        )
        conn.execute("INSERT INTO conversations (id, chat_id, created_at) VALUES (3, 70, 1.0)")
        conn.execute(
            "INSERT INTO messages (conversation_id, user_id, role, content, tokens, created_at) "
            "VALUES (3, 7, 'user', 'q', 1, 1.0), (3, NULL, 'assistant', 'a', 1, 2.0)"
        )
    assert "video_jobs" not in tables(path)

    store = SQLiteStorage(path)
    await store.connect()
    try:
        user = await store.get_user(7)
        assert user is not None
        assert (user.username, user.language, user.model, user.system_prompt) == (
            "old",
            "en",
            "m1",
            "be brief",
        )
        assert user.temperature == 0.5 and user.created_at == 1000.0
        assert (user.vision_model, user.image_model, user.tts_voice, user.reply_mode) == (
            None,
            None,
            None,
            None,
        )
        assert await store.active_conversation(70, None) == 3
        assert [m.content for m in await store.recent_messages(3, 10)] == ["q", "a"]
        # The new schema is usable at once.
        user = await store.update_user_settings(7, reply_mode="voice", tts_voice="nova")
        assert (user.reply_mode, user.tts_voice, user.model) == ("voice", "nova", "m1")
        job = await store.create_video_job(
            user_id=7,
            chat_id=70,
            thread_id=None,
            model="txt2vid",
            prompt="p",
            lang="en",
            progress_message_id=None,
        )
        assert await store.active_video_jobs() == [job]
    finally:
        await store.close()
    # The store applies every later migration too; version 2's changes are checked above.
    assert sync_query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    columns = {row[1] for row in sync_query(path, "PRAGMA table_info(users)")}
    assert set(MEDIA_COLUMNS) <= columns
    # Re-opening an upgraded database changes nothing.
    store = SQLiteStorage(path)
    await store.connect()
    try:
        assert (await store.get_user(7)).reply_mode == "voice"  # type: ignore[union-attr]
        assert await store.count_active_video_jobs(7) == 1
    finally:
        await store.close()


async def test_database_at_version_zero_with_partial_list(tmp_path: Path) -> None:
    path = tmp_path / "steps.db"
    steps = (
        Migration(1, "a", ("CREATE TABLE a (x INTEGER)",)),
        Migration(2, "b", ("CREATE TABLE b (x INTEGER)",)),
        Migration(3, "c", ("CREATE TABLE c (x INTEGER)",)),
    )
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        assert await migrate(conn, steps[:1]) == 1
        assert await migrate(conn, steps) == 3
        assert await migrate(conn, steps) == 3  # idempotent
    assert {"a", "b", "c"} <= tables(path)


async def test_failed_migration_rolls_back_completely(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    broken = Migration(
        SCHEMA_VERSION + 1,
        "broken",
        (
            "CREATE TABLE half_done (x INTEGER)",
            "THIS IS NOT SQL",
        ),
    )
    store = SQLiteStorage(path, migrations=(*MIGRATIONS, broken))
    with pytest.raises(sqlite3.OperationalError):
        await store.connect()
    assert store._db is None
    assert sync_query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert "half_done" not in tables(path)
    # A fixed release can then start normally.
    store = SQLiteStorage(path)
    await store.connect()
    await store.close()


async def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    store = SQLiteStorage(path)
    with pytest.raises(SchemaTooNew, match="newer"):
        await store.connect()
    assert store._db is None


async def test_migration_versions_must_be_consecutive() -> None:
    async with aiosqlite.connect(":memory:", isolation_level=None) as conn:
        with pytest.raises(ValueError, match=r"1\.\.n"):
            await migrate(conn, (Migration(1, "a", ()), Migration(3, "c", ())))
        assert await get_schema_version(conn) == 0


def test_shipped_migrations_are_numbered_from_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert len(MIGRATIONS) == SCHEMA_VERSION
