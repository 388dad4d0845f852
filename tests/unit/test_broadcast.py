"""BroadcastService on a real SQLite database, with a recording sender in Telegram's place."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest

from services.broadcast import (
    BroadcastBusy,
    BroadcastService,
    DeliveryOutcome,
    RetryLater,
    SourceMissing,
)
from services.storage import Broadcast, SQLiteStorage
from services.users import UserService

ADMIN = 1


class Sender:
    """Records every copy; `script[user_id]` says what that user's attempts do, in order."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sent: list[tuple[float, int]] = []  # (monotonic time, chat id) of every attempt
        self.script: dict[int, list[object]] = {}
        self.delay = delay
        self.in_flight = 0
        self.peak_in_flight = 0
        self.on_send: Callable[[int], None] | None = None

    async def copy(self, chat_id: int, from_chat_id: int, message_id: int) -> DeliveryOutcome:
        assert (from_chat_id, message_id) == (ADMIN, 77)
        self.sent.append((time.monotonic(), chat_id))
        if self.on_send is not None:
            self.on_send(chat_id)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            steps = self.script.get(chat_id)
            step = steps.pop(0) if steps else DeliveryOutcome.DELIVERED
            if isinstance(step, BaseException):
                raise step
            assert isinstance(step, DeliveryOutcome)
            return step
        finally:
            self.in_flight -= 1

    def recipients(self) -> list[int]:
        return [chat for _, chat in self.sent]


class Notifier:
    def __init__(self) -> None:
        self.reports: list[Broadcast] = []  # progress() calls
        self.endings: list[Broadcast] = []  # finished() calls
        self.done = asyncio.Event()
        self.fail = False
        self.sender: Sender | None = None
        self.sent_before_report: list[int] = []  # how many copies had gone out at each report

    async def progress(self, broadcast: Broadcast) -> None:
        self.reports.append(broadcast)
        if self.sender is not None:
            self.sent_before_report.append(len(self.sender.sent))
        if self.fail:
            raise RuntimeError("notifier bug")

    async def finished(self, broadcast: Broadcast) -> None:
        self.endings.append(broadcast)
        self.done.set()
        if self.fail:
            raise RuntimeError("notifier bug")


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    store = SQLiteStorage(tmp_path / "bot.db")
    await store.connect()
    yield store
    await store.close()


async def add_users(storage: SQLiteStorage, ids: range | list[int]) -> None:
    for user_id in ids:
        await storage.upsert_user(user_id, username=None, first_name="u", language_code="en")


def make(
    storage: SQLiteStorage, sender: Sender, notifier: Notifier, *, rate: float = 500, **kw: float
) -> BroadcastService:
    service = BroadcastService(storage, rate=rate, **kw)  # type: ignore[arg-type]
    service.attach(sender, notifier)
    return service


async def run_one(service: BroadcastService, notifier: Notifier, timeout: float = 10) -> Broadcast:  # noqa: ASYNC109
    await service.start(
        admin_id=ADMIN, from_chat_id=ADMIN, message_id=77, lang="en", progress_message_id=5
    )
    await asyncio.wait_for(notifier.done.wait(), timeout)
    notifier.done.clear()
    return notifier.endings[-1]


async def test_every_user_gets_one_copy_in_id_order(storage: SQLiteStorage) -> None:
    await add_users(storage, range(10, 130))
    sender, notifier = Sender(), Notifier()
    service = make(storage, sender, notifier, page_seconds=0.05)  # pages of 25

    result = await run_one(service, notifier)

    assert sender.recipients() == list(range(10, 130))
    assert (result.state, result.delivered, result.blocked, result.failed) == ("done", 120, 0, 0)
    assert result.total == 120 and result.cursor == 129 and result.finished_at is not None
    assert len(notifier.endings) == 1
    assert service.running is None
    stored = await storage.get_broadcast(result.id)
    assert stored is not None and stored.state == "done"


