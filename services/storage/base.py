"""Storage contract: record types and the ``Storage`` protocol every backend implements.

Nothing here knows about SQLite; a PostgreSQL backend implements the same protocol with the
same semantics (thread ``None`` ≡ 0, newest-first paging returned oldest-first, etc.).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

# Settings a user may change; anything else passed to update_user_settings is a bug in the caller.
USER_SETTING_FIELDS: frozenset[str] = frozenset(
    {
        "language",
        "model",
        "system_prompt",
        "temperature",
        "vision_model",
        "image_model",
        "tts_voice",
        "reply_mode",
    }
)
# /reset clears every setting except the interface language: a user who picked a language
# should not be thrown back to Telegram's guess by resetting the model or persona.
RESETTABLE_USER_SETTINGS: frozenset[str] = USER_SETTING_FIELDS - {"language"}
# How answers are delivered; None (NULL) means "auto" (voice in reply to voice, else text).
REPLY_MODES: tuple[str, ...] = ("text", "voice", "both")

# Video job lifecycle. "submitting" is stored BEFORE the upstream is called, so a crash while
# submitting leaves a visible row instead of a paid generation nobody knows about.
VIDEO_JOB_STATES: frozenset[str] = frozenset(
    {
        "submitting",
        "IN_QUEUE",
        "IN_PROGRESS",
        "COMPLETED",  # the upstream finished; the video is not delivered yet
        "FAILED",  # the upstream reported failure (reason = its text)
        "TIMEOUT",
        "ERROR",  # our side: the upstream rejected the submission, restart while submitting, …
        "DELIVERED",
    }
)
# Jobs that still need work from the bot (polling or delivery); they count against the
# per-user limit and are resumed after a restart.
ACTIVE_VIDEO_JOB_STATES: frozenset[str] = frozenset(
    {"submitting", "IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
)
# Fields update_video_job accepts; identity, owner and prompt never change after creation.
VIDEO_JOB_UPDATE_FIELDS: frozenset[str] = frozenset(
    {"request_id", "state", "url", "reason", "progress_message_id"}
)

# Broadcast lifecycle. "running" broadcasts are resumed after a restart from their cursor.
BROADCAST_STATES: frozenset[str] = frozenset({"running", "done", "stopped", "failed"})
# Fields update_broadcast accepts; who started it and what it copies never change.
BROADCAST_UPDATE_FIELDS: frozenset[str] = frozenset(
    {"state", "cursor", "delivered", "blocked", "failed", "progress_message_id", "finished_at"}
)


@dataclass(slots=True)
class UserRecord:
    user_id: int
    username: str | None
    first_name: str | None
    language_code: str | None  # from Telegram
    language: str | None  # user's override "ru"/"en" via /lang, None = follow Telegram
    model: str | None  # None = default model
    system_prompt: str | None  # None = default persona
    temperature: float | None  # None = provider default
    created_at: float  # unix time
    is_blocked: bool = False  # bot blocked by the user
    vision_model: str | None = None  # None = the bot's VISION_MODEL
    image_model: str | None = None  # None = the bot's IMAGE_MODEL
    tts_voice: str | None = None  # None = the bot's TTS_VOICE
    reply_mode: str | None = None  # one of REPLY_MODES; None = auto


@dataclass(frozen=True, slots=True)
class StoredMessage:
    role: str  # "user" | "assistant"
    content: str
    tokens: int  # estimated at insert time, so trimming never recounts
    status: str = "complete"  # "complete" | "stopped" | "interrupted"
    user_id: int | None = None
    id: int | None = None
    created_at: float | None = None


@dataclass(frozen=True, slots=True)
class UsageRecord:
    user_id: int
    chat_id: int
    model: str  # qualified: bare for the primary provider, "gigachat:…", "mashagpt:…"
    prompt_tokens: int
    completion_tokens: int
    credits: float | None  # VseGPT's cost of the request, when it reported one
    status: str  # "ok" | "stopped" | "interrupted" | "error"
    energy: float | None = None  # MashaGPT's billing unit, when it reported one


@dataclass(frozen=True, slots=True)
class UsageSummary:
    requests: int
    prompt_tokens: int
    completion_tokens: int
    credits: float
    energy: float = 0.0


# Model-id namespaces that name a provider other than the primary one. The same set as
# services.llm.provider.KNOWN_NAMESPACES (a unit test keeps them equal): storage groups usage by
# provider without importing the LLM layer. Lower-case letters only: they are inlined in SQL.
USAGE_NAMESPACES: tuple[str, ...] = ("gigachat", "mashagpt")


@dataclass(frozen=True, slots=True)
class ProviderUsage:
    """One provider's share of a user's usage records (see ``Storage.usage_by_provider``)."""

    # The model ids' namespace ("gigachat", "mashagpt"), also for a provider that is no longer
    # configured; "" for bare ids, which belong to the primary provider.
    provider: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    credits: float | None  # None: none of these records carried credits
    energy: float | None  # None: none of these records carried energy


@dataclass(frozen=True, slots=True)
class VideoJob:
    id: int
    user_id: int
    chat_id: int
    thread_id: int | None
    request_id: str | None  # the upstream's id; None until the submission was accepted
    model: str
    prompt: str
    lang: str  # the user's language when submitting, for the messages sent later
    state: str  # one of VIDEO_JOB_STATES
    progress_message_id: int | None
    url: str | None  # result URL once COMPLETED
    reason: str | None  # why it FAILED / ERRORed (upstream or our text; for admins and logs)
    created_at: float
    updated_at: float
    # What is made: "video", or "image" for a provider whose pictures come from a task API
    # (MashaGPT): the same resumable machinery, delivered as a photo.
    kind: str = "video"


@dataclass(frozen=True, slots=True)
class Broadcast:
    """One admin message copied to every user who has not blocked the bot."""

    id: int
    admin_id: int  # who started it
    from_chat_id: int  # the message that is copied: chat and id
    message_id: int
    lang: str  # the admin's language, for progress messages sent after a restart
    state: str  # one of BROADCAST_STATES
    total: int  # recipients counted when it started
    cursor: int  # a user id: every recipient with user_id <= cursor has been handled
    delivered: int
    blocked: int  # recipients who blocked the bot or no longer exist (marked is_blocked)
    failed: int  # other errors
    progress_message_id: int | None  # the admin's message showing progress
    created_at: float
    updated_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class ModelUse:
    model: str
    requests: int


@dataclass(frozen=True, slots=True)
class RefusalCount:
    """Questions refused for one reason (see the ``refusals`` table): today and in 30 days."""

    reason: str  # banned, not_allowed, flood, quota_requests, quota_tokens
    today: int  # the current UTC day
    month: int  # the last 30 UTC days, today included


@dataclass(frozen=True, slots=True)
class BotStatistics:
    """Figures for the admins' /stats; "active" means the user made a request (usage record).

    People are the rows of ``users`` with a positive id; a group's settings are stored there
    too, under the group's (negative) chat id, and are counted as groups, never as users."""

    users: int
    blocked_users: int
    new_users_day: int  # created in the last 24 h
    new_users_week: int  # created in the last 7 days
    active_day: int  # distinct users with a usage record in the last 24 h
    active_week: int
    active_month: int  # last 30 days
    requests_day: int
    requests_week: int
    requests_month: int
    tokens_month: int  # prompt + completion, last 30 days
    credits_month: float
    top_models: tuple[ModelUse, ...]  # last 30 days, most requests first, at most 5
    groups: int = 0  # groups the bot has a row for (it was used there)
    groups_left: int = 0  # of those, groups that removed the bot (their row is_blocked)
    groups_active_day: int = 0  # distinct group chats with a usage record in the last 24 h
    groups_active_week: int = 0
    refusals: tuple[RefusalCount, ...] = ()  # reasons with a refusal in 30 days, by name


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """An incoming update recorded before it was handled and not finished since."""

    update_id: int
    payload: str | None  # the update's JSON (message updates); None: nothing to replay
    replays: int  # start-up replays so far; an update is replayed at most once
    created_at: float  # unix time it was recorded


