"""SQLite implementation of ``Storage`` on one long-lived aiosqlite connection.

Concurrency model: aiosqlite runs every call on one worker thread in FIFO order, but calls
issued by different coroutines interleave between each other. An explicit multi-statement
transaction would therefore capture whatever other coroutines execute in between (and roll it
back on error). To avoid that without a global lock, every public write here is ONE SQL
statement, which SQLite executes atomically in its own implicit transaction:
``add_exchange`` is a single two-row INSERT, the active conversation is simply the newest one
of its chat/thread (so starting one is a single INSERT), settings are single upserts, a
video job or broadcast is created and each of its changes applied by one INSERT/UPDATE …
RETURNING, and a page of users is marked blocked by one UPDATE.

Hot-path reads (``active_conversation``, ``recent_messages``, ``get_user``) are one indexed
statement and one worker-thread round trip each (``execute_fetchall``); connection PRAGMAs are
set once in ``connect``. Message contents are never logged.

The admins' statistics scan whole periods of ``usage_records`` (possibly millions of rows), so
they run on a second, read-only connection with its own worker thread: WAL lets that reader
work beside the writer, and the chat's queries on the main connection never queue behind it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from .base import (
    REFUSAL_REASONS,
    RESETTABLE_USER_SETTINGS,
    USAGE_NAMESPACES,
    AccessEntry,
    ActiveJobsLimit,
    BotStatistics,
    Broadcast,
    JournalEntry,
    ModelUse,
    ProviderUsage,
    QuotaUsage,
    RefusalCount,
    StoredMessage,
    UsageRecord,
    UsageSummary,
    UserRecord,
    VideoJob,
)
from .migrations import MIGRATIONS, Migration, migrate
from .rows import (
    ACTIVE_VIDEO_STATES_SQL,
    BROADCAST_COLUMNS,
    MESSAGE_COLUMNS,
    OWNED_TABLES,
    RUNNING_BROADCAST_SQL,
    USER_COLUMNS,
    VIDEO_COLUMNS,
    broadcast_from_row,
    check_broadcast_field,
    check_setting,
    check_video_field,
    owned_table,
    provider_usage_from_rows,
    thread_key,
    update_by_id_sql,
    usage_params,
    user_from_row,
    utc_day,
    video_job_from_row,
)

log = logging.getLogger(__name__)

_SQL_GET_USER = f"SELECT {USER_COLUMNS} FROM users WHERE user_id = ?"
_SQL_UPSERT_USER = f"""
INSERT INTO users (user_id, username, first_name, language_code, created_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (user_id) DO UPDATE SET
    username = excluded.username,
    first_name = excluded.first_name,
    language_code = excluded.language_code,
    is_blocked = 0
RETURNING {USER_COLUMNS}
"""
# The lowest id wins if two rows share a name (a stale one left by someone who gave it up).
_SQL_USER_BY_USERNAME = (
    f"SELECT {USER_COLUMNS} FROM users "
    "WHERE user_id > 0 AND lower(username) = lower(?) ORDER BY user_id LIMIT 1"
)
_SQL_ENSURE_USER = "INSERT INTO users (user_id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING"
# People only: a group's settings row (a negative chat id) is not a user. user_id is the rowid,
# so this is a range of the table itself.
_SQL_COUNT_USERS = "SELECT COUNT(*) FROM users WHERE user_id > 0"
# The ids travel as one JSON array, so any number of them is one statement (no limit on bound
# variables, one implicit transaction). Rows already in the wanted state are not rewritten.
_SQL_SET_USERS_BLOCKED = """
UPDATE users SET is_blocked = ?1
WHERE user_id IN (SELECT value FROM json_each(?2)) AND is_blocked != ?1
"""
_SQL_COUNT_BROADCAST_RECIPIENTS = "SELECT COUNT(*) FROM users WHERE user_id > 0 AND is_blocked = 0"
# user_id is the rowid, so "after the cursor" is a range scan of the table itself; the cursor
# is a user id rather than an offset, so users arriving or blocking mid-broadcast shift nothing.
# The cursor is never below 0 (broadcast_recipients clamps it), so groups' rows are never read.
_SQL_BROADCAST_RECIPIENTS = (
    "SELECT user_id FROM users WHERE user_id > ? AND is_blocked = 0 ORDER BY user_id LIMIT ?"
)

_SQL_ACTIVE_CONVERSATION = (
    "SELECT id FROM conversations WHERE chat_id = ? AND thread_id = ? ORDER BY id DESC LIMIT 1"
)
# Creates the first conversation only if none exists, in the same statement as the check, so
# concurrent first uses of a chat cannot create two.
_SQL_CREATE_FIRST_CONVERSATION = """
INSERT INTO conversations (chat_id, thread_id, created_at)
SELECT ?, ?, ?
WHERE NOT EXISTS (SELECT 1 FROM conversations WHERE chat_id = ? AND thread_id = ?)
RETURNING id
"""
_SQL_NEW_CONVERSATION = (
    "INSERT INTO conversations (chat_id, thread_id, created_at) VALUES (?, ?, ?) RETURNING id"
)

_SQL_ADD_EXCHANGE = """
INSERT INTO messages (conversation_id, user_id, role, content, tokens, status, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?)
"""
# Column order matches the StoredMessage fields so rows map positionally. Newest first so
# LIMIT keeps the newest; the caller reverses the (short) list.
_SQL_RECENT_MESSAGES = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT ?"
)
_SQL_RECENT_MESSAGES_BEFORE = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND id < ? "
    "ORDER BY id DESC LIMIT ?"
)

_SQL_RECORD_USAGE = """
INSERT INTO usage_records
    (user_id, chat_id, model, prompt_tokens, completion_tokens, credits, energy, status,
     created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_USAGE_TOTALS = (
    "SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
    "COALESCE(SUM(credits), 0.0), COALESCE(SUM(energy), 0.0) "
    "FROM usage_records WHERE user_id = ?"
)
_SQL_USAGE_TOTAL = _USAGE_TOTALS
_SQL_USAGE_SINCE = _USAGE_TOTALS + " AND created_at >= ?"


def _namespace_sql(namespaces: Sequence[str]) -> str:
    """SQL giving a usage record's provider namespace: the part of ``model`` before the first
    ":" when it is one of ``namespaces`` (lower-cased, as the provider registry compares it)
    and something follows the colon; "" otherwise (a bare id of the primary provider, or an
    id such as an Ollama tag "qwen2.5:7b" whose prefix names no provider)."""
    for name in namespaces:
        # Inlined rather than bound so the statement text is fixed; only plain names allowed.
        if not (name.isascii() and name.isalpha() and name.islower()):
            raise ValueError(f"bad provider namespace {name!r}")
    names = ", ".join(f"'{name}'" for name in namespaces)
    prefix = "lower(substr(model, 1, instr(model, ':') - 1))"
    return (
        f"CASE WHEN instr(model, ':') > 1 AND length(model) > instr(model, ':') "
        f"AND {prefix} IN ({names}) THEN {prefix} ELSE '' END"
    )


# SUM (not TOTAL) keeps NULL for a group none of whose records carried credits or energy, so
# /usage can leave out a unit the provider has no figures for. A user's rows are a range of the
# (user_id, created_at) index; the grouping sorts at most a few namespaces' worth of rows.
_USAGE_BY_PROVIDER = f"""
SELECT {_namespace_sql(USAGE_NAMESPACES)} AS provider,
       COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),
       SUM(credits), SUM(energy)
FROM usage_records WHERE user_id = ?"""
_USAGE_BY_PROVIDER_GROUPS = " GROUP BY provider ORDER BY provider"
_SQL_USAGE_BY_PROVIDER_TOTAL = _USAGE_BY_PROVIDER + _USAGE_BY_PROVIDER_GROUPS
_SQL_USAGE_BY_PROVIDER_SINCE = (
    _USAGE_BY_PROVIDER + " AND created_at >= ?" + _USAGE_BY_PROVIDER_GROUPS
)

_SQL_CREATE_VIDEO_JOB = f"""
INSERT INTO video_jobs
    (user_id, chat_id, thread_id, model, prompt, lang, state, progress_message_id,
     created_at, updated_at, kind, owner)
VALUES (?, ?, ?, ?, ?, ?, 'submitting', ?, ?, ?, ?, ?)
RETURNING {VIDEO_COLUMNS}
"""
# The same, only while the user has fewer than ? active jobs: counted and stored in one
# statement (SQLite runs one writer at a time), no row when the user is at the limit.
_SQL_CREATE_VIDEO_JOB_WITHIN = f"""
INSERT INTO video_jobs
    (user_id, chat_id, thread_id, model, prompt, lang, state, progress_message_id,
     created_at, updated_at, kind, owner)
SELECT ?, ?, ?, ?, ?, ?, 'submitting', ?, ?, ?, ?, ?
WHERE (SELECT COUNT(*) FROM video_jobs WHERE user_id = ? AND {ACTIVE_VIDEO_STATES_SQL}) < ?
RETURNING {VIDEO_COLUMNS}
"""
_SQL_ACTIVE_VIDEO_JOBS = (
    f"SELECT {VIDEO_COLUMNS} FROM video_jobs WHERE {ACTIVE_VIDEO_STATES_SQL} ORDER BY id"
)
_SQL_COUNT_ACTIVE_VIDEO_JOBS = (
    f"SELECT COUNT(*) FROM video_jobs WHERE user_id = ? AND {ACTIVE_VIDEO_STATES_SQL}"
)
_SQL_GET_VIDEO_JOB = f"SELECT {VIDEO_COLUMNS} FROM video_jobs WHERE id = ?"

_SQL_CREATE_BROADCAST = f"""
INSERT INTO broadcasts
    (admin_id, from_chat_id, message_id, lang, state, total, progress_message_id,
     created_at, updated_at, owner)
VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)
RETURNING {BROADCAST_COLUMNS}
"""
_SQL_GET_BROADCAST = f"SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE id = ?"
_SQL_RUNNING_BROADCASTS = (
    f"SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE {RUNNING_BROADCAST_SQL} ORDER BY id"
)

_DAY = 86400.0
# Every figure but the top models and the refusals in one statement (one snapshot, one round
# trip). Each subquery is a range of an index from migration 3 (or of the users table's rowid)
# except the month's tokens and credits and the active groups, which must read the table rows,
# and the blocked count, a scan of the (small) users table. People have positive ids; the
# rows with negative ids are groups' settings (their chat ids), counted apart.
_SQL_STATISTICS = """
WITH month AS (
    SELECT COUNT(*) AS requests,
           COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS tokens,
           TOTAL(credits) AS credits  -- TOTAL skips NULL and is 0.0 over no rows
    FROM usage_records WHERE created_at >= :month
)
SELECT
    (SELECT COUNT(*) FROM users WHERE user_id > 0),
    (SELECT COUNT(*) FROM users WHERE user_id > 0 AND is_blocked != 0),
    (SELECT COUNT(*) FROM users WHERE created_at >= :day AND user_id > 0),
    (SELECT COUNT(*) FROM users WHERE created_at >= :week AND user_id > 0),
    (SELECT COUNT(DISTINCT user_id) FROM usage_records WHERE created_at >= :day),
    (SELECT COUNT(DISTINCT user_id) FROM usage_records WHERE created_at >= :week),
    (SELECT COUNT(DISTINCT user_id) FROM usage_records WHERE created_at >= :month),
    (SELECT COUNT(*) FROM usage_records WHERE created_at >= :day),
    (SELECT COUNT(*) FROM usage_records WHERE created_at >= :week),
    month.requests,
    month.tokens,
    month.credits,
    (SELECT COUNT(*) FROM users WHERE user_id < 0),
    (SELECT COUNT(*) FROM users WHERE user_id < 0 AND is_blocked != 0),
    (SELECT COUNT(DISTINCT chat_id) FROM usage_records WHERE created_at >= :day AND chat_id < 0),
    (SELECT COUNT(DISTINCT chat_id) FROM usage_records WHERE created_at >= :week AND chat_id < 0)
FROM month
"""
_TOP_MODELS = 5
# SQLite groups by sorting, so on a big database this is the slow part of the statistics.
_SQL_TOP_MODELS = f"""
SELECT model, COUNT(*) AS requests FROM usage_records WHERE created_at >= ?
GROUP BY model ORDER BY requests DESC, model LIMIT {_TOP_MODELS}
"""
# Questions refused before reaching a provider, per reason: today and over 30 days. The days
# are "YYYY-MM-DD" (UTC) strings, so the range is a range of the (day, reason) primary key.
_SQL_REFUSALS = """
SELECT reason,
       COALESCE(SUM(CASE WHEN day >= :today THEN count ELSE 0 END), 0),
       COALESCE(SUM(count), 0)
FROM refusals WHERE day >= :month
GROUP BY reason ORDER BY reason
"""

# ----------------------------------------------------------------------------- update journal
# Each is one statement (see the module docstring). The id is the primary key, so recording an
# update and detecting a duplicate are the same atomic INSERT.
_SQL_JOURNAL_RECORD = """
INSERT INTO update_journal (update_id, payload, created_at, owner) VALUES (?, ?, ?, ?)
ON CONFLICT (update_id) DO NOTHING
RETURNING update_id
"""
_SQL_JOURNAL_FINISH = (
    "UPDATE update_journal SET finished_at = ?, payload = NULL "
    "WHERE update_id = ? AND finished_at IS NULL"
)
_SQL_JOURNAL_RESET_REPLAYS = (
    "UPDATE update_journal SET replays = 0 WHERE update_id = ? AND finished_at IS NULL"
)
# Must be the exact text of the partial index's WHERE clause (migration 4).
_SQL_JOURNAL_UNFINISHED = (
    "SELECT update_id, payload, replays, created_at FROM update_journal "
    "WHERE finished_at IS NULL ORDER BY update_id"
)
_SQL_JOURNAL_BEGIN_REPLAY = """
UPDATE update_journal SET replays = replays + 1
WHERE update_id = ? AND finished_at IS NULL AND replays = 0
RETURNING update_id
"""
# In bounded batches, so a day of rows never holds the database's one worker thread for long.
_SQL_JOURNAL_PRUNE = """
DELETE FROM update_journal WHERE update_id IN (
    SELECT update_id FROM update_journal
    WHERE finished_at IS NOT NULL AND finished_at < ? LIMIT ?
)
"""


# ------------------------------------------------------------------ replicas and ownership
_SQL_REPLICA_BEAT = """
INSERT INTO replicas (id, started_at, seen_at) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at
"""
_SQL_REPLICA_LEAVE = "DELETE FROM replicas WHERE id = ?"
# Who is dead: no heartbeat since `alive_since` (or no row at all), or nobody (NULL).
_SQL_ORPHANS = """
SELECT {key}, owner FROM {table} WHERE {active}
AND (owner IS NULL OR (owner <> ? AND owner NOT IN (SELECT id FROM replicas WHERE seen_at >= ?)))
ORDER BY {key}
"""
# The claim is conditional on the owner seen by the scan: of two replicas claiming one row,
# exactly one changes it. A broadcast's copies started but not counted by the dead owner are
# counted failed (at-most-once: they may or may not have arrived; none is sent again).
_SQL_CLAIM = "UPDATE {table} SET owner = ?{extra} WHERE {key} = ? AND {active} AND owner IS ?"
_CLAIM_EXTRA = {
    "broadcasts": ", failed = failed + MAX(attempted - delivered - blocked - failed, 0)",
}
_SQL_OWNS = "SELECT 1 FROM {table} WHERE {key} = ? AND owner = ?"
_SQL_RELEASE = "UPDATE {table} SET owner = NULL WHERE {active} AND owner = ?"
_SQL_ADVANCE_BROADCAST = f"""
UPDATE broadcasts
SET cursor = ?, attempted = ?, delivered = ?, blocked = ?, failed = ?, updated_at = ?
WHERE id = ? AND owner = ? AND {RUNNING_BROADCAST_SQL}
RETURNING {BROADCAST_COLUMNS}
"""
_SQL_REQUEST_BROADCAST_STOP = f"""
UPDATE broadcasts SET state = 'stopped', finished_at = ?, updated_at = ?
WHERE id = ? AND {RUNNING_BROADCAST_SQL}
"""
_SQL_JOURNAL_ENTRY = (
    "SELECT update_id, payload, replays, created_at FROM update_journal "
    "WHERE update_id = ? AND finished_at IS NULL"
)


_SQL_ACCESS_LIST = (
    "SELECT subject_id, allowed, banned, ban_noticed FROM access_list "
    "WHERE allowed != 0 OR banned != 0 ORDER BY subject_id"
)
_SQL_SET_ACCESS_ALLOWED = """
INSERT INTO access_list (subject_id, allowed, updated_at) VALUES (?, ?, ?)
ON CONFLICT (subject_id) DO UPDATE SET
    allowed = excluded.allowed, updated_at = excluded.updated_at
"""
# A new ban (or an unban) forgets the old notice: the next ban is told once again.
_SQL_SET_ACCESS_BANNED = """
INSERT INTO access_list (subject_id, banned, ban_noticed, updated_at) VALUES (?, ?, 0, ?)
ON CONFLICT (subject_id) DO UPDATE SET
    banned = excluded.banned, ban_noticed = 0, updated_at = excluded.updated_at
"""
_SQL_MARK_BAN_NOTICED = (
    "UPDATE access_list SET ban_noticed = 1 WHERE subject_id = ? AND banned != 0"
)
# Must repeat the WHERE clause of users_daily_limit_idx (migration 7) to read only that index.
_SQL_DAILY_LIMIT_OVERRIDES = (
    "SELECT user_id, daily_requests_limit FROM users WHERE daily_requests_limit IS NOT NULL"
)
_SQL_SET_DAILY_REQUESTS_LIMIT = """
INSERT INTO users (user_id, created_at, daily_requests_limit) VALUES (?, ?, ?)
ON CONFLICT (user_id) DO UPDATE SET daily_requests_limit = excluded.daily_requests_limit
"""
# A range of usage_records_user_time_idx; the rows are read for status and tokens (a day of
# one user's records: a handful to a few hundred).
_SQL_QUOTA_USAGE = (
    "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_records "
    "WHERE user_id = ? AND created_at >= ? AND status != 'error'"
)
_SQL_COUNT_REFUSAL = """
INSERT INTO refusals (day, reason, count) VALUES (?, ?, 1)
ON CONFLICT (day, reason) DO UPDATE SET count = refusals.count + 1
"""


class SQLiteStorage:
    """``Storage`` backed by one SQLite file (or ``:memory:``) through one aiosqlite connection."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_ms: int = 5000,
        cache_size_kib: int = 65536,
        clock: Callable[[], float] = time.time,
        migrations: tuple[Migration, ...] = MIGRATIONS,
    ) -> None:
        self._path = str(path)
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._cache_size_kib = int(cache_size_kib)
        self._clock = clock
        self._migrations = migrations
        self._db: aiosqlite.Connection | None = None
        # The statistics' read-only connection, opened on first use (most runs never need it).
        self._stats_db: aiosqlite.Connection | None = None
        self._stats_lock = asyncio.Lock()

    @property
    def path(self) -> str:
        return self._path

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("storage is not connected; call connect() first")
        return self._db

    # ----------------------------------------------------------------------------- lifecycle

    async def connect(self) -> None:
        if self._db is not None:
            return
        # isolation_level=None: no implicit BEGINs from the sqlite3 module; single statements
        # autocommit and the only explicit transactions are the migrations'.
        db = await aiosqlite.connect(
            self._path, isolation_level=None, timeout=self._busy_timeout_ms / 1000
        )
        try:
            rows = list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
            journal_mode = str(rows[0][0]).lower()
            if journal_mode != "wal" and self._path != ":memory:":
                log.warning("storage: WAL not available, journal_mode=%s", journal_mode)
            # WAL + NORMAL: commits survive process crashes; only an OS crash / power loss can
            # lose the last transactions, never corrupt the database. Good trade for chat history.
            await db.execute_fetchall("PRAGMA synchronous = NORMAL")
            await db.execute_fetchall(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            await db.execute_fetchall("PRAGMA foreign_keys = ON")
            await db.execute_fetchall(f"PRAGMA cache_size = {-self._cache_size_kib}")
            await db.execute_fetchall("PRAGMA temp_store = MEMORY")
            version = await migrate(db, self._migrations)
        except BaseException:
            await db.close()
            raise
        self._db = db
        log.info(
            "storage: sqlite %s opened %s (schema version %d)",
            sqlite3.sqlite_version,
            self._path,
            version,
        )

    async def close(self) -> None:
        stats_db, self._stats_db = self._stats_db, None
        if stats_db is not None:
            try:
                await stats_db.close()
            except sqlite3.Error:
                log.warning("storage: closing the statistics connection failed", exc_info=True)
        db, self._db = self._db, None
        if db is None:
            return
        try:
            # Keeps planner statistics fresh; analysis_limit bounds the cost on big tables.
            await db.execute_fetchall("PRAGMA analysis_limit = 400")
            await db.execute_fetchall("PRAGMA optimize")
        except sqlite3.Error:
            log.warning("storage: PRAGMA optimize failed on close", exc_info=True)
        finally:
            await db.close()

    # --------------------------------------------------------------------------------- users

    async def get_user(self, user_id: int) -> UserRecord | None:
        rows = await self._conn.execute_fetchall(_SQL_GET_USER, (user_id,))
        for row in rows:
            return user_from_row(row)
        return None

    async def upsert_user(
        self,
        user_id: int,
        *,
        username: str | None,
        first_name: str | None,
        language_code: str | None,
    ) -> UserRecord:
        # Called for every incoming update: skip the write (and its WAL frame) when nothing
        # changed. An update from the user also proves they have not blocked the bot.
        current = await self.get_user(user_id)
        if (
            current is not None
            and current.username == username
            and current.first_name == first_name
            and current.language_code == language_code
            and not current.is_blocked
        ):
            return current
        rows = list(
            await self._conn.execute_fetchall(
                _SQL_UPSERT_USER,
                (user_id, username, first_name, language_code, self._clock()),
            )
        )
        return user_from_row(rows[0])

    async def update_user_settings(self, user_id: int, **fields: Any) -> UserRecord:
        values = {name: check_setting(name, value) for name, value in fields.items()}
        now = self._clock()
        if not values:
            await self._conn.execute_fetchall(_SQL_ENSURE_USER, (user_id, now))
            user = await self.get_user(user_id)
            assert user is not None  # just ensured
            return user
        # Column names come from the USER_SETTING_FIELDS whitelist (checked above), never from
        # user input, so building the column list is safe. A missing user is created bare
        # rather than failing: settings must never be silently dropped.
        names = sorted(values)
        columns = ", ".join(names)
        placeholders = ", ".join("?" for _ in names)
        assignments = ", ".join(f"{name} = excluded.{name}" for name in names)
        sql = (
            f"INSERT INTO users (user_id, created_at, {columns}) VALUES (?, ?, {placeholders}) "
            f"ON CONFLICT (user_id) DO UPDATE SET {assignments} RETURNING {USER_COLUMNS}"
        )
        params = (user_id, now, *(values[name] for name in names))
        rows = list(await self._conn.execute_fetchall(sql, params))
        return user_from_row(rows[0])

    async def reset_user_settings(self, user_id: int) -> UserRecord:
        return await self.update_user_settings(user_id, **dict.fromkeys(RESETTABLE_USER_SETTINGS))

    async def count_users(self) -> int:
        rows = list(await self._conn.execute_fetchall(_SQL_COUNT_USERS))
        return int(rows[0][0])

    # ------------------------------------------------------------------------- conversations

    async def active_conversation(self, chat_id: int, thread_id: int | None) -> int:
        thread = thread_key(thread_id)
        conn = self._conn
        rows = list(await conn.execute_fetchall(_SQL_ACTIVE_CONVERSATION, (chat_id, thread)))
        if rows:
            return int(rows[0][0])
        rows = list(
            await conn.execute_fetchall(
                _SQL_CREATE_FIRST_CONVERSATION,
                (chat_id, thread, self._clock(), chat_id, thread),
            )
        )
        if not rows:
            # Another coroutine created it between our SELECT and INSERT.
            rows = list(await conn.execute_fetchall(_SQL_ACTIVE_CONVERSATION, (chat_id, thread)))
        return int(rows[0][0])

    async def active_history(
        self, chat_id: int, thread_id: int | None, limit: int
    ) -> tuple[int, list[StoredMessage]]:
        # In-process: two statements cost no more than one would.
        conversation_id = await self.active_conversation(chat_id, thread_id)
        return conversation_id, await self.recent_messages(conversation_id, limit)

    async def new_conversation(self, chat_id: int, thread_id: int | None) -> int:
        rows = list(
            await self._conn.execute_fetchall(
                _SQL_NEW_CONVERSATION, (chat_id, thread_key(thread_id), self._clock())
            )
        )
        return int(rows[0][0])

    # ------------------------------------------------------------------------------ messages

    async def add_exchange(
        self,
        conversation_id: int,
        user_message: StoredMessage,
        assistant_message: StoredMessage,
        usage: UsageRecord | None = None,
    ) -> None:
        if usage is not None:
            # Its own statement, first: what record_usage() then add_exchange() would do (one
            # process; a crash between the two leaves the usage counted, as it did before).
            await self.record_usage(usage)
        now = self._clock()
        params: list[Any] = []
        for message in (user_message, assistant_message):
            params += (
                conversation_id,
                message.user_id,
                message.role,
                message.content,
                message.tokens,
                message.status,
                now if message.created_at is None else message.created_at,
            )
        # One statement → one implicit transaction: a failing second row (constraint, foreign
        # key) aborts the whole statement, so the first row is never left behind. Rows get
        # increasing ids in VALUES order, keeping the user message before the answer.
        await self._conn.execute_fetchall(_SQL_ADD_EXCHANGE, params)

    async def recent_messages(
        self, conversation_id: int, limit: int, before_id: int | None = None
    ) -> list[StoredMessage]:
        if limit <= 0:
            return []  # SQLite treats a negative LIMIT as "no limit"
        if before_id is None:
            rows = await self._conn.execute_fetchall(_SQL_RECENT_MESSAGES, (conversation_id, limit))
        else:
            rows = await self._conn.execute_fetchall(
                _SQL_RECENT_MESSAGES_BEFORE, (conversation_id, before_id, limit)
            )
        messages = [StoredMessage(*row) for row in rows]
        messages.reverse()
        return messages

    # --------------------------------------------------------------------------------- usage

    async def record_usage(self, record: UsageRecord) -> None:
        await self._conn.execute_fetchall(_SQL_RECORD_USAGE, usage_params(record, self._clock()))

    async def usage_summary(self, user_id: int, since: float | None = None) -> UsageSummary:
        if since is None:
            rows = list(await self._conn.execute_fetchall(_SQL_USAGE_TOTAL, (user_id,)))
        else:
            rows = list(await self._conn.execute_fetchall(_SQL_USAGE_SINCE, (user_id, since)))
        requests, prompt_tokens, completion_tokens, credits, energy = rows[0]
        return UsageSummary(
            requests=int(requests),
            prompt_tokens=int(prompt_tokens),
            completion_tokens=int(completion_tokens),
            credits=float(credits),
            energy=float(energy),
        )

    async def usage_by_provider(
        self, user_id: int, since: float | None = None
    ) -> tuple[ProviderUsage, ...]:
        if since is None:
            rows = await self._conn.execute_fetchall(_SQL_USAGE_BY_PROVIDER_TOTAL, (user_id,))
        else:
            rows = await self._conn.execute_fetchall(_SQL_USAGE_BY_PROVIDER_SINCE, (user_id, since))
        return provider_usage_from_rows(rows)

    # ---------------------------------------------------------------------------- video jobs

    async def create_video_job(
        self,
        *,
        user_id: int,
        chat_id: int,
        thread_id: int | None,
        model: str,
        prompt: str,
        lang: str,
        progress_message_id: int | None,
        kind: str = "video",
        owner: str | None = None,
        max_active: int | None = None,
    ) -> VideoJob:
        now = self._clock()
        params: tuple[Any, ...] = (user_id, chat_id, thread_id, model, prompt, lang)
        params += (progress_message_id, now, now, kind, owner)
        if max_active is None:
            rows = list(await self._conn.execute_fetchall(_SQL_CREATE_VIDEO_JOB, params))
        else:
            rows = list(
                await self._conn.execute_fetchall(
                    _SQL_CREATE_VIDEO_JOB_WITHIN, (*params, user_id, max_active)
                )
            )
            if not rows:
                raise ActiveJobsLimit(user_id)
        return video_job_from_row(rows[0])

    async def _update_by_id(
        self, table: str, columns: str, get_sql: str, row_id: int, values: dict[str, Any]
    ) -> Any:
        """The row after setting `values` (checked against a whitelist) and updated_at; read
        as it is when there is nothing to set. None: no such row."""
        if not values:
            rows = list(await self._conn.execute_fetchall(get_sql, (row_id,)))
        else:
            names = sorted(values)
            sql = update_by_id_sql(table, columns, names, lambda _: "?")
            params = (*(values[name] for name in names), self._clock(), row_id)
            rows = list(await self._conn.execute_fetchall(sql, params))
        return rows[0] if rows else None

    async def update_video_job(self, job_id: int, **fields: Any) -> VideoJob:
        values = {name: check_video_field(name, value) for name, value in fields.items()}
        row = await self._update_by_id(
            "video_jobs", VIDEO_COLUMNS, _SQL_GET_VIDEO_JOB, job_id, values
        )
        if row is None:
            raise LookupError(f"no video job with id {job_id}")
        return video_job_from_row(row)

    async def active_video_jobs(self) -> list[VideoJob]:
        rows = await self._conn.execute_fetchall(_SQL_ACTIVE_VIDEO_JOBS)
        return [video_job_from_row(row) for row in rows]

    async def count_active_video_jobs(self, user_id: int) -> int:
        rows = list(await self._conn.execute_fetchall(_SQL_COUNT_ACTIVE_VIDEO_JOBS, (user_id,)))
        return int(rows[0][0])

    # ----------------------------------------------------------------- admins: blocked users

    async def set_users_blocked(self, user_ids: Sequence[int], blocked: bool) -> None:
        ids = list(user_ids)
        if not ids:
            return
        for user_id in ids:
            # Checked here because a str would be dumped as a JSON string and match nobody.
            if isinstance(user_id, bool) or not isinstance(user_id, int):
                raise TypeError(f"user ids must be ints, got {type(user_id).__name__}")
        await self._conn.execute_fetchall(
            _SQL_SET_USERS_BLOCKED, (int(bool(blocked)), json.dumps(ids))
        )

    async def count_broadcast_recipients(self) -> int:
        rows = list(await self._conn.execute_fetchall(_SQL_COUNT_BROADCAST_RECIPIENTS))
        return int(rows[0][0])

    async def broadcast_recipients(self, after_user_id: int, limit: int) -> list[int]:
        if limit <= 0:
            return []  # SQLite treats a negative LIMIT as "no limit"
        # Groups' rows have negative ids: starting at 0 skips them in the same range scan.
        after = max(after_user_id, 0)
        rows = await self._conn.execute_fetchall(_SQL_BROADCAST_RECIPIENTS, (after, limit))
        return [int(row[0]) for row in rows]

    # ---------------------------------------------------------------------- admins: broadcasts

    async def create_broadcast(
        self,
        *,
        admin_id: int,
        from_chat_id: int,
        message_id: int,
        lang: str,
        total: int,
        progress_message_id: int | None,
        owner: str | None = None,
    ) -> Broadcast:
        now = self._clock()
        rows = list(
            await self._conn.execute_fetchall(
                _SQL_CREATE_BROADCAST,
                (
                    admin_id,
                    from_chat_id,
                    message_id,
                    lang,
                    total,
                    progress_message_id,
                    now,
                    now,
                    owner,
                ),
            )
        )
        return broadcast_from_row(rows[0])

    async def update_broadcast(self, broadcast_id: int, **fields: Any) -> Broadcast:
        values = {name: check_broadcast_field(name, value) for name, value in fields.items()}
        row = await self._update_by_id(
            "broadcasts", BROADCAST_COLUMNS, _SQL_GET_BROADCAST, broadcast_id, values
        )
        if row is None:
            raise LookupError(f"no broadcast with id {broadcast_id}")
        return broadcast_from_row(row)

    async def get_broadcast(self, broadcast_id: int) -> Broadcast | None:
        rows = await self._conn.execute_fetchall(_SQL_GET_BROADCAST, (broadcast_id,))
        for row in rows:
            return broadcast_from_row(row)
        return None

    async def running_broadcasts(self) -> list[Broadcast]:
        rows = await self._conn.execute_fetchall(_SQL_RUNNING_BROADCASTS)
        return [broadcast_from_row(row) for row in rows]

    # ---------------------------------------------------------------------- admins: statistics

    async def _stats_conn(self) -> aiosqlite.Connection:
        main = self._conn  # raises if not connected
        if self._path == ":memory:":
            # A second connection to ":memory:" would open a new, empty database. In-memory
            # databases are for tests and small tools, where sharing the connection is fine.
            return main
        async with self._stats_lock:
            if self._stats_db is None:
                db = await self._open_stats_connection(main)
                if self._db is not main:
                    # close() ran while this was opening; it would never close this one.
                    await db.close()
                    raise RuntimeError("storage is not connected; call connect() first")
                self._stats_db = db
            return self._stats_db

    async def _open_stats_connection(self, main: aiosqlite.Connection) -> aiosqlite.Connection:
        # The main connection reports the absolute file it opened, so the reader opens exactly
        # that file even if the path was relative and the working directory changed since.
        rows = list(await main.execute_fetchall("PRAGMA database_list"))
        filename = next(str(file) for _, name, file in rows if name == "main")
        # mode=ro: this connection can never write, so it never takes the write lock and in
        # WAL mode neither blocks the main connection nor waits for it. as_uri() escapes
        # characters such as "?" or "#" so they stay part of the file name.
        uri = Path(filename).as_uri() + "?mode=ro"
        db = await aiosqlite.connect(
            uri, uri=True, isolation_level=None, timeout=self._busy_timeout_ms / 1000
        )
        try:
            await db.execute_fetchall(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            await db.execute_fetchall(f"PRAGMA cache_size = {-self._cache_size_kib}")
        except BaseException:
            await db.close()
            raise
        log.info("storage: opened the read-only statistics connection")
        return db

    async def bot_statistics(self, now: float) -> BotStatistics:
        db = await self._stats_conn()
        periods = {"day": now - _DAY, "week": now - 7 * _DAY, "month": now - 30 * _DAY}
        rows = list(await db.execute_fetchall(_SQL_STATISTICS, periods))
        (
            users,
            blocked,
            new_day,
            new_week,
            active_day,
            active_week,
            active_month,
            requests_day,
            requests_week,
            requests_month,
            tokens_month,
            credits_month,
            groups,
            groups_left,
            groups_active_day,
            groups_active_week,
        ) = rows[0]
        top = await db.execute_fetchall(_SQL_TOP_MODELS, (periods["month"],))
        days = {"today": utc_day(now), "month": utc_day(now - 29 * _DAY)}
        refusals = await db.execute_fetchall(_SQL_REFUSALS, days)
        return BotStatistics(
            users=int(users),
            blocked_users=int(blocked),
            new_users_day=int(new_day),
            new_users_week=int(new_week),
            active_day=int(active_day),
            active_week=int(active_week),
            active_month=int(active_month),
            requests_day=int(requests_day),
            requests_week=int(requests_week),
            requests_month=int(requests_month),
            tokens_month=int(tokens_month),
            credits_month=float(credits_month),
            top_models=tuple(ModelUse(str(model), int(count)) for model, count in top),
            groups=int(groups),
            groups_left=int(groups_left),
            groups_active_day=int(groups_active_day),
            groups_active_week=int(groups_active_week),
            refusals=tuple(
                RefusalCount(str(reason), int(today), int(month))
                for reason, today, month in refusals
            ),
        )

    # ------------------------------------------------------------- answers: delivery marks

    async def set_answer_status(self, conversation_id: int, content: str, status: str) -> bool:
        # The conversation's messages are found through messages_conversation_idx; comparing
        # their content only happens on this rare path (a failed delivery).
        rows = list(
            await self._conn.execute_fetchall(
                "UPDATE messages SET status = ? WHERE id = ("
                "SELECT id FROM messages WHERE conversation_id = ? AND role = 'assistant' "
                "AND content = ? ORDER BY id DESC LIMIT 1) RETURNING id",
                (status, conversation_id, content),
            )
        )
        return bool(rows)

    # ------------------------------------------------------------------------ update journal

    async def journal_record(
        self, update_id: int, payload: str | None, owner: str | None = None
    ) -> bool:
        rows = list(
            await self._conn.execute_fetchall(
                _SQL_JOURNAL_RECORD, (update_id, payload, self._clock(), owner)
            )
        )
        return bool(rows)

    async def journal_finish(self, update_id: int) -> None:
        await self._conn.execute_fetchall(_SQL_JOURNAL_FINISH, (self._clock(), update_id))

    async def journal_reset_replays(self, update_id: int) -> None:
        await self._conn.execute_fetchall(_SQL_JOURNAL_RESET_REPLAYS, (update_id,))

    async def journal_unfinished(self) -> list[JournalEntry]:
        rows = await self._conn.execute_fetchall(_SQL_JOURNAL_UNFINISHED)
        return [
            JournalEntry(int(update_id), payload, int(replays), float(created))
            for update_id, payload, replays, created in rows
        ]

    async def journal_begin_replay(self, update_id: int) -> bool:
        rows = list(await self._conn.execute_fetchall(_SQL_JOURNAL_BEGIN_REPLAY, (update_id,)))
        return bool(rows)

    async def journal_prune(self, finished_before: float, limit: int) -> int:
        if limit <= 0:
            return 0  # SQLite treats a negative LIMIT as "no limit"
        async with self._conn.execute(_SQL_JOURNAL_PRUNE, (finished_before, limit)) as cursor:
            return max(0, cursor.rowcount)

    # ------------------------------------------------------------------ admins: one user

    async def user_by_username(self, username: str) -> UserRecord | None:
        # Only for an admin's /user: a scan of the users table (no index on lower(username)),
        # a few milliseconds even for a hundred thousand users. Telegram usernames are ASCII,
        # which SQLite's lower() folds.
        rows = await self._conn.execute_fetchall(_SQL_USER_BY_USERNAME, (username.lstrip("@"),))
        for row in rows:
            return user_from_row(row)
        return None

    # ------------------------------------------------------------------------ access control

    async def access_list(self) -> list[AccessEntry]:
        rows = await self._conn.execute_fetchall(_SQL_ACCESS_LIST)
        return [
            AccessEntry(int(subject), bool(allowed), bool(banned), bool(noticed))
            for subject, allowed, banned, noticed in rows
        ]

    async def set_access_allowed(self, subject_id: int, allowed: bool) -> None:
        await self._conn.execute_fetchall(
            _SQL_SET_ACCESS_ALLOWED, (subject_id, int(bool(allowed)), self._clock())
        )

    async def set_access_banned(self, subject_id: int, banned: bool) -> None:
        await self._conn.execute_fetchall(
            _SQL_SET_ACCESS_BANNED, (subject_id, int(bool(banned)), self._clock())
        )

    async def mark_ban_noticed(self, subject_id: int) -> None:
        await self._conn.execute_fetchall(_SQL_MARK_BAN_NOTICED, (subject_id,))

    async def daily_limit_overrides(self) -> dict[int, int]:
        rows = await self._conn.execute_fetchall(_SQL_DAILY_LIMIT_OVERRIDES)
        return {int(user_id): int(limit) for user_id, limit in rows}

    async def set_daily_requests_limit(self, user_id: int, limit: int | None) -> None:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"limit must be an int or None, got {type(limit).__name__}")
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0 (0 = unlimited)")
        await self._conn.execute_fetchall(
            _SQL_SET_DAILY_REQUESTS_LIMIT, (user_id, self._clock(), limit)
        )

    async def quota_usage(self, user_id: int, since: float) -> QuotaUsage:
        rows = list(await self._conn.execute_fetchall(_SQL_QUOTA_USAGE, (user_id, since)))
        requests, tokens = rows[0]
        return QuotaUsage(requests=int(requests), tokens=int(tokens))

    async def count_refusal(self, reason: str, day: str) -> None:
        if reason not in REFUSAL_REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        # str(): a StrEnum member is stored as its plain value.
        await self._conn.execute_fetchall(_SQL_COUNT_REFUSAL, (day, str(reason)))

    async def ping(self) -> None:
        await self._conn.execute_fetchall("SELECT 1")

    # ------------------------------------------------------------------ replicas and ownership

    async def replica_beat(self, replica_id: str) -> None:
        now = self._clock()
        await self._conn.execute_fetchall(_SQL_REPLICA_BEAT, (replica_id, now, now))

    async def replica_leave(self, replica_id: str) -> None:
        for table in OWNED_TABLES:
            _, active = owned_table(table)
            sql = _SQL_RELEASE.format(table=table, active=active)
            await self._conn.execute_fetchall(sql, (replica_id,))
        await self._conn.execute_fetchall(_SQL_REPLICA_LEAVE, (replica_id,))

    async def orphans(
        self, table: str, me: str, alive_since: float
    ) -> list[tuple[int, str | None]]:
        key, active = owned_table(table)
        sql = _SQL_ORPHANS.format(table=table, key=key, active=active)
        rows = await self._conn.execute_fetchall(sql, (me, alive_since))
        return [(int(row_id), owner) for row_id, owner in rows]

    async def claim(self, table: str, row_id: int, me: str, previous: str | None) -> bool:
        key, active = owned_table(table)
        extra = _CLAIM_EXTRA.get(table, "")
        sql = _SQL_CLAIM.format(table=table, key=key, active=active, extra=extra)
        async with self._conn.execute(sql, (me, row_id, previous)) as cursor:
            return cursor.rowcount == 1

    async def owns(self, table: str, row_id: int, me: str) -> bool:
        key, _ = owned_table(table)
        sql = _SQL_OWNS.format(table=table, key=key)
        return bool(list(await self._conn.execute_fetchall(sql, (row_id, me))))

    async def advance_broadcast(
        self,
        broadcast_id: int,
        owner: str,
        *,
        cursor: int,
        attempted: int,
        delivered: int,
        blocked: int,
        failed: int,
    ) -> Broadcast | None:
        rows = list(
            await self._conn.execute_fetchall(
                _SQL_ADVANCE_BROADCAST,
                (
                    cursor,
                    attempted,
                    delivered,
                    blocked,
                    failed,
                    self._clock(),
                    broadcast_id,
                    owner,
                ),
            )
        )
        return broadcast_from_row(rows[0]) if rows else None

    async def request_broadcast_stop(self, broadcast_id: int) -> bool:
        now = self._clock()
        async with self._conn.execute(
            _SQL_REQUEST_BROADCAST_STOP, (now, now, broadcast_id)
        ) as cursor:
            return cursor.rowcount == 1

    async def journal_entry(self, update_id: int) -> JournalEntry | None:
        rows = list(await self._conn.execute_fetchall(_SQL_JOURNAL_ENTRY, (update_id,)))
        if not rows:
            return None
        update, payload, replays, created = rows[0]
        return JournalEntry(int(update), payload, int(replays), float(created))