async def test_blocked_users_are_marked_and_skipped_next_time(storage: SQLiteStorage) -> None:
    await add_users(storage, range(1, 21))
    sender, notifier = Sender(), Notifier()
    sender.script = {5: [DeliveryOutcome.BLOCKED], 6: [DeliveryOutcome.BLOCKED]}
    service = make(storage, sender, notifier)

    first = await run_one(service, notifier)
    assert (first.delivered, first.blocked) == (18, 2)
    user = await storage.get_user(5)
    assert user is not None and user.is_blocked
    assert await service.recipients() == 18

    sender.sent.clear()
    second = await run_one(service, notifier)
    assert 5 not in sender.recipients() and 6 not in sender.recipients()
    assert (second.total, second.delivered) == (18, 18)


async def test_blocked_users_are_marked_through_the_users_cache(storage: SQLiteStorage) -> None:
    await add_users(storage, range(1, 11))
    published: list[list[int]] = []

    class Changes:
        async def publish(self, ids: Iterable[int]) -> None:
            published.append(list(ids))

    users = UserService(storage, frozenset(), changes=Changes())
    await users.touch(5, username=None, first_name="U", language_code="en")  # cached
    sender, notifier = Sender(), Notifier()
    sender.script = {5: [DeliveryOutcome.BLOCKED]}
    service = BroadcastService(storage, rate=500, users=users)
    service.attach(sender, notifier)
    await run_one(service, notifier)
    # Other replicas are told; this one's cached record knows, so the user's next message
    # (proof of unblocking) is written, not served from the cache.
    assert published == [[5]]
    await users.touch(5, username=None, first_name="U", language_code="en")
    user = await storage.get_user(5)
    assert user is not None and not user.is_blocked


async def test_sends_are_paced_at_the_rate(storage: SQLiteStorage) -> None:
    await add_users(storage, range(1, 41))
    sender, notifier = Sender(), Notifier()
    service = make(storage, sender, notifier, rate=100, page_seconds=0.1)  # pages of 10

    await run_one(service, notifier)

    times = [at for at, _ in sender.sent]
    span = times[-1] - times[0]
    # 39 gaps of 10 ms at 100/s: never faster, and page boundaries add no visible stall.
    assert span >= 0.39 * 0.95
    assert span < 1.5
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.005


async def test_stop_ends_after_messages_on_their_way(storage: SQLiteStorage) -> None:
    await add_users(storage, range(1, 201))
    sender, notifier = Sender(), Notifier()
    service = make(storage, sender, notifier, rate=200, page_seconds=0.05)
    started = await service.start(
        admin_id=ADMIN, from_chat_id=ADMIN, message_id=77, lang="en", progress_message_id=5
    )
    sender.on_send = lambda chat: chat == 30 and asyncio.ensure_future(service.stop(started.id))

    await asyncio.wait_for(notifier.done.wait(), 10)

    result = notifier.endings[-1]
    assert result.state == "stopped"
    assert 30 <= len(sender.sent) < 200
    assert result.delivered == len(sender.sent)
    assert result.cursor == sender.recipients()[-1]  # exact: nothing sent beyond it
    assert await service.stop(started.id) is False  # no longer running


async def test_a_429_pauses_everyone_then_the_recipient_is_retried(
    storage: SQLiteStorage,
) -> None:
    await add_users(storage, range(1, 31))
    sender, notifier = Sender(), Notifier()
    sender.script = {10: [RetryLater(0.3)]}
    service = make(storage, sender, notifier, rate=200)

    result = await run_one(service, notifier)

    assert result.delivered == 30 and result.failed == 0
    attempts = [at for at, chat in sender.sent if chat == 10]
    assert len(attempts) == 2
    first_429 = attempts[0]
    # Nobody was sent to during the pause.
    during = [chat for at, chat in sender.sent if first_429 < at < first_429 + 0.28]
    assert during == []
    assert sorted(set(sender.recipients())) == list(range(1, 31))


