"""Persistence behind one interface: users, conversations, messages, usage, video jobs,
broadcasts and the admins' statistics."""

from __future__ import annotations

from .base import (
    ACTIVE_VIDEO_JOB_STATES,
    BROADCAST_STATES,
    BROADCAST_UPDATE_FIELDS,
    REPLY_MODES,
    RESETTABLE_USER_SETTINGS,
    USER_SETTING_FIELDS,
    VIDEO_JOB_STATES,
    VIDEO_JOB_UPDATE_FIELDS,
    BotStatistics,
    Broadcast,
    ModelUse,
    RefusalCount,
    Storage,
    StoredMessage,
    UsageRecord,
    UsageSummary,
    UserRecord,
    VideoJob,
)
from .factory import open_storage, sqlite_path_from_url
from .migrations import MIGRATIONS, SCHEMA_VERSION, Migration, SchemaTooNew
from .sqlite import SQLiteStorage

__all__ = [
    "ACTIVE_VIDEO_JOB_STATES",
    "BROADCAST_STATES",
    "BROADCAST_UPDATE_FIELDS",
    "MIGRATIONS",
    "REPLY_MODES",
    "RESETTABLE_USER_SETTINGS",
    "SCHEMA_VERSION",
    "USER_SETTING_FIELDS",
    "VIDEO_JOB_STATES",
    "VIDEO_JOB_UPDATE_FIELDS",
    "BotStatistics",
    "Broadcast",
    "Migration",
    "ModelUse",
    "RefusalCount",
    "SQLiteStorage",
    "SchemaTooNew",
    "Storage",
    "StoredMessage",
    "UsageRecord",
    "UsageSummary",
    "UserRecord",
    "VideoJob",
    "open_storage",
    "sqlite_path_from_url",
]
