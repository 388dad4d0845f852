"""Replicas on one database (services/replicas.py): claims, take-over of dead replicas' video
jobs, broadcasts and journal entries, release on a clean stop.

Two (or three) storages on one fresh PostgreSQL schema stand for replicas on separate
machines; the single-process path runs on SQLite.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.instance_lock import FileInstanceLock, NoInstanceLock, instance_lock_for
from services.broadcast import BroadcastService, DeliveryOutcome
from services.journal import UpdateJournal
from services.replicas import Replicas, replica_mode
from services.storage import Broadcast, PostgresStorage, SQLiteStorage, VideoJob
from services.video import OneVideoMaker, VideoService
from tests.fakes.clock import FakeClock
from tests.pg_schema import fresh_schema
from tests.unit.test_video import RUNNING, FakeMedia, FakeNotifier, done

TIMEOUT = 20.0
PAYLOAD = '{"update_id": 1, "message": {"text": "hi"}}'


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def stores(clock: FakeClock) -> AsyncIterator[list[PostgresStorage]]:
    """Three replicas' storages on one PostgreSQL schema (separate pools)."""
    async with fresh_schema() as url:
        opened = [PostgresStorage(url, clock=clock) for _ in range(3)]
        for store in opened:
            await store.connect()
        try:
            yield opened
        finally:
            for store in opened:
                await store.close()


def registry(store: Any, clock: FakeClock, name: str) -> Replicas:
    return Replicas(store, shared=True, timeout=TIMEOUT, replica_id=name, clock=clock)


async def dead_replica(store: PostgresStorage, clock: FakeClock, name: str = "dead") -> None:
    """A replica that beat once, TIMEOUT + 1 seconds ago, and never again."""
    clock.now -= TIMEOUT + 1
    await store.replica_beat(name)
    clock.now += TIMEOUT + 1


async def new_job(store: Any, owner: str, request_id: str = "vid-1") -> VideoJob:
    job = await store.create_video_job(
        user_id=1,
        chat_id=1,
        thread_id=None,
        model="m",
        prompt="a cat",
        lang="en",
        progress_message_id=None,
        owner=owner,
    )
    updated: VideoJob = await store.update_video_job(
        job.id, request_id=request_id, state="IN_PROGRESS"
    )
    return updated


def video_service(store: Any, replicas: Replicas, media: FakeMedia) -> VideoService:
    return VideoService(
        store,
        OneVideoMaker(media),
        default_model="m",
        poll_seconds=0.01,
        replicas=replicas,
        clock=replicas._clock,
    )


# ------------------------------------------------------------------------------ modes


def test_replica_mode_needs_postgres_and_redis() -> None:
    assert replica_mode("postgresql://u@h/db", True)
    assert not replica_mode("postgresql://u@h/db", False)
    assert not replica_mode("sqlite:///data/bot.db", True)


def test_replica_mode_takes_no_instance_lock(tmp_path: Path) -> None:
    assert isinstance(instance_lock_for("postgresql://u@h/db", replicas=True), NoInstanceLock)
    assert isinstance(instance_lock_for(f"sqlite:///{tmp_path}/bot.db"), FileInstanceLock)


def test_the_heartbeat_fits_twice_in_the_timeout() -> None:
    with pytest.raises(ValueError, match="half"):
        Replicas(object(), shared=True, timeout=4, heartbeat=3)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ claims


async def test_claims_race_exactly_one_winner_per_row(
    stores: list[PostgresStorage], clock: FakeClock
) -> None:
    await dead_replica(stores[0], clock)
    jobs = [await new_job(stores[0], "dead", f"vid-{n}") for n in range(20)]
    await stores[1].replica_beat("b")
    await stores[2].replica_beat("c")

    async def grab(store: PostgresStorage, me: str) -> list[int]:
        won = []
        for job_id, previous in await store.orphans("video_jobs", me, clock() - TIMEOUT):
            if await store.claim("video_jobs", job_id, me, previous):
                won.append(job_id)
        return won

    b, c = await asyncio.gather(grab(stores[1], "b"), grab(stores[2], "c"))
    assert sorted(b + c) == [job.id for job in jobs]  # every row claimed, none twice
    assert not set(b) & set(c)
    # Claimed rows belong to live replicas now: nothing is left to claim.
    assert await stores[1].orphans("video_jobs", "b", clock() - TIMEOUT) == []