async def test_a_recipient_that_keeps_drawing_429_is_counted_failed(
    storage: SQLiteStorage,
) -> None:
    await add_users(storage, range(1, 6))
    sender, notifier = Sender(), Notifier()
    sender.script = {3: [RetryLater(0.01)] * 5}
    service = make(storage, sender, notifier)

    result = await run_one(service, notifier)

    assert (result.delivered, result.failed) == (4, 1)
    assert sender.recipients().count(3) == 3


async def paused_at_user_3(
    storage: SQLiteStorage, sender: Sender, notifier: Notifier
) -> tuple[BroadcastService, Broadcast]:
    """A broadcast to users 1-10 whose copy to user 3 drew a 60 s "retry after"."""
    await add_users(storage, range(1, 11))
    sender.script = {3: [RetryLater(60)]}
    reached = asyncio.Event()
    sender.on_send = lambda chat: chat == 3 and reached.set()
    service = make(storage, sender, notifier, rate=100)
    started = await service.start(
        admin_id=ADMIN, from_chat_id=ADMIN, message_id=77, lang="en", progress_message_id=5
    )
    await asyncio.wait_for(reached.wait(), 5)
    sender.on_send = None
    await asyncio.sleep(0.02)  # the 429 is in: everybody is paused
    return service, started


async def test_stop_during_a_long_pause_takes_effect_at_once(storage: SQLiteStorage) -> None:
    sender, notifier = Sender(), Notifier()
    service, started = await paused_at_user_3(storage, sender, notifier)
    assert await service.stop(started.id)

    await asyncio.wait_for(notifier.done.wait(), 2)  # not 60 s

    result = notifier.endings[-1]
    assert (result.state, result.delivered, result.failed) == ("stopped", 2, 0)
    assert sender.recipients() == [1, 2, 3]


async def test_shutdown_during_a_pause_resends_to_whoever_was_waiting(
    storage: SQLiteStorage,
) -> None:
    sender, notifier = Sender(), Notifier()
    service, started = await paused_at_user_3(storage, sender, notifier)
    await asyncio.wait_for(service.close(), 2)

    paused = await storage.get_broadcast(started.id)
    assert paused is not None and (paused.state, paused.cursor, paused.delivered) == (
        "running",
        2,
        2,
    )

    resumed = make(storage, sender, notifier, rate=100)
    await resumed.resume()
    await asyncio.wait_for(notifier.done.wait(), 5)
    assert sender.recipients() == [1, 2, 3, *range(3, 11)]
    assert notifier.endings[-1].delivered == 10


async def test_errors_are_counted_and_the_rest_still_receive(storage: SQLiteStorage) -> None:
    await add_users(storage, range(1, 11))
    sender, notifier = Sender(), Notifier()
    sender.script = {4: [RuntimeError("boom")], 7: [DeliveryOutcome.FAILED]}
    notifier.fail = True  # notifier bugs are logged, never stop the broadcast
    service = make(storage, sender, notifier, progress_interval=0.001)

    result = await run_one(service, notifier)

    assert (result.state, result.delivered, result.failed) == ("done", 8, 2)
    assert sender.recipients() == list(range(1, 11))


async def test_deleted_source_ends_the_broadcast_as_failed(storage: SQLiteStorage) -> None:
    await add_users(storage, range(1, 101))
    sender, notifier = Sender(), Notifier()
    sender.script = {3: [SourceMissing("message to copy not found")]}
    service = make(storage, sender, notifier, rate=100, page_seconds=0.05)

    result = await run_one(service, notifier)

    assert result.state == "failed"
    assert len(sender.sent) < 100


