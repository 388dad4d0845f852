"""PostgreSQL implementation of ``Storage`` on an asyncpg connection pool.

Same records and semantics as ``SQLiteStorage`` (thread ``None`` ≡ 0, newest-first paging
returned oldest-first, status strings, usage namespaces, journal dedupe): the schema comes from
the same migrations (services/storage/migrations.py), with BIGINT Telegram ids and unix-seconds
DOUBLE PRECISION timestamps, and the argument checks are SQLiteStorage's own.

Concurrency model: every public write is one statement (atomic on its own, autocommitted on
whichever pool connection runs it), except a chat's first conversation, whose "create unless one
exists" runs in a short transaction under an advisory lock on the chat, so concurrent first
uses (also from other processes) create one. ``journal_record`` is an INSERT … ON CONFLICT DO
NOTHING on the primary key, so of two deliveries of one update (to any process on this
database) exactly one is recorded; the journal's writes of concurrent updates share one
statement (services/storage/coalesce.py).

The admins' statistics run on their own pool connection in a read-only REPEATABLE READ
transaction (one snapshot for all figures), so the chat's queries never queue behind them.

The schema is the connection's ``search_path`` (``?search_path=name`` in the URL, passed to
the server by asyncpg), so several bots, or tests, can share one database in separate schemas.
Message contents and the URL (it may carry a password) are never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

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
from .coalesce import Coalescer
from .migrations import MIGRATIONS, Migration, migrate_postgres

# The row mapping and argument checks are SQLiteStorage's, so both backends accept and return
# exactly the same things.
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

# Advisory lock class for "creating the first conversation of a chat" (key 2: the chat).
_CONVERSATION_LOCK_CLASS = 0x4C4D4332  # "LMC2"
_VIDEO_LOCK_CLASS = 0x4C4D5631  # "LMV1": one user's new video jobs

_SQL_GET_USER = f"SELECT {USER_COLUMNS} FROM users WHERE user_id = $1"
_SQL_UPSERT_USER = f"""
INSERT INTO users (user_id, username, first_name, language_code, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (user_id) DO UPDATE SET
    username = excluded.username,
    first_name = excluded.first_name,
    language_code = excluded.language_code,
    is_blocked = 0
RETURNING {USER_COLUMNS}
"""
_SQL_USER_BY_USERNAME = (
    f"SELECT {USER_COLUMNS} FROM users "
    "WHERE user_id > 0 AND lower(username) = lower($1) ORDER BY user_id LIMIT 1"
)
_SQL_ENSURE_USER = "INSERT INTO users (user_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
_SQL_COUNT_USERS = "SELECT COUNT(*) FROM users WHERE user_id > 0"
_SQL_SET_USERS_BLOCKED = """
UPDATE users SET is_blocked = $1
WHERE user_id = ANY($2::bigint[]) AND is_blocked != $1
"""
_SQL_COUNT_BROADCAST_RECIPIENTS = "SELECT COUNT(*) FROM users WHERE user_id > 0 AND is_blocked = 0"
_SQL_BROADCAST_RECIPIENTS = (
    "SELECT user_id FROM users WHERE user_id > $1 AND is_blocked = 0 ORDER BY user_id LIMIT $2"
)

_SQL_ACTIVE_CONVERSATION = (
    "SELECT id FROM conversations WHERE chat_id = $1 AND thread_id = $2 ORDER BY id DESC LIMIT 1"
)
_SQL_LOCK_CHAT = "SELECT pg_advisory_xact_lock($1, hashtext($2::bigint::text))"
_SQL_NEW_CONVERSATION = (
    "INSERT INTO conversations (chat_id, thread_id, created_at) VALUES ($1, $2, $3) RETURNING id"
)

_SQL_ADD_EXCHANGE = """
INSERT INTO messages (conversation_id, user_id, role, content, tokens, status, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14)
"""
_SQL_RECENT_MESSAGES = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 ORDER BY id DESC LIMIT $2"
)
# The current conversation and its newest messages: no row before the first use, one row of
# NULL messages while it is empty.
_SQL_ACTIVE_HISTORY = f"""
SELECT c.id, m.* FROM (
    SELECT id FROM conversations WHERE chat_id = $1 AND thread_id = $2 ORDER BY id DESC LIMIT 1
) AS c
LEFT JOIN LATERAL (
    SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = c.id ORDER BY id DESC LIMIT $3
) AS m ON true
ORDER BY m.id DESC
"""
_SQL_RECENT_MESSAGES_BEFORE = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND id < $2 "
    "ORDER BY id DESC LIMIT $3"
)

_SQL_RECORD_USAGE = """
INSERT INTO usage_records
    (user_id, chat_id, model, prompt_tokens, completion_tokens, credits, energy, status,
     created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
# An exchange with its usage record: one statement, so all three rows or none.
_SQL_ADD_EXCHANGE_WITH_USAGE = f"""
WITH exchange AS ({_SQL_ADD_EXCHANGE.strip()})
INSERT INTO usage_records
    (user_id, chat_id, model, prompt_tokens, completion_tokens, credits, energy, status,
     created_at)
VALUES ($15, $16, $17, $18, $19, $20, $21, $22, $23)
"""
_USAGE_TOTALS = (
    "SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
    "COALESCE(SUM(credits), 0.0), COALESCE(SUM(energy), 0.0) "
    "FROM usage_records WHERE user_id = $1"
)
_SQL_USAGE_TOTAL = _USAGE_TOTALS
_SQL_USAGE_SINCE = _USAGE_TOTALS + " AND created_at >= $2"


# ------------------------------------------------------------------ replicas and ownership
# sqlite.py's statements in PostgreSQL's spelling (see OWNED_TABLES there).
_SQL_REPLICA_BEAT = """
INSERT INTO replicas (id, started_at, seen_at) VALUES ($1, $2, $2)
ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at
"""
_SQL_REPLICA_LEAVE = "DELETE FROM replicas WHERE id = $1"
_SQL_ORPHANS = """
SELECT {key}, owner FROM {table} WHERE {active}
AND (owner IS NULL
     OR (owner <> $1 AND owner NOT IN (SELECT id FROM replicas WHERE seen_at >= $2)))
ORDER BY {key}
"""
# Under READ COMMITTED a second claimer blocks on the row, then re-checks the WHERE clause on
# the row the first one committed: its owner no longer matches, so exactly one wins.
_SQL_CLAIM = (
    "UPDATE {table} SET owner = $1{extra} "
    "WHERE {key} = $2 AND {active} AND owner IS NOT DISTINCT FROM $3"
)
_CLAIM_EXTRA = {
    "broadcasts": ", failed = failed + GREATEST(attempted - delivered - blocked - failed, 0)",
}
_SQL_OWNS = "SELECT 1 FROM {table} WHERE {key} = $1 AND owner = $2"
_SQL_RELEASE = "UPDATE {table} SET owner = NULL WHERE {active} AND owner = $1"
_SQL_ADVANCE_BROADCAST = f"""
UPDATE broadcasts
SET cursor = $1, attempted = $2, delivered = $3, blocked = $4, failed = $5, updated_at = $6
WHERE id = $7 AND owner = $8 AND {RUNNING_BROADCAST_SQL}
RETURNING {BROADCAST_COLUMNS}
"""
_SQL_REQUEST_BROADCAST_STOP = f"""
UPDATE broadcasts SET state = 'stopped', finished_at = $1, updated_at = $1
WHERE id = $2 AND {RUNNING_BROADCAST_SQL}
"""
_SQL_JOURNAL_ENTRY = (
    "SELECT update_id, payload, replays, created_at FROM update_journal "
    "WHERE update_id = $1 AND finished_at IS NULL"
)


def _namespace_sql(namespaces: Sequence[str]) -> str:
    """PostgreSQL's spelling of sqlite._namespace_sql: the model id's part before the first
    ":" (lower-cased) when it is one of ``namespaces`` and something follows; "" otherwise."""
    for name in namespaces:
        if not (name.isascii() and name.isalpha() and name.islower()):
            raise ValueError(f"bad provider namespace {name!r}")
    names = ", ".join(f"'{name}'" for name in namespaces)
    prefix = "lower(split_part(model, ':', 1))"
    return (
        f"CASE WHEN strpos(model, ':') > 1 AND length(model) > strpos(model, ':') "
        f"AND {prefix} IN ({names}) THEN {prefix} ELSE '' END"
    )


# COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
_USAGE_BY_PROVIDER = f"""
SELECT {_namespace_sql(USAGE_NAMESPACES)} COLLATE "C" AS provider,
       COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),
       SUM(credits), SUM(energy)
FROM usage_records WHERE user_id = $1"""
_USAGE_BY_PROVIDER_GROUPS = " GROUP BY 1 ORDER BY 1"
_SQL_USAGE_BY_PROVIDER_TOTAL = _USAGE_BY_PROVIDER + _USAGE_BY_PROVIDER_GROUPS
_SQL_USAGE_BY_PROVIDER_SINCE = (
    _USAGE_BY_PROVIDER + " AND created_at >= $2" + _USAGE_BY_PROVIDER_GROUPS
)

_SQL_CREATE_VIDEO_JOB = f"""
INSERT INTO video_jobs
    (user_id, chat_id, thread_id, model, prompt, lang, state, progress_message_id,
     created_at, updated_at, kind, owner)
VALUES ($1, $2, $3, $4, $5, $6, 'submitting', $7, $8, $9, $10, $11)
RETURNING {VIDEO_COLUMNS}
"""
_SQL_ACTIVE_VIDEO_JOBS = (
    f"SELECT {VIDEO_COLUMNS} FROM video_jobs WHERE {ACTIVE_VIDEO_STATES_SQL} ORDER BY id"
)
_SQL_COUNT_ACTIVE_VIDEO_JOBS = (
    f"SELECT COUNT(*) FROM video_jobs WHERE user_id = $1 AND {ACTIVE_VIDEO_STATES_SQL}"
)
_SQL_GET_VIDEO_JOB = f"SELECT {VIDEO_COLUMNS} FROM video_jobs WHERE id = $1"

_SQL_CREATE_BROADCAST = f"""
INSERT INTO broadcasts
    (admin_id, from_chat_id, message_id, lang, state, total, progress_message_id,
     created_at, updated_at, owner)
VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8, $9)
RETURNING {BROADCAST_COLUMNS}
"""
_SQL_GET_BROADCAST = f"SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE id = $1"
_SQL_RUNNING_BROADCASTS = (
    f"SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE {RUNNING_BROADCAST_SQL} ORDER BY id"
)

_DAY = 86400.0
# $1 = a day ago, $2 = a week ago, $3 = 30 days ago. One statement: one snapshot.
_SQL_STATISTICS = """
WITH month AS (
    SELECT COUNT(*) AS requests,
           COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS tokens,
           COALESCE(SUM(credits), 0.0) AS credits
    FROM usage_records WHERE created_at >= $3
)
SELECT
    (SELECT COUNT(*) FROM users WHERE user_id > 0),
    (SELECT COUNT(*) FROM users WHERE user_id > 0 AND is_blocked != 0),
    (SELECT COUNT(*) FROM users WHERE created_at >= $1 AND user_id > 0),
    (SELECT COUNT(*) FROM users WHERE created_at >= $2 AND user_id > 0),
    (SELECT COUNT(DISTINCT user_id) FROM usage_records WHERE created_at >= $1),
    (SELECT COUNT(DISTINCT user_id) FROM usage_records WHERE created_at >= $2),
    (SELECT COUNT(DISTINCT user_id) FROM usage_records WHERE created_at >= $3),
    (SELECT COUNT(*) FROM usage_records WHERE created_at >= $1),
    (SELECT COUNT(*) FROM usage_records WHERE created_at >= $2),
    month.requests,
    month.tokens,
    month.credits,
    (SELECT COUNT(*) FROM users WHERE user_id < 0),
    (SELECT COUNT(*) FROM users WHERE user_id < 0 AND is_blocked != 0),
    (SELECT COUNT(DISTINCT chat_id) FROM usage_records WHERE created_at >= $1 AND chat_id < 0),
    (SELECT COUNT(DISTINCT chat_id) FROM usage_records WHERE created_at >= $2 AND chat_id < 0)
FROM month
"""
_TOP_MODELS = 5
_SQL_TOP_MODELS = f"""
SELECT model, COUNT(*) AS requests FROM usage_records WHERE created_at >= $1
GROUP BY model ORDER BY requests DESC, model COLLATE "C" LIMIT {_TOP_MODELS}
"""
_SQL_REFUSALS = """
SELECT reason,
       COALESCE(SUM(CASE WHEN day >= $1 THEN count ELSE 0 END), 0),
       COALESCE(SUM(count), 0)
FROM refusals WHERE day >= $2
GROUP BY reason ORDER BY reason COLLATE "C"
"""

_SQL_JOURNAL_RECORD = """
INSERT INTO update_journal (update_id, payload, created_at, owner)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::text[])
ON CONFLICT (update_id) DO NOTHING
RETURNING update_id
"""
_SQL_JOURNAL_FINISH = (
    "UPDATE update_journal SET finished_at = $1, payload = NULL "
    "WHERE update_id = ANY($2::bigint[]) AND finished_at IS NULL"
)
_SQL_JOURNAL_RESET_REPLAYS = (
    "UPDATE update_journal SET replays = 0 WHERE update_id = $1 AND finished_at IS NULL"
)
_SQL_JOURNAL_UNFINISHED = (
    "SELECT update_id, payload, replays, created_at FROM update_journal "
    "WHERE finished_at IS NULL ORDER BY update_id"
)
_SQL_JOURNAL_BEGIN_REPLAY = """
UPDATE update_journal SET replays = replays + 1
WHERE update_id = $1 AND finished_at IS NULL AND replays = 0
RETURNING update_id
"""
_SQL_JOURNAL_PRUNE = """
DELETE FROM update_journal WHERE update_id IN (
    SELECT update_id FROM update_journal
    WHERE finished_at IS NOT NULL AND finished_at < $1 LIMIT $2
)
"""

_SQL_SET_ANSWER_STATUS = """
UPDATE messages SET status = $1 WHERE id = (
    SELECT id FROM messages WHERE conversation_id = $2 AND role = 'assistant'
    AND content = $3 ORDER BY id DESC LIMIT 1
) RETURNING id
"""

_SQL_ACCESS_LIST = (
    "SELECT subject_id, allowed, banned, ban_noticed FROM access_list "
    "WHERE allowed != 0 OR banned != 0 ORDER BY subject_id"
)
_SQL_SET_ACCESS_ALLOWED = """
INSERT INTO access_list (subject_id, allowed, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (subject_id) DO UPDATE SET
    allowed = excluded.allowed, updated_at = excluded.updated_at
"""
_SQL_SET_ACCESS_BANNED = """
INSERT INTO access_list (subject_id, banned, ban_noticed, updated_at) VALUES ($1, $2, 0, $3)
ON CONFLICT (subject_id) DO UPDATE SET
    banned = excluded.banned, ban_noticed = 0, updated_at = excluded.updated_at
"""
_SQL_MARK_BAN_NOTICED = (
    "UPDATE access_list SET ban_noticed = 1 WHERE subject_id = $1 AND banned != 0"
)
_SQL_DAILY_LIMIT_OVERRIDES = (
    "SELECT user_id, daily_requests_limit FROM users WHERE daily_requests_limit IS NOT NULL"
)
_SQL_SET_DAILY_REQUESTS_LIMIT = """
INSERT INTO users (user_id, created_at, daily_requests_limit) VALUES ($1, $2, $3)
ON CONFLICT (user_id) DO UPDATE SET daily_requests_limit = excluded.daily_requests_limit
"""
_SQL_QUOTA_USAGE = (
    "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_records "
    "WHERE user_id = $1 AND created_at >= $2 AND status != 'error'"
)
_SQL_COUNT_REFUSAL = """
INSERT INTO refusals (day, reason, count) VALUES ($1, $2, 1)
ON CONFLICT (day, reason) DO UPDATE SET count = refusals.count + 1
"""


def _affected(status: str) -> int:
    """Rows a command touched, from asyncpg's status string ("DELETE 3")."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What a connection goes back to the pool with: as it is. asyncpg's default reset runs
    `RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); CLOSE ALL` after every use, a
    round trip that was a seventh of a replica's CPU on the scale-out benchmark. This backend
    sets nothing a later user could trip on: no session settings (the search path is fixed at
    connect for every connection alike), no LISTEN, no cursors, and only transaction-level
    advisory locks. An open transaction is still rolled back by asyncpg before this runs."""


class PostgresStorage:
    """``Storage`` backed by a PostgreSQL database through an asyncpg pool."""

    def __init__(
        self,
        dsn: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        command_timeout: float = 60.0,
        server_settings: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        migrations: tuple[Migration, ...] = MIGRATIONS,
    ) -> None:
        self._dsn = dsn
        self._min = int(min_connections)
        self._max = int(max_connections)
        self._command_timeout = command_timeout
        self._server_settings = dict(server_settings or {})
        self._clock = clock
        self._migrations = migrations
        self._pool_obj: asyncpg.Pool | None = None
        # Every update writes its journal row before it is handled and marks it finished
        # after: concurrent updates' writes share a statement (services/storage/coalesce.py).
        self._journal_records: Coalescer[tuple[int, str | None, str | None], bool] = Coalescer(
            self._journal_record_batch
        )
        self._journal_finishes: Coalescer[int, None] = Coalescer(self._journal_finish_batch)

    @property
    def _pool(self) -> asyncpg.Pool:
        if self._pool_obj is None:
            raise RuntimeError("storage is not connected; call connect() first")
        return self._pool_obj

    # ----------------------------------------------------------------------------- lifecycle

    async def connect(self) -> None:
        if self._pool_obj is not None:
            return
        pool = await asyncpg.create_pool(
            self._dsn,
            min_size=self._min,
            max_size=self._max,
            command_timeout=self._command_timeout,
            server_settings=self._server_settings or None,
            reset=_keep_session,
            # No idle-connection timer: asyncpg re-arms one on every release, a fifth of a
            # query's client CPU; the pool is small and its connections are worth keeping.
            max_inactive_connection_lifetime=0,
        )
        try:
            async with pool.acquire() as conn:
                version = await migrate_postgres(conn, self._migrations)
                server = conn.get_server_version()
                schema = await conn.fetchval("SELECT current_schema()")
        except BaseException:
            await pool.close()
            raise
        self._pool_obj = pool
        log.info(
            "storage: postgresql %d.%d schema %s (schema version %d)",
            server.major,
            server.minor,
            schema,
            version,
        )

    async def close(self) -> None:
        await self._journal_records.wait_idle()
        await self._journal_finishes.wait_idle()
        pool, self._pool_obj = self._pool_obj, None
        if pool is not None:
            await pool.close()

    # --------------------------------------------------------------------------------- users

    async def get_user(self, user_id: int) -> UserRecord | None:
        row = await self._pool.fetchrow(_SQL_GET_USER, user_id)
        return None if row is None else user_from_row(row)

    async def upsert_user(
        self,
        user_id: int,
        *,
        username: str | None,
        first_name: str | None,
        language_code: str | None,
    ) -> UserRecord:
        # Called for every incoming update: skip the write when nothing changed.
        current = await self.get_user(user_id)
        if (
            current is not None
            and current.username == username
            and current.first_name == first_name
            and current.language_code == language_code
            and not current.is_blocked
        ):
            return current
        row = await self._pool.fetchrow(
            _SQL_UPSERT_USER, user_id, username, first_name, language_code, self._clock()
        )
        assert row is not None  # RETURNING of an upsert
        return user_from_row(row)

    async def update_user_settings(self, user_id: int, **fields: Any) -> UserRecord:
        values = {name: check_setting(name, value) for name, value in fields.items()}
        now = self._clock()
        if not values:
            await self._pool.execute(_SQL_ENSURE_USER, user_id, now)
            user = await self.get_user(user_id)
            assert user is not None  # just ensured
            return user
        # Column names come from the USER_SETTING_FIELDS whitelist (checked above).
        names = sorted(values)
        columns = ", ".join(names)
        placeholders = ", ".join(f"${i}" for i in range(3, len(names) + 3))
        assignments = ", ".join(f"{name} = excluded.{name}" for name in names)
        sql = (
            f"INSERT INTO users (user_id, created_at, {columns}) VALUES ($1, $2, {placeholders}) "
            f"ON CONFLICT (user_id) DO UPDATE SET {assignments} RETURNING {USER_COLUMNS}"
        )
        row = await self._pool.fetchrow(sql, user_id, now, *(values[name] for name in names))
        assert row is not None
        return user_from_row(row)

    async def reset_user_settings(self, user_id: int) -> UserRecord:
        return await self.update_user_settings(user_id, **dict.fromkeys(RESETTABLE_USER_SETTINGS))

    async def count_users(self) -> int:
        return int(await self._pool.fetchval(_SQL_COUNT_USERS))

    # ------------------------------------------------------------------------- conversations

    async def active_conversation(self, chat_id: int, thread_id: int | None) -> int:
        thread = thread_key(thread_id)
        found = await self._pool.fetchval(_SQL_ACTIVE_CONVERSATION, chat_id, thread)
        if found is not None:
            return int(found)
        async with self._pool.acquire() as conn, conn.transaction():
            # Serialises first uses of this chat (in any process); the second one finds the
            # conversation the first created.
            await conn.execute(_SQL_LOCK_CHAT, _CONVERSATION_LOCK_CLASS, chat_id)
            found = await conn.fetchval(_SQL_ACTIVE_CONVERSATION, chat_id, thread)
            if found is None:
                found = await conn.fetchval(_SQL_NEW_CONVERSATION, chat_id, thread, self._clock())
        return int(found)

    async def active_history(
        self, chat_id: int, thread_id: int | None, limit: int
    ) -> tuple[int, list[StoredMessage]]:
        rows = await self._pool.fetch(_SQL_ACTIVE_HISTORY, chat_id, thread_key(thread_id), limit)
        if not rows:  # first use: created under the chat's lock
            return await self.active_conversation(chat_id, thread_id), []
        messages = [StoredMessage(*row[1:]) for row in rows if row[6] is not None]
        messages.reverse()
        return int(rows[0][0]), messages

    async def new_conversation(self, chat_id: int, thread_id: int | None) -> int:
        found = await self._pool.fetchval(
            _SQL_NEW_CONVERSATION, chat_id, thread_key(thread_id), self._clock()
        )
        return int(found)

    # ------------------------------------------------------------------------------ messages

    async def add_exchange(
        self,
        conversation_id: int,
        user_message: StoredMessage,
        assistant_message: StoredMessage,
        usage: UsageRecord | None = None,
    ) -> None:
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
        # One statement: both rows or neither (and the usage row with them); ids are drawn in
        # VALUES order.
        if usage is None:
            await self._pool.execute(_SQL_ADD_EXCHANGE, *params)
        else:
            await self._pool.execute(
                _SQL_ADD_EXCHANGE_WITH_USAGE, *params, *usage_params(usage, now)
            )

    async def recent_messages(
        self, conversation_id: int, limit: int, before_id: int | None = None
    ) -> list[StoredMessage]:
        if limit <= 0:
            return []
        if before_id is None:
            rows = await self._pool.fetch(_SQL_RECENT_MESSAGES, conversation_id, limit)
        else:
            rows = await self._pool.fetch(
                _SQL_RECENT_MESSAGES_BEFORE, conversation_id, before_id, limit
            )
        messages = [StoredMessage(*row) for row in rows]
        messages.reverse()
        return messages

    # --------------------------------------------------------------------------------- usage

    async def record_usage(self, record: UsageRecord) -> None:
        await self._pool.execute(_SQL_RECORD_USAGE, *usage_params(record, self._clock()))

    async def usage_summary(self, user_id: int, since: float | None = None) -> UsageSummary:
        if since is None:
            row = await self._pool.fetchrow(_SQL_USAGE_TOTAL, user_id)
        else:
            row = await self._pool.fetchrow(_SQL_USAGE_SINCE, user_id, since)
        assert row is not None  # an aggregate always has a row
        requests, prompt_tokens, completion_tokens, credits, energy = row
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
            rows = await self._pool.fetch(_SQL_USAGE_BY_PROVIDER_TOTAL, user_id)
        else:
            rows = await self._pool.fetch(_SQL_USAGE_BY_PROVIDER_SINCE, user_id, since)
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
            row = await self._pool.fetchrow(_SQL_CREATE_VIDEO_JOB, *params)
        else:
            async with self._pool.acquire() as conn, conn.transaction():
                # Serialises this user's new jobs (in any process): the second one counts the
                # first one's row.
                await conn.execute(_SQL_LOCK_CHAT, _VIDEO_LOCK_CLASS, user_id)
                if await conn.fetchval(_SQL_COUNT_ACTIVE_VIDEO_JOBS, user_id) >= max_active:
                    raise ActiveJobsLimit(user_id)
                row = await conn.fetchrow(_SQL_CREATE_VIDEO_JOB, *params)
        assert row is not None
        return video_job_from_row(row)

    async def _update_by_id(
        self, table: str, columns: str, get_sql: str, row_id: int, values: dict[str, Any]
    ) -> Any:
        """The row after setting `values` (checked against a whitelist) and updated_at; read
        as it is when there is nothing to set. None: no such row."""
        if not values:
            return await self._pool.fetchrow(get_sql, row_id)
        names = sorted(values)
        sql = update_by_id_sql(table, columns, names, lambda i: f"${i}")
        return await self._pool.fetchrow(
            sql, *(values[name] for name in names), self._clock(), row_id
        )

    async def update_video_job(self, job_id: int, **fields: Any) -> VideoJob:
        values = {name: check_video_field(name, value) for name, value in fields.items()}
        row = await self._update_by_id(
            "video_jobs", VIDEO_COLUMNS, _SQL_GET_VIDEO_JOB, job_id, values
        )
        if row is None:
            raise LookupError(f"no video job with id {job_id}")
        return video_job_from_row(row)

    async def active_video_jobs(self) -> list[VideoJob]:
        rows = await self._pool.fetch(_SQL_ACTIVE_VIDEO_JOBS)
        return [video_job_from_row(row) for row in rows]

    async def count_active_video_jobs(self, user_id: int) -> int:
        return int(await self._pool.fetchval(_SQL_COUNT_ACTIVE_VIDEO_JOBS, user_id))

    # ----------------------------------------------------------------- admins: blocked users

    async def set_users_blocked(self, user_ids: Sequence[int], blocked: bool) -> None:
        ids = list(user_ids)
        if not ids:
            return
        for user_id in ids:
            if isinstance(user_id, bool) or not isinstance(user_id, int):
                raise TypeError(f"user ids must be ints, got {type(user_id).__name__}")
        await self._pool.execute(_SQL_SET_USERS_BLOCKED, int(bool(blocked)), ids)

    async def count_broadcast_recipients(self) -> int:
        return int(await self._pool.fetchval(_SQL_COUNT_BROADCAST_RECIPIENTS))

    async def broadcast_recipients(self, after_user_id: int, limit: int) -> list[int]:
        if limit <= 0:
            return []
        after = max(after_user_id, 0)  # groups' rows have negative ids
        rows = await self._pool.fetch(_SQL_BROADCAST_RECIPIENTS, after, limit)
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
        row = await self._pool.fetchrow(
            _SQL_CREATE_BROADCAST,
            admin_id,
            from_chat_id,
            message_id,
            lang,
            total,
            progress_message_id,
            now,
            now,
            owner,
        )
        assert row is not None
        return broadcast_from_row(row)

    async def update_broadcast(self, broadcast_id: int, **fields: Any) -> Broadcast:
        values = {name: check_broadcast_field(name, value) for name, value in fields.items()}
        row = await self._update_by_id(
            "broadcasts", BROADCAST_COLUMNS, _SQL_GET_BROADCAST, broadcast_id, values
        )
        if row is None:
            raise LookupError(f"no broadcast with id {broadcast_id}")
        return broadcast_from_row(row)

    async def get_broadcast(self, broadcast_id: int) -> Broadcast | None:
        row = await self._pool.fetchrow(_SQL_GET_BROADCAST, broadcast_id)
        return None if row is None else broadcast_from_row(row)

    async def running_broadcasts(self) -> list[Broadcast]:
        rows = await self._pool.fetch(_SQL_RUNNING_BROADCASTS)
        return [broadcast_from_row(row) for row in rows]

    # ---------------------------------------------------------------------- admins: statistics

    async def bot_statistics(self, now: float) -> BotStatistics:
        day, week, month = now - _DAY, now - 7 * _DAY, now - 30 * _DAY
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            row = await conn.fetchrow(_SQL_STATISTICS, day, week, month)
            top = await conn.fetch(_SQL_TOP_MODELS, month)
            refusals = await conn.fetch(_SQL_REFUSALS, utc_day(now), utc_day(now - 29 * _DAY))
        assert row is not None
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
        ) = row
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
                RefusalCount(str(reason), int(today), int(month_count))
                for reason, today, month_count in refusals
            ),
        )

    # ------------------------------------------------------------- answers: delivery marks

    async def set_answer_status(self, conversation_id: int, content: str, status: str) -> bool:
        found = await self._pool.fetchval(_SQL_SET_ANSWER_STATUS, status, conversation_id, content)
        return found is not None

    # ------------------------------------------------------------------------ update journal

    async def journal_record(
        self, update_id: int, payload: str | None, owner: str | None = None
    ) -> bool:
        return await self._journal_records((update_id, payload, owner))

    async def _journal_record_batch(
        self, entries: list[tuple[int, str | None, str | None]]
    ) -> list[bool]:
        # An id twice in one batch (Telegram delivering it again at once): the first is the one.
        first: dict[int, int] = {}
        for index, (update_id, _, _) in enumerate(entries):
            first.setdefault(update_id, index)
        rows = [entries[index] for index in first.values()]
        now = self._clock()
        recorded = await self._pool.fetch(
            _SQL_JOURNAL_RECORD,
            [update_id for update_id, _, _ in rows],
            [payload for _, payload, _ in rows],
            [now] * len(rows),
            [owner for _, _, owner in rows],
        )
        new = {int(row[0]) for row in recorded}
        return [
            first[update_id] == index and update_id in new
            for index, (update_id, _, _) in enumerate(entries)
        ]

    async def journal_finish(self, update_id: int) -> None:
        await self._journal_finishes(update_id)

    async def _journal_finish_batch(self, update_ids: list[int]) -> list[None]:
        await self._pool.execute(_SQL_JOURNAL_FINISH, self._clock(), update_ids)
        return [None] * len(update_ids)

    async def journal_reset_replays(self, update_id: int) -> None:
        await self._pool.execute(_SQL_JOURNAL_RESET_REPLAYS, update_id)

    async def journal_unfinished(self) -> list[JournalEntry]:
        rows = await self._pool.fetch(_SQL_JOURNAL_UNFINISHED)
        return [
            JournalEntry(int(update_id), payload, int(replays), float(created))
            for update_id, payload, replays, created in rows
        ]

    async def journal_begin_replay(self, update_id: int) -> bool:
        found = await self._pool.fetchval(_SQL_JOURNAL_BEGIN_REPLAY, update_id)
        return found is not None

    async def journal_prune(self, finished_before: float, limit: int) -> int:
        if limit <= 0:
            return 0
        status = await self._pool.execute(_SQL_JOURNAL_PRUNE, finished_before, limit)
        return _affected(status)

    # ------------------------------------------------------------------ admins: one user

    async def user_by_username(self, username: str) -> UserRecord | None:
        row = await self._pool.fetchrow(_SQL_USER_BY_USERNAME, username.lstrip("@"))
        return None if row is None else user_from_row(row)

    # ------------------------------------------------------------------------ access control

    async def access_list(self) -> list[AccessEntry]:
        rows = await self._pool.fetch(_SQL_ACCESS_LIST)
        return [
            AccessEntry(int(subject), bool(allowed), bool(banned), bool(noticed))
            for subject, allowed, banned, noticed in rows
        ]

    async def set_access_allowed(self, subject_id: int, allowed: bool) -> None:
        await self._pool.execute(
            _SQL_SET_ACCESS_ALLOWED, subject_id, int(bool(allowed)), self._clock()
        )

    async def set_access_banned(self, subject_id: int, banned: bool) -> None:
        await self._pool.execute(
            _SQL_SET_ACCESS_BANNED, subject_id, int(bool(banned)), self._clock()
        )

    async def mark_ban_noticed(self, subject_id: int) -> None:
        await self._pool.execute(_SQL_MARK_BAN_NOTICED, subject_id)

    async def daily_limit_overrides(self) -> dict[int, int]:
        rows = await self._pool.fetch(_SQL_DAILY_LIMIT_OVERRIDES)
        return {int(user_id): int(limit) for user_id, limit in rows}

    async def set_daily_requests_limit(self, user_id: int, limit: int | None) -> None:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"limit must be an int or None, got {type(limit).__name__}")
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0 (0 = unlimited)")
        await self._pool.execute(_SQL_SET_DAILY_REQUESTS_LIMIT, user_id, self._clock(), limit)

    async def quota_usage(self, user_id: int, since: float) -> QuotaUsage:
        row = await self._pool.fetchrow(_SQL_QUOTA_USAGE, user_id, since)
        assert row is not None
        requests, tokens = row
        return QuotaUsage(requests=int(requests), tokens=int(tokens))

    async def count_refusal(self, reason: str, day: str) -> None:
        if reason not in REFUSAL_REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        await self._pool.execute(_SQL_COUNT_REFUSAL, day, str(reason))

    # ----------------------------------------------------------------------------- readiness

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    # ------------------------------------------------------------------ replicas and ownership

    async def replica_beat(self, replica_id: str) -> None:
        await self._pool.execute(_SQL_REPLICA_BEAT, replica_id, self._clock())

    async def replica_leave(self, replica_id: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            for table in OWNED_TABLES:
                _, active = owned_table(table)
                await conn.execute(_SQL_RELEASE.format(table=table, active=active), replica_id)
            await conn.execute(_SQL_REPLICA_LEAVE, replica_id)

    async def orphans(
        self, table: str, me: str, alive_since: float
    ) -> list[tuple[int, str | None]]:
        key, active = owned_table(table)
        sql = _SQL_ORPHANS.format(table=table, key=key, active=active)
        # An infinite horizon (one process: nobody else can be alive) is a valid float8.
        rows = await self._pool.fetch(sql, me, alive_since)
        return [(int(row_id), owner) for row_id, owner in rows]

    async def claim(self, table: str, row_id: int, me: str, previous: str | None) -> bool:
        key, active = owned_table(table)
        extra = _CLAIM_EXTRA.get(table, "")
        sql = _SQL_CLAIM.format(table=table, key=key, active=active, extra=extra)
        return _affected(await self._pool.execute(sql, me, row_id, previous)) == 1

    async def owns(self, table: str, row_id: int, me: str) -> bool:
        key, _ = owned_table(table)
        sql = _SQL_OWNS.format(table=table, key=key)
        return await self._pool.fetchval(sql, row_id, me) is not None

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
        row = await self._pool.fetchrow(
            _SQL_ADVANCE_BROADCAST,
            cursor,
            attempted,
            delivered,
            blocked,
            failed,
            self._clock(),
            broadcast_id,
            owner,
        )
        return None if row is None else broadcast_from_row(row)

    async def request_broadcast_stop(self, broadcast_id: int) -> bool:
        status = await self._pool.execute(_SQL_REQUEST_BROADCAST_STOP, self._clock(), broadcast_id)
        return _affected(status) == 1

    async def journal_entry(self, update_id: int) -> JournalEntry | None:
        row = await self._pool.fetchrow(_SQL_JOURNAL_ENTRY, update_id)
        if row is None:
            return None
        update, payload, replays, created = row
        return JournalEntry(int(update), payload, int(replays), float(created))
