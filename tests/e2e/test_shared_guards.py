"""The bot with REDIS_URL and another replica beside it (its Redis state, written as that replica
would): the user's flood window and the access list are the same on both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from services.shared.access import RedisAccessState
from services.shared.guard import RedisGuard
from tests.e2e.conftest import Bench, sharing_redis, text_of
from tests.services import redis_url

USER = 1001


@pytest.fixture
async def shared_bench(bench: Bench) -> AsyncIterator[Bench]:
    async with sharing_redis(bench, user_flood_per_minute=3):
        yield bench


@pytest.fixture
async def other_replica(shared_bench: Bench) -> AsyncIterator[RedisAccessState]:
    assert shared_bench.app is not None and shared_bench.app.services.shared is not None
    client = Redis.from_url(redis_url())
    yield RedisAccessState(
        client, RedisGuard(timeout=1.0), prefix=shared_bench.app.services.shared.prefix
    )
    await client.aclose()


async def test_messages_taken_by_another_replica_count_in_the_flood_window(
    shared_bench: Bench, other_replica: RedisAccessState
) -> None:
    bench = shared_bench
    answer = await bench.ask(USER, "hello")  # one here
    assert "Too many" not in text_of(answer)
    for _ in range(2):  # two on the other replica
        decision = await other_replica.flood(USER, 3, 60.0)
        assert decision is not None and decision.taken
    notice = await bench.ask(USER, "and another")
    assert "Too many messages" in text_of(notice)
    assert len(bench.upstream.chat_requests()) == 1
    # The other replica refuses the next one silently: the user was told once.
    decision = await other_replica.flood(USER, 3, 60.0)
    assert decision is not None and not decision.taken and not decision.notify
    bench.telegram.send_message(USER, "still?")
    await asyncio.sleep(0.3)
    assert [c for c in bench.finals(USER) if "Too many" in text_of(c)] == [notice]


async def test_an_answer_in_flight_on_another_replica_counts_against_the_quota(
    shared_bench: Bench, other_replica: RedisAccessState
) -> None:
    bench = shared_bench
    await bench.restart(redis_url=redis_url(), user_daily_requests=2)
    first = await bench.ask(USER, "one")  # stored: one of two used
    assert "limit" not in text_of(first).lower()
    # The other replica is answering this user right now: the second place is taken (once
    # this replica has released the first answer's place, a moment after storing it; adding
    # the same holder again adds nothing).
    async with asyncio.timeout(2):
        while await other_replica.reserve(USER, "answer-on-the-other-replica", 60.0) != 1:  # noqa: ASYNC110 - state on Redis
            await asyncio.sleep(0.01)
    refused = await bench.ask(USER, "two")
    assert "limit" in text_of(refused).lower()
    assert len(bench.upstream.chat_requests()) == 1
    # That answer ended without a usage record (it failed upstream): the place is free again,
    # and this replica's own reservation was released when its answer was stored.
    await other_replica.unreserve(USER, "answer-on-the-other-replica")
    third = await bench.ask(USER, "three")
    assert text_of(third) == "Echo: three"
    # Released a moment after the answer is stored (re-adding the same holder adds nothing).
    async with asyncio.timeout(2):
        while await other_replica.reserve(USER, "probe", 60.0) != 1:  # noqa: ASYNC110 - state on Redis
            await asyncio.sleep(0.01)
