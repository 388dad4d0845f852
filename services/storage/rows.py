"""What both storage backends share: column lists in record order, the "needs work"
conditions of owned rows, row → record conversion and the checks of values written.

SQLite and PostgreSQL return rows of the same columns in the same order, so one conversion
serves both (services/storage/sqlite.py, services/storage/postgres.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .base import (
    BROADCAST_STATES,
    BROADCAST_UPDATE_FIELDS,
    REPLY_MODES,
    USER_SETTING_FIELDS,
    VIDEO_JOB_STATES,
    VIDEO_JOB_UPDATE_FIELDS,
    Broadcast,
    ProviderUsage,
    UsageRecord,
    UserRecord,
    VideoJob,
)

# Column order matches the UserRecord fields so rows map positionally.
USER_COLUMNS = (
    "user_id, username, first_name, language_code, language, model, system_prompt, "
    "temperature, created_at, is_blocked, vision_model, image_model, tts_voice, reply_mode"
)

MESSAGE_COLUMNS = "role, content, tokens, status, user_id, id, created_at"

# Column order matches the VideoJob fields so rows map positionally.
VIDEO_COLUMNS = (
    "id, user_id, chat_id, thread_id, request_id, model, prompt, lang, state, "
    "progress_message_id, url, reason, created_at, updated_at, kind"
)
# Must be the exact text of the partial indexes' WHERE clause (migration 2) or SQLite will not
# use them; a unit test checks both the plan and that it matches ACTIVE_VIDEO_JOB_STATES.
ACTIVE_VIDEO_STATES_SQL = "state IN ('submitting', 'IN_QUEUE', 'IN_PROGRESS', 'COMPLETED')"

# Column order matches the Broadcast fields so rows map positionally.
BROADCAST_COLUMNS = (
    "id, admin_id, from_chat_id, message_id, lang, state, total, cursor, delivered, blocked, "
    "failed, progress_message_id, created_at, updated_at, finished_at"
)
# Must be the exact text of the partial index's WHERE clause (migration 3).
RUNNING_BROADCAST_SQL = "state = 'running'"

# Rows that need work and who owns them (services/replicas.py): table -> (key, the condition
# of a row still needing work). Each condition is the exact text of its partial index.
OWNED_TABLES: dict[str, tuple[str, str]] = {
    "video_jobs": ("id", ACTIVE_VIDEO_STATES_SQL),
    "broadcasts": ("id", RUNNING_BROADCAST_SQL),
    "update_journal": ("update_id", "finished_at IS NULL"),
}


def owned_table(table: str) -> tuple[str, str]:
    """The key and "needs work" condition of an owned table; ValueError for any other name
    (table names are put into SQL text, so only these three are accepted)."""
    try:
        return OWNED_TABLES[table]
    except KeyError:
        raise ValueError(f"not an owned table: {table!r}") from None


def utc_day(moment: float) -> str:
    """The UTC day of a unix time as the refusals table stores it: "YYYY-MM-DD"."""
    return time.strftime("%Y-%m-%d", time.gmtime(moment))


def thread_key(thread_id: int | None) -> int:
    # NULL never equals NULL in SQL, so "no thread" is stored as 0 (Telegram thread ids are > 0).
    return 0 if thread_id is None else thread_id


def user_from_row(row: Any) -> UserRecord:
    (
        user_id,
        username,
        first_name,
        language_code,
        language,
        model,
        prompt,
        temp,
        created,
        blocked,
        vision_model,
        image_model,
        tts_voice,
        reply_mode,
    ) = row
    # RETURNING yields whole REAL values as int (SQLite stores them compactly and only SELECT
    # converts back), so restore the declared float types here.
    return UserRecord(
        user_id=user_id,
        username=username,
        first_name=first_name,
        language_code=language_code,
        language=language,
        model=model,
        system_prompt=prompt,
        temperature=None if temp is None else float(temp),
        created_at=float(created),
        is_blocked=bool(blocked),
        vision_model=vision_model,
        image_model=image_model,
        tts_voice=tts_voice,
        reply_mode=reply_mode,
    )


def usage_params(record: UsageRecord, now: float) -> tuple[Any, ...]:
    """A usage record's values in the column order of both backends' INSERTs."""
    return (
        record.user_id,
        record.chat_id,
        record.model,
        record.prompt_tokens,
        record.completion_tokens,
        record.credits,
        record.energy,
        record.status,
        now,
    )


def video_job_from_row(row: Any) -> VideoJob:
    job = VideoJob(*row)
    # RETURNING may give whole REALs back as int; keep the declared float types.
    return replace(job, created_at=float(job.created_at), updated_at=float(job.updated_at))


def broadcast_from_row(row: Any) -> Broadcast:
    broadcast = Broadcast(*row)
    # RETURNING may give whole REALs back as int; keep the declared float types.
    finished = broadcast.finished_at
    return replace(
        broadcast,
        created_at=float(broadcast.created_at),
        updated_at=float(broadcast.updated_at),
        finished_at=None if finished is None else float(finished),
    )


def check_setting(name: str, value: Any) -> Any:
    if name not in USER_SETTING_FIELDS:
        allowed = ", ".join(sorted(USER_SETTING_FIELDS))
        raise ValueError(f"unknown user setting {name!r}; allowed: {allowed}")
    if value is None:
        return None
    if name == "temperature":
        # bool is an int subclass but never a meaningful temperature.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"temperature must be a number or None, got {type(value).__name__}")
        return float(value)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
    if name == "reply_mode" and value not in REPLY_MODES:
        raise ValueError(f"reply_mode must be one of {', '.join(REPLY_MODES)} or None")
    return value


def update_by_id_sql(
    table: str, columns: str, names: Sequence[str], mark: Callable[[int], str]
) -> str:
    """`UPDATE table SET <names>, updated_at WHERE id RETURNING columns`: the parameters are
    the values of `names`, then updated_at, then the id; `mark(i)` writes the i-th parameter's
    placeholder in the backend's dialect. `names` must come from a field whitelist (they are
    column names, not parameters)."""
    assignments = ", ".join(f"{name} = {mark(i)}" for i, name in enumerate(names, 1))
    n = len(names)
    return (
        f"UPDATE {table} SET {assignments}, updated_at = {mark(n + 1)} "
        f"WHERE id = {mark(n + 2)} RETURNING {columns}"
    )


def check_video_field(name: str, value: Any) -> Any:
    if name not in VIDEO_JOB_UPDATE_FIELDS:
        allowed = ", ".join(sorted(VIDEO_JOB_UPDATE_FIELDS))
        raise ValueError(f"unknown video job field {name!r}; allowed: {allowed}")
    if name == "state":
        if value not in VIDEO_JOB_STATES:
            raise ValueError(f"unknown video job state {value!r}")
        return str(value)  # a StrEnum member is stored as its plain value
    if value is None:
        return None
    if name == "progress_message_id":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(
                f"progress_message_id must be an int or None, got {type(value).__name__}"
            )
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
    return value


def check_broadcast_field(name: str, value: Any) -> Any:
    if name not in BROADCAST_UPDATE_FIELDS:
        allowed = ", ".join(sorted(BROADCAST_UPDATE_FIELDS))
        raise ValueError(f"unknown broadcast field {name!r}; allowed: {allowed}")
    if name == "state":
        if value not in BROADCAST_STATES:
            raise ValueError(f"unknown broadcast state {value!r}")
        return str(value)  # a StrEnum member is stored as its plain value
    # bool is an int subclass but never a meaningful count, id or time.
    if name == "finished_at":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"finished_at must be a number or None, got {type(value).__name__}")
        return float(value)
    if value is None and name == "progress_message_id":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        suffix = " or None" if name == "progress_message_id" else ""
        raise TypeError(f"{name} must be an int{suffix}, got {type(value).__name__}")
    return value


# ------------------------------------------------------------------------- access control
# Each is one statement (see the module docstring). Rows that allow or ban nothing any more
# (after /deny, /unban) stay, harmlessly: they are few, and keep when they changed.


def provider_usage_from_rows(rows: Any) -> tuple[ProviderUsage, ...]:
    """Rows of (provider, requests, prompt tokens, completion tokens, credits, energy)."""
    return tuple(
        ProviderUsage(
            provider=str(provider),
            requests=int(requests),
            prompt_tokens=int(prompt_tokens),
            completion_tokens=int(completion_tokens),
            credits=None if credits is None else float(credits),
            energy=None if energy is None else float(energy),
        )
        for provider, requests, prompt_tokens, completion_tokens, credits, energy in rows
    )