async def test_a_live_replicas_rows_are_never_claimed(
    stores: list[PostgresStorage], clock: FakeClock
) -> None:
    await stores[0].replica_beat("a")
    await new_job(stores[0], "a")
    assert await stores[0].journal_record(9, PAYLOAD, "a")
    clock.now += TIMEOUT - 1  # quiet for a while, but not dead yet
    assert await stores[1].orphans("video_jobs", "b", clock() - TIMEOUT) == []
    assert await stores[1].orphans("update_journal", "b", clock() - TIMEOUT) == []
    clock.now += 2
    assert len(await stores[1].orphans("video_jobs", "b", clock() - TIMEOUT)) == 1


# --------------------------------------------------------------------------- video jobs


async def test_a_dead_replicas_video_job_is_delivered_once_by_one_replica(
    stores: list[PostgresStorage], clock: FakeClock
) -> None:
    await dead_replica(stores[0], clock)
    job = await new_job(stores[0], "dead")
    media = FakeMedia([done()])
    notifiers = []
    services = []
    for store, name in ((stores[1], "b"), (stores[2], "c")):
        replicas = registry(store, clock, name)
        await store.replica_beat(name)
        service = video_service(store, replicas, media)
        notifier = FakeNotifier()
        service.set_notifier(notifier)
        notifiers.append(notifier)
        services.append(service)
    # Both survivors scan at once.
    await asyncio.gather(*(service.take_over() for service in services))
    for _ in range(200):
        if sum(len(n.completed_calls) for n in notifiers) and not any(
            s.active_pollers for s in services
        ):
            break
        await asyncio.sleep(0.01)
    delivered = [call for n in notifiers for call in n.completed_calls]
    assert [(j.id, video) for j, video in delivered] == [(job.id, media.video)]
    stored = await stores[1].update_video_job(job.id)
    assert stored.state == "DELIVERED"
    # Later scans find nothing more to do: it is delivered once.
    for service in services:
        await service.take_over()
        await service.close()
    assert len([call for n in notifiers for call in n.completed_calls]) == 1


async def test_a_replica_that_lost_its_job_stops_polling_it(
    stores: list[PostgresStorage], clock: FakeClock
) -> None:
    await stores[0].replica_beat("a")
    media = FakeMedia([RUNNING])  # generating for ever
    replicas = registry(stores[0], clock, "a")
    service = video_service(stores[0], replicas, media)
    notifier = FakeNotifier()
    service.set_notifier(notifier)
    job = await new_job(stores[0], "a")
    await service.start()  # nothing to take over: its own job is not an orphan
    assert service.active_pollers == 0
    service._spawn(job, first_delay=0.0)  # polling its own job, as after submit()
    await asyncio.sleep(0.05)
    assert service.active_pollers == 1
    # "a" stalled past the timeout and "b" claimed the job meanwhile.
    assert await stores[1].claim("video_jobs", job.id, "b", "a")
    for _ in range(100):
        if service.active_pollers == 0:
            break
        await asyncio.sleep(0.01)
    assert service.active_pollers == 0
    await service.close()


# ---------------------------------------------------------------------------- broadcasts


class Sender:
    def __init__(self) -> None:
        self.sent: list[int] = []
        self.hang_after: int | None = None

    async def copy(self, chat_id: int, from_chat_id: int, message_id: int) -> DeliveryOutcome:
        if self.hang_after is not None and len(self.sent) >= self.hang_after:
            await asyncio.Event().wait()  # the process dies with this copy on its way
        self.sent.append(chat_id)
        return DeliveryOutcome.DELIVERED


class Notifier:
    def __init__(self) -> None:
        self.reports: list[Broadcast] = []
        self.endings: list[Broadcast] = []
        self.done = asyncio.Event()

    async def progress(self, broadcast: Broadcast) -> None:
        self.reports.append(broadcast)

    async def finished(self, broadcast: Broadcast) -> None:
        self.endings.append(broadcast)
        self.done.set()


