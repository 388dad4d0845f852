"""The update journal: a question is stored before it is answered.

Every incoming update's id is recorded before it is handled (a second delivery of the same id
is not handled again) and, for message updates, the update itself, so that after a crash or a
kill the unfinished ones can be handled again at start-up. Each is replayed once: it is marked
before it is fed again, so an update that crashes the bot twice is given up, not fed for ever.

Each entry is owned by the replica handling it (services/replicas.py): an update being handled
by a live replica is never replayed by another; one left unfinished by a dead replica (a crash,
a kill) or released by a clean shutdown is claimed by exactly one live replica, which replays
it under the same once-only rule. With one process, "dead" is every earlier run.

Finished rows keep only the id (the payload is dropped at once) and are pruned after
`keep_seconds`. Telegram picks update ids at random again after a week without updates, so
pruning after a day also keeps an old id from hiding a new update.

Nothing here knows about Telegram's types: the bot side turns updates into JSON and back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from services.replicas import Replicas
from services.storage import Storage
from services.storage.base import JournalEntry

log = logging.getLogger(__name__)

DAY = 86_400.0
PRUNE_BATCH = 2_000


class UpdateDeferred(Exception):
    """Raised by a handler whose question was put off by a shutdown before it started.

    The update stays unfinished in the journal and is answered after the restart.
    """


class UpdateJournal:
    def __init__(
        self,
        storage: Storage,
        *,
        keep_seconds: float = DAY,
        prune_interval: float = 3600.0,
        clock: Callable[[], float] = time.time,
        replicas: Replicas | None = None,
    ) -> None:
        self._storage = storage
        # Alone on the database (a fresh run) without a registry.
        self._replicas = replicas if replicas is not None else Replicas(storage)
        self._keep = keep_seconds
        self._prune_interval = prune_interval
        self._clock = clock
        self._pruner: asyncio.Task[None] | None = None

    # --- the hot path: one write before handling, one after ---------------------------------

    async def record(self, update_id: int, payload: str | None) -> bool:
        """Store an update before it is handled; False: already recorded, do not handle it."""
        return await self._storage.journal_record(update_id, payload, self._replicas.id)

    async def finish(self, update_id: int) -> None:
        await self._storage.journal_finish(update_id)

    async def defer(self, update_id: int) -> None:
        """Left unfinished by a clean shutdown: it is owed a full replay, even if this run was
        itself a replay (a shutdown is not a crash)."""
        await self._storage.journal_reset_replays(update_id)

    # --- taking over what dead replicas left ------------------------------------------------

    async def replayable(self) -> list[JournalEntry]:
        """Unfinished updates of dead replicas (or earlier runs), claimed by this replica, to
        handle again, oldest first.

        The rest of the claimed ones are closed here: an update already replayed once (it
        crashed the bot again), one without a payload (nothing to replay) and one older than
        the journal keeps (Telegram itself keeps updates for a day).
        """
        horizon = self._clock() - self._keep
        wanted: list[JournalEntry] = []
        for entry in await self._claim_orphans():
            if entry.payload is None:
                reason = None  # a callback or a status change: nothing to answer again
            elif entry.replays > 0:
                reason = "it was replayed once already"
            elif entry.created_at < horizon:
                reason = "it is too old"
            else:
                wanted.append(entry)
                continue
            if reason is not None:
                log.warning("journal: update %d is not handled again: %s", entry.update_id, reason)
            await self._storage.journal_finish(entry.update_id)
        return wanted

    async def _claim_orphans(self) -> list[JournalEntry]:
        me = self._replicas.id
        claimed: list[JournalEntry] = []
        orphans = await self._storage.orphans("update_journal", me, self._replicas.alive_since())
        for update_id, previous in orphans:
            if not await self._storage.claim("update_journal", update_id, me, previous):
                continue  # another replica claimed it first
            entry = await self._storage.journal_entry(update_id)
            if entry is not None:
                claimed.append(entry)
        return claimed

    async def begin_replay(self, update_id: int) -> bool:
        """Mark an update as replayed BEFORE feeding it; False if it must not be fed."""
        return await self._storage.journal_begin_replay(update_id)

    # --- bounded size --------------------------------------------------------------------------

    async def prune(self) -> int:
        """Delete finished rows older than `keep_seconds`, in small batches; how many went."""
        before = self._clock() - self._keep
        total = 0
        while True:
            removed = await self._storage.journal_prune(before, PRUNE_BATCH)
            total += removed
            if removed < PRUNE_BATCH:
                return total
            await asyncio.sleep(0)  # let the chat's own queries in between batches

    def start(self) -> None:
        """Prune now and then every `prune_interval` until `close()`."""
        if self._pruner is None:
            self._pruner = asyncio.create_task(self._prune_forever(), name="journal-pruner")

    async def close(self) -> None:
        task, self._pruner = self._pruner, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _prune_forever(self) -> None:
        while True:
            try:
                removed = await self.prune()
                if removed:
                    log.debug("journal: pruned %d finished updates", removed)
            except Exception:
                log.warning("journal: pruning failed", exc_info=True)
            await asyncio.sleep(self._prune_interval)
