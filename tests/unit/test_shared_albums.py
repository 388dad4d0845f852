"""Albums collected across replicas on the real Redis: one leader gets every part, whichever
replica each part reached; a late part starts a new batch; a cancelled or killed leader's
album is answered by the replay of its update; and the local fallback without Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from services.shared.albums import RedisAlbumCollector
from services.shared.guard import RedisGuard
from tests.unit.shared_redis import Replicas, replicas

__all__ = ["replicas"]

Part = dict[str, Any]
GROUP = "album-1"


def part(n: int) -> Part:
    return {"id": f"m{n}", "photo": f"file-{n}"}


def collector(
    replicas: Replicas, *, window: float = 0.1, max_items: int = 10
) -> RedisAlbumCollector[Part]:
    """One replica's collector: its own client, as a separate process would have."""
    return RedisAlbumCollector(
        replicas.client(),
        replicas.guard(),
        prefix=replicas.prefix,
        dump=json.dumps,
        load=json.loads,
        key=lambda item: str(item["id"]),
        window=window,
        max_items=max_items,
    )


def key(replicas: Replicas, name: str) -> str:
    return f"{replicas.prefix}album:{GROUP}:{name}"


async def leading(replicas: Replicas, client: Redis) -> None:
    """Until some part holds the lead of GROUP."""
    async with asyncio.timeout(2):
        while not await client.exists(key(replicas, "leader")):  # noqa: ASYNC110 - state on Redis
            await asyncio.sleep(0.005)


async def assert_every_key_expires(replicas: Replicas, client: Redis) -> None:
    keys = [k async for k in client.scan_iter(match=f"{replicas.prefix}*")]
    for name in keys:
        assert 0 < await client.pttl(name) <= 60_000, name


async def test_parts_on_two_replicas_make_one_batch_for_one_leader(replicas: Replicas) -> None:
    a, b = collector(replicas), collector(replicas)
    probe = replicas.client()
    leader = asyncio.create_task(a.add(GROUP, part(0)))
    await leading(replicas, probe)
    for n in range(1, 6):  # alternately on b and a, each handed over at once
        started = time.monotonic()
        assert await (b if n % 2 else a).add(GROUP, part(n)) is None
        assert time.monotonic() - started < 0.05
    assert not leader.done()
    assert await leader == [part(n) for n in range(6)]
    # Nothing left to collect: the lead and the parts are gone, the rest expires.
    assert not await probe.exists(key(replicas, "items"), key(replicas, "leader"))
    await assert_every_key_expires(replicas, probe)

    # Parts arriving at the same moment on both: exactly one gets them all.
    results = await asyncio.gather(
        *((a if n % 2 else b).add("album-2", part(n)) for n in range(10, 16))
    )
    batches = [r for r in results if r is not None]
    assert len(batches) == 1
    assert sorted(p["id"] for p in batches[0]) == [f"m{n}" for n in range(10, 16)]


async def test_max_items_closes_the_album_at_once(replicas: Replicas) -> None:
    a, b = collector(replicas, window=5.0, max_items=3), collector(replicas, window=5.0)
    started = time.monotonic()
    leader = asyncio.create_task(a.add(GROUP, part(0)))
    await leading(replicas, replicas.client())
    assert await b.add(GROUP, part(1)) is None
    assert await b.add(GROUP, part(2)) is None
    assert await leader == [part(0), part(1), part(2)]
    assert time.monotonic() - started < 1.0  # not the 5 s window


async def test_a_part_after_the_batch_was_taken_starts_a_new_one(replicas: Replicas) -> None:
    a, b = collector(replicas), collector(replicas)
    leader = asyncio.create_task(a.add(GROUP, part(0)))
    await leading(replicas, replicas.client())
    assert await b.add(GROUP, part(1)) is None
    assert await leader == [part(0), part(1)]
    # Late: its own batch, led on b (not lost, not merged into the answered one).
    assert await b.add(GROUP, part(2)) == [part(2)]
    # A handed-over part delivered again (its update replayed) is not answered twice.
    assert await a.add(GROUP, part(1)) is None


