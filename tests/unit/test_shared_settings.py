"""Users' settings across replicas (services/shared/invalidation.py): a change made through one
replica is not served from another replica's cache, also while that replica's subscription
is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.shared.invalidation import InvalidationRelay
from services.users import UserService
from tests.unit.shared_redis import Replicas, replicas
from tests.unit.test_users_cache import USER, CountingStorage

__all__ = ["replicas"]


@pytest.fixture
async def storage() -> AsyncIterator[CountingStorage]:
    store = CountingStorage()
    await store.connect()
    await store.upsert_user(USER, username="u", first_name="U", language_code="en")
    yield store
    await store.close()


async def replica(
    replicas: Replicas, storage: CountingStorage, name: str
) -> tuple[UserService, InvalidationRelay[int]]:
    relay = InvalidationRelay(
        replicas.client(name),
        replicas.guard(),
        prefix=replicas.prefix,
        what="users' settings",
        parse=int,
        resubscribe_after=0.05,
    )
    users = UserService(storage, frozenset(), changes=relay)
    relay.listen(users.cache)
    await relay.ready()
    return users, relay


async def lang_of(users: UserService) -> str:
    profile = await users.touch(USER, username="u", first_name="U", language_code="en")
    return profile.lang


async def test_a_language_set_through_one_replica_is_used_by_the_other(
    replicas: Replicas, storage: CountingStorage
) -> None:
    a, relay_a = await replica(replicas, storage, "profiles-a")
    b, relay_b = await replica(replicas, storage, "profiles-b")
    try:
        assert await lang_of(b) == "en"  # cached by b
        await a.set_language(USER, "ru")
        # Published before set_language returned; delivered to b within moments.
        async with asyncio.timeout(2):
            while await lang_of(b) != "ru":  # noqa: ASYNC110 - polls the other replica's cache
                await asyncio.sleep(0.01)
        # And cached again afterwards.
        reads = storage.reads
        await b.get(USER)
        await b.get(USER)
        assert storage.reads == reads
    finally:
        await relay_a.close()
        await relay_b.close()


async def test_while_the_subscription_is_down_settings_are_read_every_time(
    replicas: Replicas, storage: CountingStorage
) -> None:
    b, relay_b = await replica(replicas, storage, "profiles-lost")
    try:
        await b.get(USER)
        reads = storage.reads
        await b.get(USER)
        assert storage.reads == reads  # cached
        # Redis drops the subscriber (as after a restart): b cannot hear changes any more.
        admin = replicas.client()
        for client in await admin.client_list():
            if client.get("name") == "profiles-lost" and "subscribe" in client.get("cmd", ""):
                await admin.client_kill_filter(_id=client["id"])
        async with asyncio.timeout(2):
            while True:  # the loss is noticed at the next read of the subscription
                before = storage.reads
                await b.get(USER)
                await b.get(USER)
                if storage.reads == before + 2:
                    break
                await asyncio.sleep(0.01)
        # Subscribed again: cached again.
        await relay_b.ready()
        async with asyncio.timeout(2):
            while True:
                await b.get(USER)
                before = storage.reads
                await b.get(USER)
                if storage.reads == before:
                    break
                await asyncio.sleep(0.01)
    finally:
        await relay_b.close()


async def test_a_malformed_message_forgets_everything(
    replicas: Replicas, storage: CountingStorage
) -> None:
    b, relay_b = await replica(replicas, storage, "profiles-bad")
    try:
        await b.get(USER)
        reads = storage.reads
        await replicas.client().publish(f"{replicas.prefix}changed:users' settings", "not an id")
        async with asyncio.timeout(2):
            while storage.reads == reads:
                await b.get(USER)
                await asyncio.sleep(0.01)
    finally:
        await relay_b.close()