async def test_a_broadcast_is_continued_by_another_replica_with_no_user_twice(
    stores: list[PostgresStorage], clock: FakeClock
) -> None:
    for user_id in range(1, 41):
        await stores[0].upsert_user(user_id, username=None, first_name="u", language_code="en")
    await stores[0].replica_beat("a")
    first_sender, first_notifier = Sender(), Notifier()
    first_sender.hang_after = 15
    first = BroadcastService(stores[0], rate=1000, replicas=registry(stores[0], clock, "a"))
    first.attach(first_sender, first_notifier)
    started = await first.start(
        admin_id=1, from_chat_id=1, message_id=77, lang="en", progress_message_id=5
    )
    for _ in range(200):
        if len(first_sender.sent) >= 15:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    # Killed: its task dies without any clean-up (no release, no final write).
    run = first._run
    assert run is not None and run.task is not None
    run.task.cancel()
    await asyncio.gather(run.task, return_exceptions=True)

    await stores[1].replica_beat("b")
    await stores[2].replica_beat("c")
    clock.now += TIMEOUT + 1
    await stores[1].replica_beat("b")
    await stores[2].replica_beat("c")
    senders, notifiers, services = [], [], []
    for store, name in ((stores[1], "b"), (stores[2], "c")):
        sender, notifier = Sender(), Notifier()
        service = BroadcastService(store, rate=1000, replicas=registry(store, clock, name))
        service.attach(sender, notifier)
        senders.append(sender)
        notifiers.append(notifier)
        services.append(service)
    await asyncio.gather(*(service.take_over() for service in services))
    drivers = [n for n, s in zip(notifiers, services, strict=True) if s.running is not None]
    assert len(drivers) == 1  # one replica drives it on
    await asyncio.wait_for(drivers[0].done.wait(), 10)

    everyone = first_sender.sent + [user for s in senders for user in s.sent]
    assert len(everyone) == len(set(everyone))  # nobody got two copies
    result = drivers[0].endings[-1]
    assert result.id == started.id and result.state == "done"
    # The copies started but never counted by the dead replica are the only ones missing,
    # and the report counts them failed.
    assert result.delivered == len(everyone)
    assert result.delivered + result.failed == 40
    assert set(everyone) | set(range(1, 41)) == set(range(1, 41))
    # The progress panel comes back to life on the replica that took over.
    assert drivers[0].reports[0].progress_message_id == 5
    for service in services:
        await service.close()


async def test_stop_pressed_on_another_replica_ends_the_broadcast(
    stores: list[PostgresStorage], clock: FakeClock
) -> None:
    for user_id in range(1, 201):
        await stores[0].upsert_user(user_id, username=None, first_name="u", language_code="en")
    sender, notifier = Sender(), Notifier()
    driver = BroadcastService(stores[0], rate=200, replicas=registry(stores[0], clock, "a"))
    driver.attach(sender, notifier)
    other = BroadcastService(stores[1], rate=200, replicas=registry(stores[1], clock, "b"))
    other.attach(Sender(), Notifier())
    started = await driver.start(
        admin_id=1, from_chat_id=1, message_id=77, lang="en", progress_message_id=None
    )
    await asyncio.sleep(0.1)
    assert await other.stop(started.id)
    await asyncio.wait_for(notifier.done.wait(), 5)
    assert notifier.endings[-1].state == "stopped"
    assert len(sender.sent) < 200
    assert not await other.stop(started.id)  # not running any more


async def test_stop_pressed_while_the_driver_is_dead_ends_it_with_a_final_report(
    stores: list[PostgresStorage], clock: FakeClock
) -> None:
    for user_id in range(1, 41):
        await stores[0].upsert_user(user_id, username=None, first_name="u", language_code="en")
    await stores[0].replica_beat("a")
    first_sender = Sender()
    first_sender.hang_after = 10
    first = BroadcastService(stores[0], rate=1000, replicas=registry(stores[0], clock, "a"))
    first.attach(first_sender, Notifier())
    started = await first.start(
        admin_id=1, from_chat_id=1, message_id=77, lang="en", progress_message_id=5
    )
    for _ in range(200):
        if len(first_sender.sent) >= 10:
            break
        await asyncio.sleep(0.01)
    run = first._run
    assert run is not None and run.task is not None
    run.task.cancel()  # killed: no release, no final write
    await asyncio.gather(run.task, return_exceptions=True)

    clock.now += TIMEOUT + 1  # "a" is dead; nobody has taken the broadcast over yet
    await stores[1].replica_beat("b")
    notifier = Notifier()
    other = BroadcastService(stores[1], rate=1000, replicas=registry(stores[1], clock, "b"))
    other.attach(Sender(), notifier)
    assert await other.stop(started.id)
    # The admin's panel gets the final report, with the dead replica's figures.
    (ending,) = notifier.endings
    assert ending.id == started.id and ending.state == "stopped"
    assert ending.progress_message_id == 5
    assert ending.delivered == len(first_sender.sent)
    assert ending.failed >= 1  # the copies on their way at the kill
    assert ending.delivered + ending.failed < 40
    assert not await other.stop(started.id)  # ended
    await other.take_over()
    assert other.running is None  # nothing left to drive


