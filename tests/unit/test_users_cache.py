"""The users' settings cache (services/users.py): what replicas' changes do to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import pytest

from services.storage import SQLiteStorage, UserRecord
from services.users import UserService

USER = 4242


class Published:
    """ProfileChanges that records what was published."""

    def __init__(self) -> None:
        self.ids: list[list[int]] = []

    async def publish(self, ids: Iterable[int]) -> None:
        self.ids.append(list(ids))


class CountingStorage(SQLiteStorage):
    """Counts reads of a user's row; `gate` (when set) holds reads until it is set."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.reads = 0
        self.gate: asyncio.Event | None = None
        self.reading = asyncio.Event()

    async def get_user(self, user_id: int) -> UserRecord | None:
        self.reads += 1
        self.reading.set()
        if self.gate is not None:
            await self.gate.wait()
        return await super().get_user(user_id)


@pytest.fixture
async def storage() -> AsyncIterator[CountingStorage]:
    store = CountingStorage()
    await store.connect()
    await store.upsert_user(USER, username="u", first_name="U", language_code="en")
    store.reads = 0  # writing may read the row back
    store.reading.clear()
    yield store
    await store.close()


async def test_a_cached_user_is_read_once(storage: CountingStorage) -> None:
    users = UserService(storage, frozenset())
    for _ in range(3):
        assert (await users.get(USER)) is not None
    assert storage.reads == 1


async def test_forgotten_ids_are_read_again(storage: CountingStorage) -> None:
    users = UserService(storage, frozenset())
    other = UserService(storage, frozenset())  # another replica on the same database
    assert (await users.get(USER)).lang == "en"  # type: ignore[union-attr]
    await other.set_language(USER, "ru")
    reads = storage.reads
    assert (await users.get(USER)).lang == "en"  # type: ignore[union-attr]  # not told yet
    users.cache.forget([USER, 1, 2])
    assert (await users.get(USER)).lang == "ru"  # type: ignore[union-attr]
    assert storage.reads == reads + 1


async def test_a_read_under_way_when_ids_are_forgotten_is_not_cached(
    storage: CountingStorage,
) -> None:
    users = UserService(storage, frozenset())
    storage.gate = asyncio.Event()
    reading = asyncio.create_task(users.get(USER))
    await storage.reading.wait()
    users.cache.forget([USER])  # a change elsewhere, heard while the old row was being read
    storage.gate.set()
    await reading
    reads = storage.reads
    await users.get(USER)
    assert storage.reads == reads + 1  # the row read before the change was not kept


async def test_a_suspended_cache_reads_every_time_until_resumed(storage: CountingStorage) -> None:
    users = UserService(storage, frozenset())
    await users.get(USER)
    users.cache.suspend_cache()
    for _ in range(3):
        await users.get(USER)
    assert storage.reads == 4
    users.cache.resume_cache()
    for _ in range(3):
        await users.get(USER)
    assert storage.reads == 5


async def test_every_settings_change_is_published(storage: CountingStorage) -> None:
    published = Published()
    users = UserService(storage, frozenset(), changes=published)
    await users.touch(USER, username="u", first_name="U", language_code="en")
    assert published.ids == []  # reads and unchanged touches publish nothing
    await users.set_language(USER, "ru")
    await users.set_model(USER, "m")
    await users.set_system_prompt(USER, "be brief")
    await users.set_temperature(USER, 0.5)
    await users.set_media_choice(USER, "tts_voice", "nova")
    await users.reset(USER)
    await users.set_blocked(USER, True)
    assert published.ids == [[USER]] * 7


async def test_users_marked_blocked_are_published_and_cached_as_blocked(
    storage: CountingStorage,
) -> None:
    published = Published()
    users = UserService(storage, frozenset(), changes=published)
    await users.touch(USER, username="u", first_name="U", language_code="en")
    await users.mark_blocked([USER, 5555])
    assert published.ids == [[USER, 5555]]
    record = await storage.get_user(USER)
    assert record is not None and record.is_blocked
    # The next message from the user proves otherwise, and is written (not served cached).
    await users.touch(USER, username="u", first_name="U", language_code="en")
    record = await storage.get_user(USER)
    assert record is not None and not record.is_blocked


async def test_with_a_max_age_a_record_is_read_again_once_old(storage: CountingStorage) -> None:
    now = [1000.0]
    users = UserService(storage, frozenset(), max_age=60.0, clock=lambda: now[0])
    await users.get(USER)
    reads = storage.reads
    now[0] += 59
    await users.get(USER)
    assert storage.reads == reads  # still fresh
    now[0] += 2  # a change notice lost (a replica killed between write and notice) ends here
    await users.get(USER)
    assert storage.reads == reads + 1
    await users.get(USER)
    assert storage.reads == reads + 1  # and is kept again
