"""Replicas on one database: every piece of background work has exactly one live owner.

Each bot process is a replica with an id of its own (a fresh uuid per start). Rows that need
work carry the id of the replica doing it in an ``owner`` column: an update being handled
(``update_journal``), a media job being polled (``video_jobs``), a broadcast being driven
(``broadcasts``). In replica mode (PostgreSQL and REDIS_URL) every replica writes a heartbeat
(``replicas.seen_at``) every ``heartbeat`` seconds; one not seen for ``timeout`` seconds is
dead. A scan every ``scan_interval`` seconds finds the rows of dead owners (or of nobody: a
clean shutdown released them) and claims each with one conditional UPDATE (``owner = me WHERE
owner = the dead one``), so of several replicas scanning at once exactly one takes each row,
and resumes it (the services register what to do: ``add_scanner``).

With one process (SQLite, or PostgreSQL without Redis) the instance lock proves that nobody
else is alive, so every owner but this run is dead: the first scan at start takes over all
that the last run left, exactly as a restart always did, and no heartbeat is written.

Liveness compares heartbeats written with each replica's own clock: the replicas' clocks must
agree to well within the timeout (NTP does; 20 s is the default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from services.storage import database_kind

__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "DEFAULT_SCAN_SECONDS",
    "DEFAULT_TIMEOUT_SECONDS",
    "ReplicaStore",
    "Replicas",
    "replica_mode",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 20.0
DEFAULT_HEARTBEAT_SECONDS = 5.0
DEFAULT_SCAN_SECONDS = 5.0

Scanner = Callable[[], Awaitable[None]]


def replica_mode(database_url: str, redis_configured: bool) -> bool:
    """Several processes may share the database: PostgreSQL and Redis (REDIS_URL) both set."""
    return redis_configured and database_kind(database_url) == "postgres"


class ReplicaStore(Protocol):
    """The part of the Storage protocol the registry uses."""

    async def replica_beat(self, replica_id: str) -> None: ...

    async def replica_leave(self, replica_id: str) -> None: ...


class Replicas:
    """This process's replica id, its heartbeat, and the scan that takes over orphaned work.

    ``shared=False`` (one process per database): no heartbeat, one scan at ``start()`` that
    treats every other owner as dead. ``shared=True``: a heartbeat and a scan loop.
    """

    def __init__(
        self,
        storage: ReplicaStore,
        *,
        shared: bool = False,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        heartbeat: float = DEFAULT_HEARTBEAT_SECONDS,
        scan_interval: float = DEFAULT_SCAN_SECONDS,
        replica_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if timeout <= 0 or heartbeat <= 0 or scan_interval <= 0:
            raise ValueError("timeout, heartbeat and scan_interval must be positive")
        if shared and heartbeat * 2 > timeout:
            # Two heartbeats must fit in the timeout, or one slow write declares a live
            # replica dead and its work is done twice.
            raise ValueError("the heartbeat must be at most half the replica timeout")
        self._storage = storage
        self.id = replica_id or uuid.uuid4().hex
        self.shared = shared
        self._timeout = float(timeout)
        self._heartbeat = float(heartbeat)
        self._scan_interval = float(scan_interval)
        self._clock = clock
        self._scanners: list[tuple[str, Scanner]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._scan_lock = asyncio.Lock()

    def alive_since(self) -> float:
        """Owners seen before this moment are dead; +inf with one process (all are dead)."""
        return self._clock() - self._timeout if self.shared else math.inf

    def add_scanner(self, name: str, scanner: Scanner) -> None:
        """Called on every scan: claims the orphaned rows of one kind and resumes them."""
        self._scanners.append((name, scanner))

    async def start(self) -> None:
        """Beat once (so others see this replica before it owns anything), take over what
        the dead left, then keep beating and scanning in the background (replica mode)."""
        if self.shared:
            await self._storage.replica_beat(self.id)
            self._tasks.append(asyncio.create_task(self._beat_forever(), name="replica-beat"))
        await self.scan()
        if self.shared:
            self._tasks.append(asyncio.create_task(self._scan_forever(), name="replica-scan"))
        log.info("replica %s started (%s)", self.id, "shared" if self.shared else "one process")

    async def scan(self) -> None:
        """Run every scanner once; a failing one is logged and retried on the next scan."""
        async with self._scan_lock:
            for name, scanner in self._scanners:
                try:
                    await scanner()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.warning("replicas: the %s scan failed", name, exc_info=True)

    async def halt(self) -> None:
        """Stop beating and scanning (first step of a shutdown, or a test's abrupt death)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """A clean stop, after the services stopped their work: release what this replica
        still owns so that others take it over at once instead of after the timeout."""
        await self.halt()
        try:
            await self._storage.replica_leave(self.id)
        except Exception as error:  # the others take over after the timeout anyway
            log.warning("replicas: could not release replica %s: %s", self.id, error)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                await self._storage.replica_beat(self.id)
            except Exception as error:
                log.warning("replicas: heartbeat failed: %s", error)

    async def _scan_forever(self) -> None:
        while True:
            await asyncio.sleep(self._scan_interval)
            await self.scan()
