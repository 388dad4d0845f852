"""Build a ``Storage`` from the DATABASE_URL setting: SQLite (the default) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from .base import Storage
from .postgres import PostgresStorage
from .sqlite import SQLiteStorage

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_SUPPORTED = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite:///:memory: "
    "or postgresql://user:password@host:port/database"
)


def database_kind(database_url: str) -> Literal["sqlite", "postgres"]:
    """Which backend ``database_url`` selects; ValueError (never echoing the URL, which may
    carry a password) for anything else."""
    url = database_url.strip()
    if url.startswith(_SQLITE_PREFIX):
        return "sqlite"
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in _POSTGRES_SCHEMES:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise ValueError(
                f"DATABASE_URL is not a valid PostgreSQL URL; expected {_SUPPORTED}"
            ) from None
        if not parts.path.strip("/"):
            raise ValueError(f"DATABASE_URL names no PostgreSQL database; expected {_SUPPORTED}")
        return "postgres"
    what = f"scheme {scheme!r}" if scheme else "a value without a scheme"
    raise ValueError(f"DATABASE_URL has {what}; supported: {_SUPPORTED}")


def postgres_dsn(database_url: str) -> str:
    """The DSN asyncpg connects with. Query parameters asyncpg does not know itself (e.g.
    ``?search_path=bot``) are sent to the server as settings of every connection."""
    if database_kind(database_url) != "postgres":
        raise ValueError(f"DATABASE_URL is not a PostgreSQL URL; expected {_SUPPORTED}")
    return database_url.strip()


def sqlite_path_from_url(database_url: str) -> str:
    """Return the SQLite path (or ``:memory:``) a ``sqlite:///`` URL points at.

    Error messages never echo the URL itself: a URL for another database may carry a password.
    """
    url = database_url.strip()
    if not url.startswith(_SQLITE_PREFIX):
        scheme = url.split("://", 1)[0] if "://" in url else ""
        what = f"scheme {scheme!r}" if scheme else "a value without a scheme"
        raise ValueError(f"DATABASE_URL has {what}; expected an SQLite URL: {_SUPPORTED}")
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

    For SQLite, creates the database file's parent directory so a fresh deployment needs no
    manual setup; a PostgreSQL database must exist (its tables are created by the migrations).
    """
    if database_kind(database_url) == "postgres":
        return PostgresStorage(postgres_dsn(database_url))
    path = sqlite_path_from_url(database_url)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStorage(path)
