"""Build a ``Storage`` from the DATABASE_URL setting."""

from __future__ import annotations

from pathlib import Path

from .base import Storage
from .sqlite import SQLiteStorage

_SQLITE_PREFIX = "sqlite:///"
_SUPPORTED = "sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite:///:memory:"


def sqlite_path_from_url(database_url: str) -> str:
    """Return the SQLite path (or ``:memory:``) a ``sqlite:///`` URL points at.

    Error messages never echo the URL itself: a URL for another database may carry a password.
    """
    url = database_url.strip()
    if not url.startswith(_SQLITE_PREFIX):
        scheme = url.split("://", 1)[0] if "://" in url else ""
        what = f"scheme {scheme!r}" if scheme else "a value without a scheme"
        raise ValueError(f"DATABASE_URL has {what}; only SQLite is supported: {_SUPPORTED}")
    path = url[len(_SQLITE_PREFIX) :]
    if not path:
        raise ValueError(f"DATABASE_URL has no database path; expected {_SUPPORTED}")
    if "?" in path or "#" in path:
        raise ValueError(
            f"DATABASE_URL must not carry query options or fragments; expected {_SUPPORTED}"
        )
    # sqlite:////abs → "/abs" (absolute); sqlite:///rel → "rel" (relative to the working dir).
    return path


def open_storage(database_url: str) -> Storage:
    """Create (but do not connect) the storage for ``database_url``; await ``connect()`` next.

    Creates the database file's parent directory so a fresh deployment needs no manual setup.
    """
    path = sqlite_path_from_url(database_url)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStorage(path)
