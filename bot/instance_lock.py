"""One bot process per database: an OS lock on `<database>.lock`.

Broadcasts and video jobs are resumed from the database at start-up; two processes on one
database would both drive them (users got a broadcast twice). The lock is an OS file lock
(flock through `filelock`), so it dies with its process: a stale lock left by a killed bot
never blocks the next start. Running several replicas on purpose needs real leases in the
database; that comes with the multi-replica mode, in a later issue.
"""

from __future__ import annotations

import logging

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


class InstanceLocked(ValueError):
    """Another process holds the database. A ValueError: `python -m bot` reports build-time
    ValueErrors as one configuration line with exit code 2 (two deployments share one
    DATABASE_URL)."""


class InstanceLock:
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
        """Take the lock at once or raise InstanceLocked; never waits."""
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
