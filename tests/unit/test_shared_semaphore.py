"""GIGACHAT_MAX_STREAMS across replicas: a Redis semaphore whose holders expire."""

from __future__ import annotations

import asyncio
import random

from services.llm.slots import FairSlots
from services.shared.semaphore import RedisSemaphore
from tests.unit.shared_redis import Replicas, replicas

__all__ = ["replicas"]


def semaphore(replicas: Replicas, limit: int, **timing: float) -> RedisSemaphore:
    return RedisSemaphore(
        replicas.client(),
        replicas.guard(),
        key=f"{replicas.prefix}slots:gigachat",
        limit=limit,
        poll=timing.pop("poll", 0.01),
        **timing,
    )


async def test_two_replicas_never_hold_more_than_the_limit(replicas: Replicas) -> None:
    limit = 2
    # Each replica's own fair slots allow `limit` locally, as GIGACHAT_MAX_STREAMS does.
    replica_slots = [
        FairSlots(limit, shared=semaphore(replicas, limit)),
        FairSlots(limit, shared=semaphore(replicas, limit)),
    ]
    holding = 0
    most = 0
    done = 0
    rng = random.Random(7)

    async def stream(slots: FairSlots, user: int) -> None:
        nonlocal holding, most, done
        for _ in range(4):
            async with slots.hold(user):
                holding += 1
                most = max(most, holding)
                await asyncio.sleep(rng.uniform(0.005, 0.02))
                holding -= 1
        done += 1

    await asyncio.wait_for(
        asyncio.gather(*(stream(s, user) for s in replica_slots for user in range(4))), timeout=20
    )
    assert done == 8
    assert most == limit  # reached, never exceeded
    assert await semaphore(replicas, limit).holders() == 0  # every place given back


async def test_without_the_shared_count_two_replicas_double_it(replicas: Replicas) -> None:
    # The control: plain local slots on two replicas hold twice the limit together.
    replica_slots = [FairSlots(1), FairSlots(1)]
    holding = most = 0

    async def stream(slots: FairSlots) -> None:
        nonlocal holding, most
        async with slots.hold("u"):
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.02)
            holding -= 1

    await asyncio.gather(*(stream(s) for s in replica_slots))
    assert most == 2


async def test_a_dead_holder_expires_and_frees_its_place(replicas: Replicas) -> None:
    dead = semaphore(replicas, 1, ttl=0.3, refresh=0.1)
    # A replica took the place and died: nobody refreshes nor releases it.
    assert await dead._try("dead-replica") is True
    alive = semaphore(replicas, 1, ttl=0.3, refresh=0.1)
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with alive.hold():
        waited = loop.time() - began
        assert await alive.holders() == 1
    assert 0.2 <= waited < 1.5  # waited for the expiry, not forever


async def test_a_live_holder_is_refreshed_past_its_ttl(replicas: Replicas) -> None:
    first = semaphore(replicas, 1, ttl=0.2, refresh=0.05)
    second = semaphore(replicas, 1, ttl=0.2, refresh=0.05)
    order: list[str] = []

    async def long_stream() -> None:
        async with first.hold():
            order.append("first in")
            await asyncio.sleep(0.6)  # three ttls: alive thanks to the refresh
            order.append("first out")

    async def late() -> None:
        await asyncio.sleep(0.05)
        async with second.hold():
            order.append("second in")

    await asyncio.wait_for(asyncio.gather(long_stream(), late()), timeout=5)
    assert order == ["first in", "first out", "second in"]


async def test_a_cancelled_waiter_gives_back_its_local_slot(replicas: Replicas) -> None:
    shared = semaphore(replicas, 1)
    slots = FairSlots(2, shared=shared)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with slots.hold("a"):
            entered.set()
            await release.wait()

    first = asyncio.create_task(holder())
    await entered.wait()
    waiting = asyncio.create_task(holder())  # local slot granted, waits for the shared one
    await asyncio.sleep(0.05)
    assert slots.in_use == 2
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert slots.in_use == 1
    release.set()
    await first
    assert slots.in_use == 0 and await shared.holders() == 0


async def test_redis_gone_the_local_limit_still_holds() -> None:
    from redis.asyncio import Redis

    from services.shared.guard import RedisGuard

    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    shared = RedisSemaphore(client, RedisGuard(timeout=0.2), key="test:gone:slots", limit=1)
    slots = FairSlots(1, shared=shared)
    holding = most = 0

    async def stream() -> None:
        nonlocal holding, most
        async with slots.hold("u"):
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.01)
            holding -= 1

    await asyncio.wait_for(asyncio.gather(*(stream() for _ in range(3))), timeout=3)
    assert most == 1
    await client.aclose()
