"""Admin broadcasts: one message copied to every user who has not blocked the bot.

Sending is paced by a token bucket of its own at the configured rate (25/s by default),
below Telegram's overall limit of about 30 messages/s so answers to users keep flowing
while a broadcast runs. The bucket holds one token: the schedule is absolute (a late
wake-up does not slow the next send) and, after a pause, sending resumes at the rate
rather than in a burst that would draw 429s.

Recipients are read in pages in user-id order. The position (cursor) and the counters are
stored BEFORE each copy is sent, one small write per recipient, so no user ever gets two
copies: delivery is at-most-once. A crash or a kill between that write and the copies then on
their way loses at most those copies (up to the in-flight bound), which the replica taking
over counts as failed (stored as "attempted" but never counted). A clean shutdown or /stop
waits for the copies on their way and stores the exact figures. Users found to have blocked
the bot are marked, so the next broadcast skips them; they are unmarked when they write again.

A broadcast is driven by the replica that started it (its ``owner``, services/replicas.py);
when that replica dies (or stops cleanly and releases it), another claims it and drives it on
from the stored position, editing the same progress message (its id is stored). Every write of
the position is conditional on still owning the broadcast, so a replica that lost it stops at
once. A Stop pressed on another replica marks the stored broadcast stopped; its driver sees
that at its next copy and sends the final report.

One broadcast runs at a time (across replicas: a running one in the database refuses a new
one): two would share one rate budget and each take twice as long.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from services.pacing import TokenBucket
from services.replicas import Replicas
from services.storage import Broadcast, Storage
from services.users import UserService

__all__ = [
    "BroadcastBusy",
    "BroadcastNotifier",
    "BroadcastSender",
    "BroadcastService",
    "DeliveryOutcome",
    "RetryLater",
    "SourceMissing",
]

log = logging.getLogger(__name__)

# A recipient is tried this many times when Telegram asks to wait, then counted as failed.
_MAX_ATTEMPTS = 3
# The longest pause a "retry after" may impose; a longer one is capped (and logged).
_MAX_PAUSE = 300.0
_TABLE = "broadcasts"


class DeliveryOutcome(enum.StrEnum):
    DELIVERED = "delivered"
    BLOCKED = "blocked"  # the user blocked the bot, deleted the account, or the chat is gone
    FAILED = "failed"  # anything else; the recipient is skipped


class RetryLater(Exception):
    """Telegram asked to wait before sending more (a 429 that flood control did not absorb)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds} s")
        self.seconds = float(seconds)


class SourceMissing(Exception):
    """The message being copied is gone (the admin deleted it): nobody can receive it."""


class BroadcastBusy(Exception):
    """Another broadcast is still running."""

    def __init__(self, running: Broadcast) -> None:
        super().__init__(f"broadcast {running.id} is running")
        self.running = running


class BroadcastSender(Protocol):
    """Implemented on the Telegram side: copy one message into one user's chat."""

    async def copy(self, chat_id: int, from_chat_id: int, message_id: int) -> DeliveryOutcome:
        """Raises RetryLater or SourceMissing; any other exception counts as FAILED."""
        ...


class BroadcastNotifier(Protocol):
    """Implemented on the Telegram side. Exceptions are logged; they never stop a broadcast."""

    async def progress(self, broadcast: Broadcast) -> None: ...

    async def finished(self, broadcast: Broadcast) -> None:
        """``broadcast.state`` is "done", "stopped" or "failed" (the source message is gone)."""
        ...


class _Tally:
    """A run's counters; copies started (``attempted``) are stored before they are sent."""

    __slots__ = ("attempted", "blocked", "delivered", "failed")

    def __init__(self, broadcast: Broadcast) -> None:
        self.delivered = broadcast.delivered
        self.blocked = broadcast.blocked
        self.failed = broadcast.failed
        # A claim counted the dead owner's uncounted copies as failed: nothing is pending.
        self.attempted = self.delivered + self.blocked + self.failed

    def count(self, outcome: DeliveryOutcome | None) -> None:
        if outcome is DeliveryOutcome.DELIVERED:
            self.delivered += 1
        elif outcome is DeliveryOutcome.BLOCKED:
            self.blocked += 1
        elif outcome is DeliveryOutcome.FAILED:
            self.failed += 1


