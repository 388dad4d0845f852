"""Storage contract: record types and the ``Storage`` protocol every backend implements.

Nothing here knows about SQLite; a PostgreSQL backend implements the same protocol with the
same semantics (thread ``None`` ≡ 0, newest-first paging returned oldest-first, etc.).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

# Settings a user may change; anything else passed to update_user_settings is a bug in the caller.
USER_SETTING_FIELDS: frozenset[str] = frozenset(
    {"language", "model", "system_prompt", "temperature"}
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
    model: str
    prompt_tokens: int
    completion_tokens: int
    credits: float | None
    status: str  # "ok" | "stopped" | "interrupted" | "error"


@dataclass(frozen=True, slots=True)
class UsageSummary:
    requests: int
    prompt_tokens: int
    completion_tokens: int
    credits: float


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
        """Set any of USER_SETTING_FIELDS (None resets one); unknown key → ValueError."""
        ...

    async def reset_user_settings(self, user_id: int) -> UserRecord:
        """model, system_prompt, temperature → None; language is kept."""
        ...

    async def active_conversation(self, chat_id: int, thread_id: int | None) -> int:
        """Id of the chat/thread's current conversation, created on first use."""
        ...

    async def new_conversation(self, chat_id: int, thread_id: int | None) -> int:
        """Start a new current conversation; the old one stays stored."""
        ...

    async def add_exchange(
        self,
        conversation_id: int,
        user_message: StoredMessage,
        assistant_message: StoredMessage,
    ) -> None:
        """Store both messages atomically: either both rows exist afterwards or neither."""
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

    async def count_users(self) -> int: ...