async def test_a_cancelled_leader_gives_up_the_lead_and_its_replay_gets_the_album(
    replicas: Replicas,
) -> None:
    a, b, c = collector(replicas), collector(replicas), collector(replicas)
    probe = replicas.client()
    leader = asyncio.create_task(a.add(GROUP, part(0)))
    await leading(replicas, probe)
    assert await b.add(GROUP, part(1)) is None
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert not await probe.exists(key(replicas, "leader"))
    # The parts stay (for a while): the cancelled handler's update is replayed by the journal.
    assert await probe.llen(key(replicas, "items")) == 2
    await assert_every_key_expires(replicas, probe)
    assert await c.add(GROUP, part(0)) == [part(0), part(1)]
    assert not await probe.exists(key(replicas, "items"), key(replicas, "leader"))


async def die_leading(
    monkeypatch: pytest.MonkeyPatch, collector: Any, leader: asyncio.Task[Any]
) -> None:
    """The leading replica dies as a killed process does: its lead left in Redis."""

    async def dead(*_: object) -> None:
        return None

    monkeypatch.setattr(collector, "_give_up", dead)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_a_killed_leaders_replayed_part_leads_again_with_every_part(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = collector(replicas), collector(replicas), collector(replicas)
    probe = replicas.client()
    leader = asyncio.create_task(a.add(GROUP, part(0)))
    await leading(replicas, probe)
    assert await b.add(GROUP, part(1)) is None

    # Replica a dies: no clean-up, its lead is still in Redis.
    await die_leading(monkeypatch, a, leader)
    assert await probe.exists(key(replicas, "leader"))
    assert await b.add(GROUP, part(2)) is None  # the lead is held: handed over
    # The journal replays a's update on c: the same part, so the lead is its own again.
    assert await c.add(GROUP, part(0)) == [part(0), part(1), part(2)]


async def test_after_a_dead_leaders_lead_expired_the_next_part_gets_the_earlier_ones(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = collector(replicas), collector(replicas), collector(replicas)
    probe = replicas.client()
    leader = asyncio.create_task(a.add(GROUP, part(0)))
    await leading(replicas, probe)
    assert await b.add(GROUP, part(1)) is None

    await die_leading(monkeypatch, a, leader)
    lead_ttl = await probe.pttl(key(replicas, "leader"))
    assert 0 < lead_ttl <= 2_100  # window + 2 s: refreshed only by a living leader
    await probe.pexpire(key(replicas, "leader"), 1)  # ... that much later
    await asyncio.sleep(0.01)
    assert await b.add(GROUP, part(2)) == [part(0), part(1), part(2)]
    # The dead leader's update, replayed later, was answered in that batch.
    assert await c.add(GROUP, part(0)) is None


async def test_a_leader_killed_while_answering_gets_its_batch_again_on_replay(
    replicas: Replicas,
) -> None:
    a, b, c = collector(replicas), collector(replicas), collector(replicas)
    leader = asyncio.create_task(a.add(GROUP, part(0)))
    await leading(replicas, replicas.client())
    assert await b.add(GROUP, part(1)) is None
    assert await leader == [part(0), part(1)]
    # a died before its answer was sent: the journal replays its update on c.
    started = time.monotonic()
    assert await c.add(GROUP, part(0)) == [part(0), part(1)]
    assert time.monotonic() - started < 0.05  # complete already: no waiting


async def test_a_lead_that_lapsed_is_taken_by_one_leader_only(replicas: Replicas) -> None:
    a, b = collector(replicas), collector(replicas)
    probe = replicas.client()
    first = asyncio.create_task(a.add(GROUP, part(0)))
    await leading(replicas, probe)
    # a's loop stalled past its lead's TTL, and a new part arrives meanwhile.
    await probe.delete(key(replicas, "leader"))
    results = await asyncio.gather(first, b.add(GROUP, part(1)))
    assert sorted(results, key=lambda r: r is None) == [[part(0), part(1)], None]


async def test_redis_unreachable_falls_back_to_local_albums_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens on port 1: every call fails at once.
    down = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    albums: RedisAlbumCollector[Part] = RedisAlbumCollector(
        down,
        RedisGuard(timeout=0.5, retry_after=60),
        prefix="test:down:",
        dump=json.dumps,
        load=json.loads,
        window=0.05,
    )
    try:
        with caplog.at_level(logging.WARNING):
            assert await albums.add("album-0", part(9)) == [part(9)]  # alone: itself
            # Redis is not asked again for a while: this replica's parts, grouped locally.
            results = await asyncio.gather(*(albums.add(GROUP, part(n)) for n in range(3)))
            assert results == [[part(0), part(1), part(2)], None, None]
        unavailable = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(unavailable) == 1
    finally:
        await down.aclose()
