"""One bot process per database: a lock the process holds as long as it runs.

Broadcasts and video jobs are resumed from the database at start-up; two processes on one
database would both drive them (users got a broadcast twice). Both locks die with their process,
so a stale lock left by a killed bot never blocks the next start:

- SQLite: an OS file lock (flock through `filelock`) on `<database>.lock`.
- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`, keyed by the schema) held
  by a dedicated connection; the server drops it when that connection goes away.

Replica mode (PostgreSQL and REDIS_URL) takes no lock: several processes share the database on
purpose, and every piece of background work has one live owner instead (services/replicas.py:
heartbeats and owner columns, taken over when a replica dies).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Protocol
from urllib.parse import urlsplit

import asyncpg
from filelock import FileLock, Timeout

from services.storage import database_kind, postgres_dsn, sqlite_path_from_url

log = logging.getLogger(__name__)

# Advisory lock class of the instance lock (key 2: the schema's hash); the migrations use
# another class, so the two never meet.
_PG_INSTANCE_LOCK_CLASS = 0x4C4D4931  # "LMI1"
_PG_TRY_LOCK = "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))"


class InstanceLocked(ValueError):
    """Another process holds the database. A ValueError: `python -m bot` reports build-time
    ValueErrors as one configuration line with exit code 2 (two deployments share one
    DATABASE_URL)."""


class DatabaseUnreachable(ValueError):
    """The lock could not even ask the database (wrong host, server down, bad credentials);
    like InstanceLocked, one line and exit code 2 from `python -m bot`."""


class InstanceLock(Protocol):
    def acquire(self) -> None:
        """Take the lock at once or raise InstanceLocked; never waits for another holder."""
        ...

    def release(self) -> None:
        """Give the lock up (harmless when not held)."""
        ...


def instance_lock_for(database_url: str, *, replicas: bool = False) -> InstanceLock:
    """The lock that fits the database DATABASE_URL selects; none with ``replicas`` (several
    processes share the database on purpose: services/replicas.py)."""
    if replicas:
        return NoInstanceLock()
    if database_kind(database_url) == "postgres":
        return PostgresInstanceLock(postgres_dsn(database_url))
    return FileInstanceLock(sqlite_path_from_url(database_url))


class NoInstanceLock:
    """Replica mode: other processes are welcome; ownership of work is per row instead."""

    def acquire(self) -> None:
        return None

    def release(self) -> None:
        return None


class FileInstanceLock:
    """SQLite: an OS lock on `<database>.lock` beside the database file."""

    def __init__(self, database_path: str) -> None:
        self._database = database_path
        self._lock: FileLock | None = None
        if database_path != ":memory:":  # nothing another process could share
            self._lock = FileLock(
                f"{database_path}.lock",
                # Taken in one task and released in another, possibly on another thread.
                thread_local=False,
                # A soft (file-exists) lock would outlive a killed process and block for ever.
                fallback_to_soft=False,
            )

    def acquire(self) -> None:
        if self._lock is None or self._lock.is_locked:
            return
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            raise InstanceLocked(f"another bot process is already using {self._database}") from None
        except (OSError, NotImplementedError) as error:
            # A file system without locks (some network mounts): run, but say so.
            log.warning(
                "cannot lock %s (%s): make sure only one bot uses it", self._database, error
            )
            self._lock = None

    def release(self) -> None:
        if self._lock is not None and self._lock.is_locked:
            self._lock.release(force=True)


class PostgresInstanceLock:
    """PostgreSQL: a session advisory lock on a connection of its own.

    The lock is taken while the application is being built, before any event loop of the bot
    runs, so its connection lives on a small event loop of its own in a daemon thread: the
    interface stays synchronous like the file lock's, and the connection never depends on
    which loop the bot later runs on. Errors never echo the URL (it may carry a password).
    """

    def __init__(self, dsn: str, *, timeout: float = 10.0) -> None:
        self._dsn = dsn
        self._timeout = timeout
        parts = urlsplit(dsn)
        # What the messages name: host, port and database, never the user or password.
        self._where = (
            f"{parts.path.strip('/')} on {parts.hostname or 'localhost'}:{parts.port or 5432}"
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: asyncpg.Connection | None = None

    def acquire(self) -> None:
        if self._conn is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="instance-lock", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            got, schema = asyncio.run_coroutine_threadsafe(self._take(), loop).result(
                self._timeout + 1
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            self._stop()
            raise DatabaseUnreachable(
                f"cannot reach the PostgreSQL database {self._where} ({type(error).__name__})"
            ) from None
        except BaseException:
            self._stop()
            raise
        if not got:
            self._stop()
            raise InstanceLocked(
                f"another bot process is already using the PostgreSQL database {self._where} "
                f"(schema {schema})"
            )

    async def _take(self) -> tuple[bool, str]:
        conn = await asyncpg.connect(self._dsn, timeout=self._timeout)
        try:
            got = bool(await conn.fetchval(_PG_TRY_LOCK, _PG_INSTANCE_LOCK_CLASS))
            schema = str(await conn.fetchval("SELECT current_schema()"))
        except BaseException:
            await conn.close()
            raise
        if got:
            self._conn = conn
            conn.add_termination_listener(self._lost)
        else:
            await conn.close()
        return got, schema

    def _lost(self, _conn: object) -> None:
        # The server or the network dropped the connection: the lock is gone with it.
        if self._conn is not None:
            log.error("lost the database instance lock's connection; another process may start")

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(conn.close(timeout=5), self._loop).result(6)
            except Exception as error:  # the lock dies with the connection anyway
                log.warning("closing the instance lock's connection failed: %s", error)
        self._stop()

    def _stop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)
        loop.close()
