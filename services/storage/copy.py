"""Copy an SQLite database into an empty PostgreSQL one (``python -m bot.copy_db``).

The SQLite database is first brought to the current schema (the same migrations the bot runs),
the PostgreSQL one too; then every table is copied row for row, ids kept, in ONE PostgreSQL
transaction (a failure leaves the target as empty as it was), and the identity sequences are
moved past the copied ids so new rows never collide. A target holding any row is refused:
copying twice, or over a bot's live data, would mix two histories.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiosqlite
import asyncpg

from .migrations import migrate, migrate_postgres

log = logging.getLogger(__name__)

# Every table of the schema, parents before children (messages refer to conversations).
TABLES: tuple[str, ...] = (
    "users",
    "conversations",
    "messages",
    "usage_records",
    "video_jobs",
    "broadcasts",
    "update_journal",
    "access_list",
    "refusals",
)
# Tables whose "id" is an identity column on PostgreSQL (its sequence is fixed after the copy).
IDENTITY_TABLES: tuple[str, ...] = (
    "conversations",
    "messages",
    "usage_records",
    "video_jobs",
    "broadcasts",
)
_BATCH = 5000  # rows read from SQLite at a time: a big history never sits in memory at once


class TargetNotEmpty(RuntimeError):
    """The PostgreSQL database already holds rows; nothing was copied."""


@dataclass(frozen=True, slots=True)
class TableCopy:
    table: str
    rows: int


async def _sqlite_columns(db: aiosqlite.Connection, table: str) -> list[str]:
    # Table names come from TABLES, never from input.
    rows = await db.execute_fetchall(f"PRAGMA table_info({table})")
    return [str(row[1]) for row in rows]


async def _postgres_columns(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return [str(row[0]) for row in rows]


async def _rows(
    db: aiosqlite.Connection, table: str, columns: list[str]
) -> AsyncIterator[tuple[object, ...]]:
    async with db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid") as cursor:
        while batch := await cursor.fetchmany(_BATCH):
            for row in batch:
                yield tuple(row)


async def copy_sqlite_to_postgres(sqlite_path: str, postgres_dsn: str) -> list[TableCopy]:
    """Copy every table; return the row counts per table, in TABLES order.

    Raises TargetNotEmpty when the target holds any row (nothing is written then)."""
    db = await aiosqlite.connect(sqlite_path, isolation_level=None)
    try:
        await migrate(db)
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await migrate_postgres(conn)
            return await _copy(db, conn)
        finally:
            await conn.close()
    finally:
        await db.close()


async def _copy(db: aiosqlite.Connection, conn: asyncpg.Connection) -> list[TableCopy]:
    copied: list[TableCopy] = []
    async with conn.transaction():
        # Nobody writes the target while it is checked and filled.
        await conn.execute(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE")
        for table in TABLES:
            if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                raise TargetNotEmpty(
                    f"the PostgreSQL database already has rows in {table}; "
                    "copy into an empty database"
                )
        for table in TABLES:
            columns = await _sqlite_columns(db, table)
            target = await _postgres_columns(conn, table)
            if sorted(columns) != sorted(target):
                raise RuntimeError(f"table {table} differs between the two schemas")
            await conn.copy_records_to_table(
                table, records=_rows(db, table, columns), columns=columns
            )
            count = int(await conn.fetchval(f"SELECT COUNT(*) FROM {table}"))
            copied.append(TableCopy(table, count))
            log.info("copy: %s: %d rows", table, count)
        for table in IDENTITY_TABLES:
            # The next id is one past the largest copied (1 for an empty table).
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            )
    return copied