class _Run:
    """One broadcast in progress: its latest stored row and how it was asked to end."""

    __slots__ = ("broadcast", "ended", "reason", "task")

    def __init__(self, broadcast: Broadcast) -> None:
        self.broadcast = broadcast
        # "stopped" | "failed" | "closing" | "lost" (another replica owns it now)
        self.reason: str | None = None
        # Set with `reason`: cuts short every wait (a slot, a 429 pause), so Stop and
        # shutdown take effect at once even in the middle of a long pause.
        self.ended = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def end(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.ended.set()

    async def nap(self, seconds: float) -> None:
        """Sleep up to ``seconds``, less if the run is ended meanwhile."""
        if seconds <= 0 or self.ended.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.ended.wait()


class BroadcastService:
    def __init__(
        self,
        storage: Storage,
        *,
        rate: float,
        progress_interval: float = 5.0,
        page_seconds: float = 2.0,
        max_in_flight: int = 64,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        replicas: Replicas | None = None,
        users: UserService | None = None,
    ) -> None:
        if rate <= 0 or progress_interval <= 0 or page_seconds <= 0 or max_in_flight < 1:
            raise ValueError("rate, intervals and max_in_flight must be positive")
        self._storage = storage
        # Marks users who blocked the bot through the users' cache (and other replicas').
        self._users = users
        self._rate = float(rate)
        self._progress_interval = float(progress_interval)
        self._page = max(1, round(rate * page_seconds))
        self._slots = asyncio.Semaphore(max_in_flight)
        self._clock = clock
        self._wall = wall_clock
        # Who drives the broadcasts this process sends; alone on the database without one.
        self._replicas = replicas if replicas is not None else Replicas(storage)
        self._sender: BroadcastSender | None = None
        self._notifier: BroadcastNotifier | None = None
        self._run: _Run | None = None
        # Serialises "is one running? then create one", so two confirmations cannot both start.
        self._start_lock = asyncio.Lock()
        self._paused_until = 0.0
        self._closed = False

    def attach(self, sender: BroadcastSender, notifier: BroadcastNotifier) -> None:
        self._sender = sender
        self._notifier = notifier

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def running(self) -> Broadcast | None:
        """The broadcast in progress (its last stored state), if any."""
        return self._run.broadcast if self._run is not None else None

    async def recipients(self) -> int:
        return await self._storage.count_broadcast_recipients()

    # ------------------------------------------------------------------------------ public

    async def start(
        self,
        *,
        admin_id: int,
        from_chat_id: int,
        message_id: int,
        lang: str,
        progress_message_id: int | None,
    ) -> Broadcast:
        """Store a new broadcast and send it in the background; BroadcastBusy if one runs."""
        self._require_attached()
        if self._closed:
            raise RuntimeError("BroadcastService is closed")
        async with self._start_lock:
            if self._run is not None:
                raise BroadcastBusy(self._run.broadcast)
            elsewhere = await self._storage.running_broadcasts()
            if elsewhere:  # driven by another replica (or waiting to be taken over)
                raise BroadcastBusy(elsewhere[0])
            total = await self._storage.count_broadcast_recipients()
            broadcast = await self._storage.create_broadcast(
                admin_id=admin_id,
                from_chat_id=from_chat_id,
                message_id=message_id,
                lang=lang,
                total=total,
                progress_message_id=progress_message_id,
                owner=self._replicas.id,
            )
            self._spawn([broadcast])
        log.info("broadcast %d: started by %d for %d users", broadcast.id, admin_id, total)
        return broadcast

    async def stop(self, broadcast_id: int) -> bool:
        """Ask the running broadcast to stop after the messages already on their way.

        Driven here: at once. Driven by another replica: marked stopped in storage, which its
        driver sees at its next copy. Its driver dead (not taken over yet): ended here, and
        the admin's panel gets the final report from here. False if that broadcast is not
        running."""
        run = self._run
        if run is not None and run.broadcast.id == broadcast_id:
            if run.reason is not None:
                return False
            run.end("stopped")
            return True
        if await self._claim_orphan(broadcast_id):
            _, notifier = self._require_attached()
            # The claim counted the dead driver's copies on their way as failed.
            broadcast = await self._storage.update_broadcast(
                broadcast_id, state="stopped", finished_at=self._wall()
            )
            log.info("broadcast %d: stopped while its replica was gone", broadcast_id)
            await self._notify(notifier.finished, broadcast)
            return True
        return await self._storage.request_broadcast_stop(broadcast_id)

    async def _claim_orphan(self, broadcast_id: int) -> bool:
        """Whether this replica now owns the broadcast, claimed from a dead replica."""
        me = self._replicas.id
        for row_id, previous in await self._storage.orphans(
            _TABLE, me, self._replicas.alive_since()
        ):
            if row_id == broadcast_id:
                return await self._storage.claim(_TABLE, row_id, me, previous)
        return False

    async def resume(self) -> None:
        """Continue the broadcasts whose driver is gone (the bot restarted), oldest first."""
        self._require_attached()
        self._closed = False
        await self.take_over()

    async def take_over(self) -> None:
        """Claim the running broadcasts of dead replicas (or of nobody) and drive them on, when
        this replica drives none; the replicas' scan calls this every few seconds."""
        if self._closed or self._run is not None:
            return
        me = self._replicas.id
        claimed: list[Broadcast] = []
        for broadcast_id, previous in await self._storage.orphans(
            _TABLE, me, self._replicas.alive_since()
        ):
            if await self._storage.claim(_TABLE, broadcast_id, me, previous):
                broadcast = await self._storage.get_broadcast(broadcast_id)
                if broadcast is not None and broadcast.state == "running":
                    log.info("broadcast %d: taken over at user %d", broadcast.id, broadcast.cursor)
                    claimed.append(broadcast)
        if claimed and self._run is None and not self._closed:
            self._spawn(claimed)

    async def close(self, grace: float = 5.0) -> None:
        """Stop sending; the broadcast stays "running" in storage for the next ``resume()``.

        Messages already on their way get ``grace`` seconds to finish, so the stored cursor
        is exact; after that they are cancelled and their page may be sent again later."""
        self._closed = True
        run = self._run
        if run is None or run.task is None:
            return
        run.end("closing")
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(run.task)
        except TimeoutError:
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.task

    # ---------------------------------------------------------------------------- sending

    def _require_attached(self) -> tuple[BroadcastSender, BroadcastNotifier]:
        if self._sender is None or self._notifier is None:
            raise RuntimeError("BroadcastService.attach() must be called before use")
        return self._sender, self._notifier

    def _spawn(self, queue: list[Broadcast]) -> None:
        run = _Run(queue[0])
        self._run = run
        run.task = asyncio.create_task(self._drive(run, queue[1:]), name="broadcast")

    async def _drive(self, run: _Run, queue: list[Broadcast]) -> None:
        try:
            while True:
                try:
                    await self._send_all(run)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Storage failed (disk full, locked): the row stays "running" and the next
                    # start resumes it from the last stored page.
                    log.exception("broadcast %d: interrupted", run.broadcast.id)
                    return
                if run.reason == "closing" or not queue:
                    return
                following = _Run(queue.pop(0))
                following.task = run.task
                run = self._run = following
        finally:
            if self._run is run:
                self._run = None

    async def _send_all(self, run: _Run) -> None:
        sender, notifier = self._require_attached()
        broadcast = run.broadcast
        tally = _Tally(broadcast)
        bucket = TokenBucket(self._rate, 1.0, self._clock)
        # The admin's panel turns into the progress view (with Stop) before the first send,
        # from this task, so it can never overwrite a final report that came sooner; after
        # a restart or on the replica taking over, this brings the panel back to life.
        await self._notify(notifier.progress, broadcast)
        last_progress = self._clock()
        cursor = broadcast.cursor
        while run.reason is None:
            ids = await self._storage.broadcast_recipients(cursor, self._page)
            if not ids:
                break
            page_start = cursor
            taken, outcomes = await self._send_page(run, sender, bucket, ids, tally)
            if not taken:
                break
            cursor = taken[-1]
            if run.reason == "closing" and None in outcomes:
                # Shut down while some waited to be retried after a 429 (not sent). When
                # nobody after the first of them was sent either, the stored position goes
                # back to it, so the next start sends to them; otherwise they are counted
                # failed (going back would send the later ones twice).
                cut = outcomes.index(None)
                if all(outcome is None for outcome in outcomes[cut:]):
                    cursor = taken[cut - 1] if cut else page_start
                    tally.attempted -= len(taken) - cut
                else:
                    tally.failed += outcomes.count(None)
            blocked = [
                uid
                for uid, outcome in zip(taken, outcomes, strict=True)
                if outcome is DeliveryOutcome.BLOCKED
            ]
            if blocked and self._users is not None:
                await self._users.mark_blocked(blocked)
            elif blocked:
                await self._storage.set_users_blocked(blocked, True)
            # The page's outcomes, exact (the copies are back).
            stored = await self._advance(run, cursor, tally.attempted, tally)
            if stored is None:
                break
            broadcast = stored
            # A short page is the last one: its figures go out in the final report instead.
            last_page = len(ids) < self._page
            due = self._clock() - last_progress >= self._progress_interval
            if due and not last_page and run.reason is None:
                last_progress = self._clock()
                await self._notify(notifier.progress, broadcast)
        if run.reason == "closing":
            log.info("broadcast %d: paused at user %d for shutdown", broadcast.id, cursor)
            return
        if run.reason == "lost":
            log.warning("broadcast %d: driven by another replica now; stopped here", broadcast.id)
            return
        state = run.reason or "done"
        broadcast = run.broadcast = await self._storage.update_broadcast(
            broadcast.id,
            state=state,
            finished_at=self._wall(),
            cursor=cursor,
            delivered=tally.delivered,
            blocked=tally.blocked,
            failed=tally.failed,
        )
        log.info(
            "broadcast %d: %s (%d delivered, %d blocked, %d failed)",
            broadcast.id,
            state,
            broadcast.delivered,
            broadcast.blocked,
            broadcast.failed,
        )
        await self._notify(notifier.finished, broadcast)

    async def _advance(
        self, run: _Run, cursor: int, attempted: int, tally: _Tally
    ) -> Broadcast | None:
        """Store the position and counters while this replica still drives the broadcast;
        None (and the run ended) when another replica took it over or it was stopped."""
        stored = await self._storage.advance_broadcast(
            run.broadcast.id,
            self._replicas.id,
            cursor=cursor,
            attempted=attempted,
            delivered=tally.delivered,
            blocked=tally.blocked,
            failed=tally.failed,
        )
        if stored is not None:
            run.broadcast = stored
            return stored
        current = await self._storage.get_broadcast(run.broadcast.id)
        if current is not None and current.state == "stopped":
            run.end("stopped")  # Stop pressed on another replica
        else:
            run.end("lost")
        return None

    async def _send_page(
        self,
        run: _Run,
        sender: BroadcastSender,
        bucket: TokenBucket,
        ids: list[int],
        tally: _Tally,
    ) -> tuple[list[int], list[DeliveryOutcome | None]]:
        """Send to a prefix of ``ids`` (all of them unless the run is ended); wait for each.
        Each recipient's position is stored before its copy is sent.

        An outcome is None for a recipient still waiting to be retried when the run ended."""
        broadcast = run.broadcast
        tasks: list[asyncio.Task[DeliveryOutcome | None]] = []

        def settled(task: asyncio.Task[DeliveryOutcome | None]) -> None:
            self._slots.release()
            if not task.cancelled() and task.exception() is None:
                tally.count(task.result())

        try:
            for user_id in ids:
                await self._wait_turn(run, bucket)
                if run.reason is not None:
                    break
                if await self._advance(run, user_id, tally.attempted + 1, tally) is None:
                    break
                tally.attempted += 1
                await self._slots.acquire()
                task = asyncio.create_task(self._deliver(run, sender, bucket, broadcast, user_id))
                task.add_done_callback(settled)
                tasks.append(task)
            outcomes = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        return ids[: len(tasks)], outcomes

    async def _wait_turn(self, run: _Run, bucket: TokenBucket) -> None:
        # The pause is checked after the slot's wait: a 429 may have arrived meanwhile. After
        # a pause a fresh slot is taken, so sending resumes at the rate, not in a burst.
        while run.reason is None:
            await run.nap(bucket.reserve())
            pause = self._paused_until - self._clock()
            if pause <= 0:
                return
            await run.nap(pause)

    async def _deliver(
        self,
        run: _Run,
        sender: BroadcastSender,
        bucket: TokenBucket,
        broadcast: Broadcast,
        user_id: int,
    ) -> DeliveryOutcome | None:
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            if attempt > 1:
                # A retry waits out the pause and takes a slot like any other send.
                await self._wait_turn(run, bucket)
                if run.reason is not None:
                    return None
            try:
                return await sender.copy(user_id, broadcast.from_chat_id, broadcast.message_id)
            except RetryLater as wait:
                seconds = min(wait.seconds, _MAX_PAUSE)
                log.warning("broadcast %d: Telegram asked to wait %.1f s", broadcast.id, seconds)
                # Everyone waits, not just this recipient: the limit is the bot's.
                self._paused_until = max(self._paused_until, self._clock() + seconds)
            except SourceMissing:
                if run.reason is None:
                    log.warning("broadcast %d: the message to copy is gone", broadcast.id)
                    run.end("failed")
                return DeliveryOutcome.FAILED
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("broadcast %d: sending to %d failed", broadcast.id, user_id)
                return DeliveryOutcome.FAILED
        return DeliveryOutcome.FAILED

    async def _notify(
        self, call: Callable[[Broadcast], Awaitable[None]], broadcast: Broadcast
    ) -> None:
        try:
            await call(broadcast)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("broadcast %d: notifier failed", broadcast.id)
