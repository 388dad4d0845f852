"""The storage tests' backends: every storage test runs on SQLite and on PostgreSQL.

A test module's ``storage`` fixture is ``backend_storage(request.param, ...)`` with
``params=BACKENDS``; tests of SQLite-only internals (PRAGMAs, query plans, file paths) carry
``@sqlite_only``. PostgreSQL tests get a fresh schema each (tests/pg_schema.py) and are skipped
with a reason where no server runs (failed under REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.storage import PostgresStorage, SQLiteStorage, Storage
from tests.pg_schema import fresh_schema

BACKENDS = ("sqlite", "postgres")

# Runs the decorated test on SQLite only (it looks at SQLite's own internals).
sqlite_only = pytest.mark.parametrize("storage", ["sqlite"], indirect=True)


@asynccontextmanager
async def backend_storage(
    kind: str, clock: Callable[[], float], sqlite_path: str | Path = ":memory:", **options: Any
) -> AsyncIterator[Any]:
    """A connected storage of ``kind``, closed (and its PostgreSQL schema dropped) after."""
    if kind == "sqlite":
        store: SQLiteStorage | PostgresStorage = SQLiteStorage(sqlite_path, clock=clock, **options)
        await store.connect()
        try:
            yield store
        finally:
            await store.close()
        return
    async with fresh_schema() as url:
        store = PostgresStorage(url, clock=clock, **options)
        await store.connect()
        try:
            yield store
        finally:
            await store.close()


async def fetch(store: Storage, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run raw SQL on either backend; ``?`` placeholders work on both."""
    if isinstance(store, SQLiteStorage):
        return [tuple(row) for row in await store._conn.execute_fetchall(sql, params)]
    assert isinstance(store, PostgresStorage)
    numbered = iter(range(1, sql.count("?") + 1))
    pg_sql = re.sub(r"\?", lambda _: f"${next(numbered)}", sql)
    return [tuple(row) for row in await store._pool.fetch(pg_sql, *params)]


# What a constraint (CHECK, NOT NULL, foreign key) violation raises on each backend.
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.IntegrityError,
    asyncpg.IntegrityConstraintViolationError,
)
