"""Persistence behind one interface: users, conversations, messages, usage, video jobs,
broadcasts and the admins' statistics; on SQLite (the default) or PostgreSQL."""

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
    ActiveJobsLimit,
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
from .factory import database_kind, open_storage, postgres_dsn, sqlite_path_from_url
from .migrations import MIGRATIONS, SCHEMA_VERSION, Migration, PerDialect, SchemaTooNew
from .postgres import PostgresStorage
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
    "ActiveJobsLimit",
    "BotStatistics",
    "Broadcast",
    "Migration",
    "ModelUse",
    "PerDialect",
    "PostgresStorage",
    "RefusalCount",
    "SQLiteStorage",
    "SchemaTooNew",
    "Storage",
    "StoredMessage",
    "UsageRecord",
    "UsageSummary",
    "UserRecord",
    "VideoJob",
    "database_kind",
    "open_storage",
    "postgres_dsn",
    "sqlite_path_from_url",
]