# ------------------------------------------------------------------------- access control
# Why a question was refused before reaching a provider (the ``refusals`` table's reasons).
REFUSAL_REASONS: frozenset[str] = frozenset(
    {"banned", "not_allowed", "flood", "quota_requests", "quota_tokens"}
)


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """A user or group an admin allowed or banned (a row of ``access_list``)."""

    subject_id: int  # a user id, or a group's (negative) chat id
    allowed: bool
    banned: bool
    ban_noticed: bool  # the banned user was told once; never again


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """What counts against a user's daily quota: the usage records that reached the user
    (every status but "error") since a moment."""

    requests: int
    tokens: int  # prompt + completion


class ActiveJobsLimit(Exception):
    """A user already has as many active video jobs as allowed (create_video_job)."""


@runtime_checkable
class Storage(Protocol):
    async def connect(self) -> None:
        """Open the database, configure it and apply pending migrations."""
        ...

    async def close(self) -> None: ...

    async def get_user(self, user_id: int) -> UserRecord | None: ...

    async def upsert_user(
        self,
        user_id: int,
        *,
        username: str | None,
        first_name: str | None,
        language_code: str | None,
    ) -> UserRecord:
        """Create the user or refresh the profile fields; settings are kept."""
        ...

    async def update_user_settings(self, user_id: int, **fields: Any) -> UserRecord:
        """Set any of USER_SETTING_FIELDS (None resets one); unknown key → ValueError.

        A missing user is created bare. reply_mode must be one of REPLY_MODES or None
        (ValueError otherwise); temperature is a number, the others are strings (TypeError).
        """
        ...

    async def reset_user_settings(self, user_id: int) -> UserRecord:
        """Every RESETTABLE_USER_SETTINGS field → None; language is kept."""
        ...

    async def active_conversation(self, chat_id: int, thread_id: int | None) -> int:
        """Id of the chat/thread's current conversation, created on first use."""
        ...

    async def new_conversation(self, chat_id: int, thread_id: int | None) -> int:
        """Start a new current conversation; the old one stays stored."""
        ...

    async def active_history(
        self, chat_id: int, thread_id: int | None, limit: int
    ) -> tuple[int, list[StoredMessage]]:
        """`active_conversation` and its `recent_messages(id, limit)` together (one round trip
        on PostgreSQL once the conversation exists)."""
        ...

    async def add_exchange(
        self,
        conversation_id: int,
        user_message: StoredMessage,
        assistant_message: StoredMessage,
        usage: UsageRecord | None = None,
    ) -> None:
        """Store both messages atomically: either both rows exist afterwards or neither.
        `usage`, when given, is recorded as `record_usage` does, before the messages (on
        PostgreSQL in the same statement: all three rows or none)."""
        ...

    async def recent_messages(
        self, conversation_id: int, limit: int, before_id: int | None = None
    ) -> list[StoredMessage]:
        """The newest ``limit`` messages (id < before_id when given), returned oldest-first."""
        ...

    async def record_usage(self, record: UsageRecord) -> None: ...

    async def usage_summary(self, user_id: int, since: float | None = None) -> UsageSummary:
        """Totals over the user's usage records, only those created at or after ``since``."""
        ...

    async def usage_by_provider(
        self, user_id: int, since: float | None = None
    ) -> tuple[ProviderUsage, ...]:
        """The same records as ``usage_summary`` grouped by the model id's namespace (one of
        USAGE_NAMESPACES, else ""), ordered by namespace; a provider without records is absent.
        Credits and energy are summed over the records that carry them (None if none does)."""
        ...

    async def count_users(self) -> int:
        """People: rows with a positive id (a group's settings row is not a user)."""
        ...

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
        """Store a new job in state "submitting": request_id None, created_at = updated_at = now;
        ``owner``: the replica that polls it. With ``max_active``, raise ActiveJobsLimit
        instead when the user has that many active jobs already: counted and stored as one
        step, also when several processes store jobs for the same user at once."""
        ...

    async def update_video_job(self, job_id: int, **fields: Any) -> VideoJob:
        """Set any of VIDEO_JOB_UPDATE_FIELDS and refresh updated_at; return the new row.

        Unknown field or a state outside VIDEO_JOB_STATES → ValueError; wrong type → TypeError;
        no such job → LookupError.
        """
        ...

    async def active_video_jobs(self) -> list[VideoJob]:
        """Every job in ACTIVE_VIDEO_JOB_STATES, oldest first (resumed after a restart)."""
        ...

    async def count_active_video_jobs(self, user_id: int) -> int:
        """How many of the user's jobs are in ACTIVE_VIDEO_JOB_STATES."""
        ...

    # ----------------------------------------------------------------- admins: blocked users

    async def set_users_blocked(self, user_ids: Sequence[int], blocked: bool) -> None:
        """Set is_blocked on the given existing users (unknown ids are ignored), in one write."""
        ...

    async def count_broadcast_recipients(self) -> int:
        """Users (positive ids: not groups) who have not blocked the bot."""
        ...

    async def broadcast_recipients(self, after_user_id: int, limit: int) -> list[int]:
        """Ids of users who have not blocked the bot with user_id > after_user_id, ascending;
        never a group's row (ids <= 0), whatever ``after_user_id`` is."""
        ...

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
        """Store a new broadcast in state "running" with cursor 0 and zero counters;
        ``owner``: the replica that drives it."""
        ...

    async def update_broadcast(self, broadcast_id: int, **fields: Any) -> Broadcast:
        """Set any of BROADCAST_UPDATE_FIELDS and refresh updated_at; return the new row.

        Unknown field or a state outside BROADCAST_STATES → ValueError; wrong type → TypeError;
        no such broadcast → LookupError.
        """
        ...

    async def get_broadcast(self, broadcast_id: int) -> Broadcast | None: ...

    async def running_broadcasts(self) -> list[Broadcast]:
        """Every broadcast in state "running", oldest first (resumed after a restart)."""
        ...

    # ---------------------------------------------------------------------- admins: statistics

    async def bot_statistics(self, now: float) -> BotStatistics:
        """Figures relative to ``now`` (unix time); refusals by UTC day (``now``'s day and
        the 29 before it). May take a while on a big database; a backend should run it
        without holding up the chat's own queries."""
        ...

    # ------------------------------------------------------------------------ update journal

    async def journal_record(
        self, update_id: int, payload: str | None, owner: str | None = None
    ) -> bool:
        """Record an incoming update, unfinished (created_at = now), handled by the replica
        ``owner``; False if its id is recorded already (a duplicate delivery). Atomic: of two
        calls for one id, one wins."""
        ...

    async def journal_finish(self, update_id: int) -> None:
        """Mark the update handled (finished_at = now) and drop its payload; the id stays
        for dedupe until pruned."""
        ...

    async def journal_reset_replays(self, update_id: int) -> None:
        """Set an unfinished update's replay count back to 0 (put off by a clean shutdown)."""
        ...

    async def journal_unfinished(self) -> list[JournalEntry]:
        """Every unfinished update, in update_id order."""
        ...

    async def journal_begin_replay(self, update_id: int) -> bool:
        """Count a replay of an unfinished update that was never replayed; False otherwise."""
        ...

    async def journal_prune(self, finished_before: float, limit: int) -> int:
        """Delete up to ``limit`` rows finished before ``finished_before``; how many went."""
        ...

    # ------------------------------------------------------------- answers: delivery marks

    async def set_answer_status(self, conversation_id: int, content: str, status: str) -> bool:
        """Set ``status`` on the newest assistant message of the conversation whose content is
        exactly ``content`` (e.g. "undelivered" when Telegram never took the final message).
        False when there is no such message. Only runs after a failed delivery, so it needs
        no index of its own."""
        ...

    # ------------------------------------------------------------------ admins: one user

    async def user_by_username(self, username: str) -> UserRecord | None:
        """The person whose Telegram username is ``username`` (without "@"), compared
        case-insensitively as Telegram does; None if nobody has it. Group rows never match."""
        ...

    # ------------------------------------------------------------------------ access control

    async def access_list(self) -> list[AccessEntry]:
        """Every row of the allow/ban list (subjects allowed, banned or both), by id."""
        ...

    async def set_access_allowed(self, subject_id: int, allowed: bool) -> None:
        """Put a user or group on the allowlist (True) or take it off (False); one upsert."""
        ...

    async def set_access_banned(self, subject_id: int, banned: bool) -> None:
        """Ban or unban a user; either way ban_noticed goes back to False (a new ban is
        noticed once again). One upsert."""
        ...

    async def mark_ban_noticed(self, subject_id: int) -> None:
        """The banned user has been told: later refusals stay silent, also after a restart."""
        ...

    async def daily_limit_overrides(self) -> dict[int, int]:
        """user_id → daily request limit for every user an admin gave one (0 = unlimited)."""
        ...

    async def set_daily_requests_limit(self, user_id: int, limit: int | None) -> None:
        """Override one user's daily request limit (None: back to the bot's default). A
        missing user is created bare, as update_user_settings does."""
        ...

    async def quota_usage(self, user_id: int, since: float) -> QuotaUsage:
        """The user's usage records created at or after ``since`` whose status is not
        "error": how many, and their prompt + completion tokens."""
        ...

    async def count_refusal(self, reason: str, day: str) -> None:
        """Add one to the ``refusals`` count of ``reason`` (one of REFUSAL_REASONS) on the UTC
        ``day`` ("YYYY-MM-DD"); one upsert."""
        ...

    async def ping(self) -> None:
        """A cheap round trip to the database (readiness probes); raises when it does not
        answer."""
        ...

    # ------------------------------------------------------------------ replicas and ownership
    # ``table`` is one of OWNED_TABLES: "video_jobs", "broadcasts", "update_journal"; rows are
    # keyed by id (update_id for the journal). See services/replicas.py.

    async def replica_beat(self, replica_id: str) -> None:
        """Record that the replica is alive now (its heartbeat; registers it the first time)."""
        ...

    async def replica_leave(self, replica_id: str) -> None:
        """A clean shutdown: the replica's rows that still need work get no owner (others take
        them over at once) and its heartbeat row goes."""
        ...

    async def orphans(
        self, table: str, me: str, alive_since: float
    ) -> list[tuple[int, str | None]]:
        """(key, owner) of the rows still needing work whose owner is nobody or dead: not
        ``me`` and not seen since ``alive_since``; in key order."""
        ...

    async def claim(self, table: str, row_id: int, me: str, previous: str | None) -> bool:
        """Make ``me`` the owner of a row still needing work if its owner is still ``previous``;
        of several replicas claiming one row, exactly one gets True. A broadcast claimed from a
        dead owner counts the copies it had started but not counted as failed."""
        ...

    async def owns(self, table: str, row_id: int, me: str) -> bool:
        """Whether ``me`` still owns the row (checked before a delivery that must not repeat)."""
        ...

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
        """Store a running broadcast's position and counters, written BEFORE the copy to
        ``cursor`` is sent; None (nothing written) if it is no longer running or ``owner``
        no longer owns it."""
        ...

    async def request_broadcast_stop(self, broadcast_id: int) -> bool:
        """Stop a running broadcast driven by any replica (state "stopped"); False if it was
        not running. Its driver sees it at its next copy."""
        ...

    async def journal_entry(self, update_id: int) -> JournalEntry | None:
        """An unfinished journal entry, or None."""
        ...
