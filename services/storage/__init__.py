"""Persistence behind one interface: users, conversations, messages, usage."""

from __future__ import annotations

from .base import (
    USER_SETTING_FIELDS,
    Storage,
    StoredMessage,
    UsageRecord,
    UsageSummary,
    UserRecord,
)
from .factory import open_storage, sqlite_path_from_url
from .migrations import MIGRATIONS, SCHEMA_VERSION, Migration, SchemaTooNew
from .sqlite import SQLiteStorage

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "USER_SETTING_FIELDS",
    "Migration",
    "SQLiteStorage",
    "SchemaTooNew",
    "Storage",
    "StoredMessage",
    "UsageRecord",
    "UsageSummary",
    "UserRecord",
    "open_storage",
    "sqlite_path_from_url",
]