# ------------------------------------------------------------------------------- journal


async def test_a_dead_replicas_update_is_replayed_once_by_one_replica(
    stores: list[PostgresStorage], clock: FakeClock
) -> None:
    await dead_replica(stores[0], clock)
    assert await stores[0].journal_record(5, PAYLOAD, "dead")
    await stores[0].replica_beat("live")
    assert await stores[0].journal_record(6, PAYLOAD, "live")  # being answered right now
    journals = [
        UpdateJournal(store, clock=clock, replicas=registry(store, clock, name))
        for store, name in ((stores[1], "b"), (stores[2], "c"))
    ]
    for store, name in ((stores[1], "b"), (stores[2], "c")):
        await store.replica_beat(name)
    claimed = await asyncio.gather(*(journal.replayable() for journal in journals))
    assert sorted(entry.update_id for entries in claimed for entry in entries) == [5]
    winner = journals[0] if claimed[0] else journals[1]
    assert await winner.begin_replay(5)
    # The replaying replica dies too: the third one does not feed it a third time.
    clock.now += TIMEOUT + 1
    await stores[0].replica_beat("live")
    third = UpdateJournal(stores[0], clock=clock, replicas=registry(stores[0], clock, "live"))
    assert await third.replayable() == []  # 5 closed (replayed once); 6 is its own


# ------------------------------------------------------------------------ clean shutdown


async def test_a_clean_stop_releases_work_at_once(
    stores: list[PostgresStorage], clock: FakeClock
) -> None:
    leaving = registry(stores[0], clock, "a")
    await leaving.start()
    job = await new_job(stores[0], "a")
    assert await stores[0].journal_record(7, PAYLOAD, "a")
    staying = registry(stores[1], clock, "b")
    await staying.start()
    assert await stores[1].orphans("video_jobs", "b", staying.alive_since()) == []
    await leaving.close()
    # No timeout to wait for: released rows have no owner.
    assert await stores[1].orphans("video_jobs", "b", staying.alive_since()) == [(job.id, None)]
    assert await stores[1].orphans("update_journal", "b", staying.alive_since()) == [(7, None)]
    await staying.close()


async def test_the_scan_loop_takes_over_in_the_background(
    stores: list[PostgresStorage],
) -> None:
    scans = asyncio.Event()

    async def scanner() -> None:
        scans.set()

    replicas = Replicas(stores[0], shared=True, timeout=2.0, heartbeat=0.5, scan_interval=0.05)
    replicas.add_scanner("test", scanner)
    await replicas.start()
    scans.clear()
    await asyncio.wait_for(scans.wait(), 2)  # scanned again, without being asked
    await replicas.close()


# ------------------------------------------------------------------ one process (SQLite)


async def test_one_process_takes_over_everything_of_earlier_runs(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = SQLiteStorage(tmp_path / "bot.db", clock=clock)
    await store.connect()
    try:
        # The last run (id "old") left a job; its heartbeat is fresh (it was killed a
        # second ago), but the instance lock proves it is gone.
        await store.replica_beat("old")
        job = await new_job(store, "old")
        media = FakeMedia([done()])
        solo = Replicas(store, clock=clock)
        service = video_service(store, solo, media)
        notifier = FakeNotifier()
        service.set_notifier(notifier)
        await service.start()
        for _ in range(200):
            if notifier.completed_calls:
                break
            await asyncio.sleep(0.01)
        assert [j.id for j, _ in notifier.completed_calls] == [job.id]
        await service.close()
    finally:
        await store.close()