async def test_only_one_broadcast_runs_at_a_time(storage: SQLiteStorage) -> None:
    await add_users(storage, range(1, 51))
    sender, notifier = Sender(), Notifier()
    service = make(storage, sender, notifier, rate=100)
    first = await service.start(
        admin_id=ADMIN, from_chat_id=ADMIN, message_id=77, lang="en", progress_message_id=None
    )
    with pytest.raises(BroadcastBusy) as busy:
        await service.start(
            admin_id=ADMIN, from_chat_id=ADMIN, message_id=77, lang="en", progress_message_id=None
        )
    assert busy.value.running.id == first.id
    assert service.running is not None and service.running.id == first.id
    await service.stop(first.id)
    await asyncio.wait_for(notifier.done.wait(), 10)


async def test_progress_is_reported_while_sending(storage: SQLiteStorage) -> None:
    await add_users(storage, range(1, 61))
    sender, notifier = Sender(), Notifier()
    notifier.sender = sender
    service = make(storage, sender, notifier, rate=200, page_seconds=0.05, progress_interval=0.05)

    await run_one(service, notifier)

    # The first report comes before any copy: it turns the admin's panel into the progress
    # view, and, coming from the broadcast's own task, can never land after the final one.
    assert notifier.sent_before_report[0] == 0 and notifier.reports[0].delivered == 0
    assert len(notifier.reports) >= 3
    done = [b.delivered for b in notifier.reports]
    assert done == sorted(done) and done[-1] <= 60


async def test_shutdown_keeps_the_place_and_a_restart_finishes_without_repeats(
    storage: SQLiteStorage,
) -> None:
    await add_users(storage, range(1, 301))
    sender, notifier = Sender(), Notifier()
    service = make(storage, sender, notifier, rate=300, page_seconds=0.1)
    started = await service.start(
        admin_id=ADMIN, from_chat_id=ADMIN, message_id=77, lang="en", progress_message_id=5
    )
    await asyncio.sleep(0.3)
    await service.close()

    paused = await storage.get_broadcast(started.id)
    assert paused is not None and paused.state == "running"
    assert 0 < paused.cursor < 300
    assert paused.cursor == sender.recipients()[-1]
    assert notifier.endings == []

    resumed = make(storage, sender, notifier, rate=300)
    await resumed.resume()
    await asyncio.wait_for(notifier.done.wait(), 10)

    assert sender.recipients() == list(range(1, 301))  # each once, in order
    result = notifier.endings[-1]
    assert (result.id, result.state, result.delivered) == (started.id, "done", 300)


async def test_users_who_join_during_a_broadcast_receive_it(storage: SQLiteStorage) -> None:
    await add_users(storage, range(1, 41))
    sender, notifier = Sender(), Notifier()
    service = make(storage, sender, notifier, rate=200, page_seconds=0.05)
    joined: list[asyncio.Future[None]] = []
    sender.on_send = lambda chat: (
        chat == 5 and joined.append(asyncio.ensure_future(add_users(storage, [1000])))
    )

    result = await run_one(service, notifier)

    assert sender.recipients()[-1] == 1000
    assert result.delivered == 41


async def test_in_flight_sends_are_bounded(storage: SQLiteStorage) -> None:
    await add_users(storage, range(1, 61))
    sender, notifier = Sender(delay=0.1), Notifier()
    service = make(storage, sender, notifier, rate=1000, max_in_flight=4)

    result = await run_one(service, notifier)

    assert result.delivered == 60
    assert sender.peak_in_flight == 4


async def test_a_busy_service_refuses_to_start_after_close(storage: SQLiteStorage) -> None:
    sender, notifier = Sender(), Notifier()
    service = make(storage, sender, notifier)
    await service.close()
    with pytest.raises(RuntimeError):
        await service.start(
            admin_id=ADMIN, from_chat_id=ADMIN, message_id=77, lang="en", progress_message_id=None
        )


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "x.db")
    with pytest.raises(ValueError):
        BroadcastService(store, rate=0)
    with pytest.raises(ValueError):
        BroadcastService(store, rate=1, max_in_flight=0)
