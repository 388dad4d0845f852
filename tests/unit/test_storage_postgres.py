"""PostgreSQL specifics: migrations under an advisory lock with the version in a table, the
pool's lifecycle, and the instance lock (bot/instance_lock.py). The shared storage behaviour
is tested on both backends by the other test_storage_*.py files."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.instance_lock import (
    DatabaseUnreachable,
    InstanceLocked,
    PostgresInstanceLock,
    instance_lock_for,
)
from services.storage import MIGRATIONS, SCHEMA_VERSION, Migration, PostgresStorage, SchemaTooNew
from tests.pg_schema import fresh_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with fresh_schema() as schema_url:
        yield schema_url


async def query(url: str, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


# ---------------------------------------------------------------------------- migrations


async def test_fresh_schema_gets_every_table_and_the_version(url: str) -> None:
    store = PostgresStorage(url)
    await store.connect()
    await store.close()
    assert await query(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    tables = {row[0] for row in await query(url, "SELECT tablename FROM pg_tables "
                                             "WHERE schemaname = current_schema()")}  # fmt: skip
    assert {"users", "messages", "video_jobs", "broadcasts", "update_journal"} <= tables
    # Telegram ids are BIGINT, times are unix seconds in double precision.
    types = dict(
        await query(
            url,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'users'",
        )
    )
    assert types["user_id"] == "bigint" and types["created_at"] == "double precision"


async def test_processes_starting_at_once_migrate_once(url: str) -> None:
    # Without the advisory lock the second CREATE TABLE users fails ("already exists").
    stores = [PostgresStorage(url) for _ in range(4)]
    await asyncio.gather(*(s.connect() for s in stores))
    for store in stores:
        assert await store.count_users() == 0
        await store.close()
    assert await query(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


async def test_a_failed_migration_rolls_back_and_is_retried(url: str) -> None:
    broken = Migration(
        SCHEMA_VERSION + 1, "broken", ("CREATE TABLE half (x INTEGER)", "SELECT no_such_fn()")
    )
    store = PostgresStorage(url, migrations=(*MIGRATIONS, broken))
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await store.connect()
    assert await query(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert await query(url, "SELECT to_regclass('half') IS NULL") == [(True,)]
    store = PostgresStorage(url)
    await store.connect()  # the current code still opens it
    await store.close()


async def test_a_newer_schema_is_refused(url: str) -> None:
    store = PostgresStorage(url)
    await store.connect()
    await store.close()
    conn = await asyncpg.connect(url)
    await conn.execute("UPDATE schema_version SET version = $1", SCHEMA_VERSION + 5)
    await conn.close()
    with pytest.raises(SchemaTooNew):
        await PostgresStorage(url).connect()


async def test_use_before_connect_and_after_close_raises(url: str) -> None:
    store = PostgresStorage(url)
    with pytest.raises(RuntimeError, match="connect"):
        await store.get_user(1)
    await store.connect()
    await store.connect()  # idempotent
    await store.ping()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(RuntimeError, match="connect"):
        await store.count_users()


async def test_replicas_on_one_database_answer_an_update_once(url: str) -> None:
    # Two storages are two processes' pools: the journal's INSERT is the cross-replica dedupe.
    first, second = PostgresStorage(url), PostgresStorage(url)
    await first.connect()
    await second.connect()
    try:
        results = await asyncio.gather(
            *(store.journal_record(42, "{}") for store in (first, second) * 5)
        )
        assert sorted(results) == [False] * 9 + [True]
    finally:
        await first.close()
        await second.close()


async def test_concurrent_updates_share_the_journals_statements(url: str) -> None:
    store = PostgresStorage(url)
    await store.connect()
    try:
        ids = list(range(100, 140))
        recorded = await asyncio.gather(*(store.journal_record(i, "{}", "me") for i in ids))
        assert recorded == [True] * len(ids)
        again = await asyncio.gather(
            store.journal_record(100, "{}"), store.journal_record(200, "{}")
        )
        assert again == [False, True]  # each caller gets its own answer from the one statement
        await asyncio.gather(*(store.journal_finish(i) for i in ids[:30]))
        unfinished = {entry.update_id for entry in await store.journal_unfinished()}
        assert unfinished == set(ids[30:]) | {200}
        owners = await query(url, "SELECT DISTINCT owner FROM update_journal WHERE update_id < 140")
        assert owners == [("me",)]
    finally:
        await store.close()
    # Closing waited for every write: what was recorded is there.
    assert await query(url, "SELECT count(*) FROM update_journal") == [(len(ids) + 1,)]


# ------------------------------------------------------------------------- instance lock


async def test_a_second_holder_is_refused_until_the_first_releases(url: str) -> None:
    first, second = instance_lock_for(url), instance_lock_for(url)
    assert isinstance(first, PostgresInstanceLock)
    await asyncio.to_thread(first.acquire)
    await asyncio.to_thread(first.acquire)  # taking it again in the same owner is harmless
    with pytest.raises(InstanceLocked, match="another bot process is already using"):
        await asyncio.to_thread(second.acquire)
    async with fresh_schema() as other:  # another schema is another bot's database
        third = instance_lock_for(other)
        await asyncio.to_thread(third.acquire)
        await asyncio.to_thread(third.release)
    await asyncio.to_thread(first.release)
    await asyncio.to_thread(second.acquire)
    await asyncio.to_thread(second.release)


async def test_a_lock_left_by_a_killed_process_does_not_block(url: str) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import time\n"
        "from bot.instance_lock import instance_lock_for\n"
        f"instance_lock_for({url!r}).acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 20)
        assert line.strip() == b"locked"
        with pytest.raises(InstanceLocked):
            await asyncio.to_thread(instance_lock_for(url).acquire)
        holder.kill()  # SIGKILL: the server drops its session, and the lock with it
        await asyncio.wait_for(holder.wait(), 10)
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    lock = instance_lock_for(url)
    for _ in range(50):  # the server notices the closed connection within moments
        try:
            await asyncio.to_thread(lock.acquire)
            break
        except InstanceLocked:
            await asyncio.sleep(0.05)
    else:
        pytest.fail("the killed holder's lock was never released")
    await asyncio.to_thread(lock.release)


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    lock = PostgresInstanceLock("postgresql://bot:s3cret@127.0.0.1:1/bot", timeout=2)
    with pytest.raises(DatabaseUnreachable) as info:
        lock.acquire()
    assert "s3cret" not in str(info.value) and "127.0.0.1:1" in str(info.value)
