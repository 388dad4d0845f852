"""Versioned SQLite schema migrations.

The schema version lives in ``PRAGMA user_version`` (stored in the database header and
transactional), so each migration and its version bump commit together: a crash mid-migration
leaves the previous version intact and the migration is simply retried on the next start.

Rules for adding a migration: append a new ``Migration`` with the next version; never edit one
that has shipped (existing databases have already applied it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    # Separate statements rather than one script: sqlite3's executescript() commits first, which
    # would break the all-or-nothing guarantee.
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="users, conversations, messages, usage records",
        statements=(
            """
            CREATE TABLE users (
                user_id       INTEGER PRIMARY KEY,
                username      TEXT,
                first_name    TEXT,
                language_code TEXT,
                language      TEXT,
                model         TEXT,
                system_prompt TEXT,
                temperature   REAL,
                created_at    REAL NOT NULL,
                is_blocked    INTEGER NOT NULL DEFAULT 0
            )
            """,
            # A chat/thread's active conversation is its newest one, so starting a new
            # conversation is a single INSERT and the old one stays untouched.
            # thread_id NULL is stored as 0 so equality lookups (and a future UNIQUE) work.
            """
            CREATE TABLE conversations (
                id         INTEGER PRIMARY KEY,
                chat_id    INTEGER NOT NULL,
                thread_id  INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL
            )
            """,
            # Covering index for "newest conversation of (chat_id, thread_id)": one b-tree seek.
            "CREATE INDEX conversations_chat_thread_idx ON conversations (chat_id, thread_id, id)",
            """
            CREATE TABLE messages (
                id              INTEGER PRIMARY KEY,
                conversation_id INTEGER NOT NULL
                                REFERENCES conversations (id) ON DELETE CASCADE,
                user_id         INTEGER,
                role            TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
                content         TEXT NOT NULL,
                tokens          INTEGER NOT NULL,
                status          TEXT NOT NULL DEFAULT 'complete',
                created_at      REAL NOT NULL
            )
            """,
            # History paging: newest N of one conversation, optionally below an id.
            "CREATE INDEX messages_conversation_idx ON messages (conversation_id, id)",
            """
            CREATE TABLE usage_records (
                id                INTEGER PRIMARY KEY,
                user_id           INTEGER NOT NULL,
                chat_id           INTEGER NOT NULL,
                model             TEXT NOT NULL,
                prompt_tokens     INTEGER NOT NULL,
                completion_tokens INTEGER NOT NULL,
                credits           REAL,
                status            TEXT NOT NULL,
                created_at        REAL NOT NULL
            )
            """,
            "CREATE INDEX usage_records_user_time_idx ON usage_records (user_id, created_at)",
        ),
    ),
    Migration(
        version=2,
        description="media settings on users, video_jobs",
        statements=(
            # ADD COLUMN without a default only edits the schema text: existing rows read as
            # NULL ("use the bot's default") without rewriting the table.
            "ALTER TABLE users ADD COLUMN vision_model TEXT",
            "ALTER TABLE users ADD COLUMN image_model TEXT",
            "ALTER TABLE users ADD COLUMN tts_voice TEXT",
            "ALTER TABLE users ADD COLUMN reply_mode TEXT",
            # thread_id stays nullable here: it is only echoed back to Telegram, never looked up.
            # No CHECK on state: SQLite cannot alter a CHECK without rebuilding the table, and
            # the code validates states before writing.
            """
            CREATE TABLE video_jobs (
                id                  INTEGER PRIMARY KEY,
                user_id             INTEGER NOT NULL,
                chat_id             INTEGER NOT NULL,
                thread_id           INTEGER,
                request_id          TEXT,
                model               TEXT NOT NULL,
                prompt              TEXT NOT NULL,
                lang                TEXT NOT NULL,
                state               TEXT NOT NULL,
                progress_message_id INTEGER,
                url                 TEXT,
                reason              TEXT,
                created_at          REAL NOT NULL,
                updated_at          REAL NOT NULL
            )
            """,
            # Finished jobs pile up forever while only a handful are ever active, so both hot
            # lookups (per-user limit, resume on start) use partial indexes holding active rows
            # only. Queries must repeat this exact IN list for SQLite to match the index.
            """
            CREATE INDEX video_jobs_active_user_idx ON video_jobs (user_id)
            WHERE state IN ('submitting', 'IN_QUEUE', 'IN_PROGRESS', 'COMPLETED')
            """,
            """
            CREATE INDEX video_jobs_active_idx ON video_jobs (id)
            WHERE state IN ('submitting', 'IN_QUEUE', 'IN_PROGRESS', 'COMPLETED')
            """,
        ),
    ),
    Migration(
        version=3,
        description="broadcasts, indexes for the admins' statistics",
        statements=(
            # cursor is a user id, not an offset: recipients are read in user_id order, so
            # users who arrive or block the bot mid-broadcast never shift the position.
            # No CHECK on state, as for video_jobs: the code validates states before writing.
            """
            CREATE TABLE broadcasts (
                id                  INTEGER PRIMARY KEY,
                admin_id            INTEGER NOT NULL,
                from_chat_id        INTEGER NOT NULL,
                message_id          INTEGER NOT NULL,
                lang                TEXT NOT NULL,
                state               TEXT NOT NULL,
                total               INTEGER NOT NULL,
                cursor              INTEGER NOT NULL DEFAULT 0,
                delivered           INTEGER NOT NULL DEFAULT 0,
                blocked             INTEGER NOT NULL DEFAULT 0,
                failed              INTEGER NOT NULL DEFAULT 0,
                progress_message_id INTEGER,
                created_at          REAL NOT NULL,
                updated_at          REAL NOT NULL,
                finished_at         REAL
            )
            """,
            # Resume on start reads running broadcasts only; finished ones pile up. Queries must
            # repeat this exact WHERE clause for SQLite to match the index.
            "CREATE INDEX broadcasts_running_idx ON broadcasts (id) WHERE state = 'running'",
            # New users in the last day/week: an index range count instead of a table scan.
            "CREATE INDEX users_created_idx ON users (created_at)",
            # Active users and request counts for a period: a range of this index answers both
            # without reading the (much wider) table rows. Building it reads usage_records once,
            # at the first start of this version.
            "CREATE INDEX usage_records_time_user_idx ON usage_records (created_at, user_id)",
        ),
    ),
    Migration(
        version=4,
        description="update journal: dedupe by update id, replay after a crash",
        statements=(
            # One row per incoming Telegram update, written before it is handled. payload is the
            # update's JSON for message updates (replayed after a crash) and NULL otherwise; it
            # is dropped when the update is finished, so users' texts do not linger here.
            # replays counts start-up replays: an update is replayed once, never twice.
            """
            CREATE TABLE update_journal (
                update_id   INTEGER PRIMARY KEY,
                payload     TEXT,
                replays     INTEGER NOT NULL DEFAULT 0,
                created_at  REAL NOT NULL,
                finished_at REAL
            )
            """,
            # Start-up reads the unfinished rows only, a handful among a day of finished ones.
            # Queries must repeat this exact WHERE clause for SQLite to match the index.
            """
            CREATE INDEX update_journal_unfinished_idx ON update_journal (update_id)
            WHERE finished_at IS NULL
            """,
            # Pruning deletes the oldest finished rows by a range of this index.
            """
            CREATE INDEX update_journal_finished_idx ON update_journal (finished_at)
            WHERE finished_at IS NOT NULL
            """,
        ),
    ),
    Migration(
        version=5,
        description="energy (MashaGPT's billing unit) on usage records",
        statements=(
            # Like migration 2's columns: a schema-only change, old rows read as NULL ("no
            # energy reported"), which is what they are: no provider billed in energy before.
            "ALTER TABLE usage_records ADD COLUMN energy REAL",
        ),
    ),
    Migration(
        version=6,
        description="media jobs of another kind than video (pictures from a task API)",
        statements=(
            # Every job before this was a video; the default says so for the old rows.
            "ALTER TABLE video_jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'video'",
        ),
    ),
    Migration(
        version=7,
        description="access control: allow/ban list, refusal counts, per-user daily limits",
        statements=(
            # One row per user or group an admin allowed or banned (subject_id: a user id, or a
            # group's negative chat id). ban_noticed: the banned user was told once; it survives
            # restarts so the notice is never repeated. Rows are few (admins write them), so
            # the bot reads them all once and keeps them in memory.
            """
            CREATE TABLE access_list (
                subject_id  INTEGER PRIMARY KEY,
                allowed     INTEGER NOT NULL DEFAULT 0,
                banned      INTEGER NOT NULL DEFAULT 0,
                ban_noticed INTEGER NOT NULL DEFAULT 0,
                updated_at  REAL NOT NULL
            )
            """,
            # Questions refused before reaching a provider, counted per UTC day ("YYYY-MM-DD")
            # and reason (banned, not_allowed, flood, quota_requests, quota_tokens), for /stats.
            """
            CREATE TABLE refusals (
                day    TEXT NOT NULL,
                reason TEXT NOT NULL,
                count  INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (day, reason)
            )
            """,
            # An admin's /limit: NULL = the bot's USER_DAILY_REQUESTS, 0 = unlimited. A
            # schema-only change like migration 2's columns.
            "ALTER TABLE users ADD COLUMN daily_requests_limit INTEGER",
            # The overrides are read once at start-up: a handful of rows among all users.
            """
            CREATE INDEX users_daily_limit_idx ON users (user_id)
            WHERE daily_requests_limit IS NOT NULL
            """,
        ),
    ),
)

SCHEMA_VERSION: int = MIGRATIONS[-1].version


class SchemaTooNew(RuntimeError):
    """The database was written by a newer version of the bot; refusing to touch it."""


async def get_schema_version(conn: aiosqlite.Connection) -> int:
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


def _check_sequence(migrations: Sequence[Migration]) -> None:
    expected = list(range(1, len(migrations) + 1))
    actual = [m.version for m in migrations]
    if actual != expected:
        raise ValueError(f"migration versions must be 1..n in order, got {actual}")


async def migrate(conn: aiosqlite.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply every migration newer than the database's version; return the final version.

    ``conn`` must be in autocommit mode (isolation_level=None) so the explicit transactions
    here are the only ones.
    """
    _check_sequence(migrations)
    latest = migrations[-1].version if migrations else 0
    version = await get_schema_version(conn)
    if version > latest:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this code supports ({latest}); "
            "upgrade the bot instead of running an older version against this database"
        )
    for migration in migrations[version:]:
        # IMMEDIATE takes the write lock up front; re-reading the version inside the transaction
        # means a second process starting at the same time cannot apply a step twice.
        await conn.execute_fetchall("BEGIN IMMEDIATE")
        try:
            if await get_schema_version(conn) >= migration.version:
                await conn.rollback()
                continue
            for statement in migration.statements:
                await conn.execute_fetchall(statement)
            # PRAGMA takes no bound parameters; the version is a validated int.
            await conn.execute_fetchall(f"PRAGMA user_version = {int(migration.version)}")
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
        log.info("storage: applied migration %d (%s)", migration.version, migration.description)
    return await get_schema_version(conn)
