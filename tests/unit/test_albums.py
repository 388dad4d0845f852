from __future__ import annotations

import asyncio
import random
import time

import pytest

from services.albums import AlbumCollector


async def _add_later(collector: AlbumCollector[int], group: str, item: int, delay: float):
    await asyncio.sleep(delay)
    return await collector.add(group, item)


async def test_concurrent_adds_make_one_batch_in_arrival_order() -> None:
    collector: AlbumCollector[int] = AlbumCollector(window=0.05)
    results = await asyncio.gather(*(collector.add("g", i) for i in range(5)))
    assert results[0] == [0, 1, 2, 3, 4]
    assert results[1:] == [None] * 4
    assert len(collector) == 0


async def test_followers_return_at_once_while_leader_waits() -> None:
    collector: AlbumCollector[str] = AlbumCollector(window=0.2)
    leader = asyncio.create_task(collector.add("g", "a"))
    await asyncio.sleep(0)
    started = time.monotonic()
    assert await collector.add("g", "b") is None
    assert time.monotonic() - started < 0.05
    assert not leader.done()
    assert await leader == ["a", "b"]


async def test_each_item_extends_the_window() -> None:
    window = 0.15
    collector: AlbumCollector[int] = AlbumCollector(window=window)
    started = time.monotonic()
    # Items 0.06 s apart: the album spans 0.3 s, twice the window, yet stays one batch.
    results = await asyncio.gather(*(_add_later(collector, "g", i, i * 0.06) for i in range(6)))
    elapsed = time.monotonic() - started
    assert results[0] == [0, 1, 2, 3, 4, 5]
    assert results[1:] == [None] * 5
    assert elapsed >= 0.3 + window - 0.02  # waited a full quiet window after the last item
    assert elapsed < 0.3 + window + 1.0


async def test_gap_longer_than_window_starts_a_new_batch() -> None:
    collector: AlbumCollector[int] = AlbumCollector(window=0.05)
    first, second = await asyncio.gather(
        _add_later(collector, "g", 1, 0), _add_later(collector, "g", 2, 0.25)
    )
    # Nothing is remembered about a finished group, so the late item leads its own batch.
    assert first == [1]
    assert second == [2]
    assert len(collector) == 0


async def test_max_items_completes_without_waiting_for_the_window() -> None:
    collector: AlbumCollector[int] = AlbumCollector(window=30, max_items=3)
    started = time.monotonic()
    results = await asyncio.gather(*(collector.add("g", i) for i in range(3)))
    assert results == [[0, 1, 2], None, None]
    assert time.monotonic() - started < 1.0
    assert len(collector) == 0


async def test_items_beyond_max_items_start_the_next_batch() -> None:
    collector: AlbumCollector[int] = AlbumCollector(window=0.05, max_items=3)
    results = await asyncio.gather(*(collector.add("g", i) for i in range(5)))
    batches = [r for r in results if r is not None]
    assert batches == [[0, 1, 2], [3, 4]]
    assert results[3] == [3, 4]  # the first item past the full album leads the next one


async def test_max_items_one_returns_immediately() -> None:
    collector: AlbumCollector[str] = AlbumCollector(window=30, max_items=1)
    assert await asyncio.wait_for(collector.add("g", "x"), 1) == ["x"]
    assert await asyncio.wait_for(collector.add("g", "y"), 1) == ["y"]
    assert len(collector) == 0


async def test_separate_groups_do_not_mix() -> None:
    collector: AlbumCollector[str] = AlbumCollector(window=0.05)
    results = await asyncio.gather(
        collector.add("a", "a1"),
        collector.add("b", "b1"),
        collector.add("a", "a2"),
        collector.add("b", "b2"),
        collector.add("c", "c1"),
    )
    assert results == [["a1", "a2"], ["b1", "b2"], None, None, ["c1"]]
    assert len(collector) == 0


async def test_state_exists_only_while_collecting() -> None:
    collector: AlbumCollector[int] = AlbumCollector(window=0.1)
    leader = asyncio.create_task(collector.add("g", 1))
    await asyncio.sleep(0.01)
    assert len(collector) == 1
    assert await leader == [1]
    assert len(collector) == 0


async def test_cancelled_leader_does_not_leak_its_album() -> None:
    collector: AlbumCollector[int] = AlbumCollector(window=0.2)
    leader = asyncio.create_task(collector.add("g", 1))
    await asyncio.sleep(0.01)
    assert await collector.add("g", 2) is None
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert len(collector) == 0
    # The group id is usable again: a new item leads a fresh album.
    assert await collector.add("g", 3) == [3]
    assert len(collector) == 0


async def test_leader_timeout_via_wait_for_cleans_up() -> None:
    collector: AlbumCollector[int] = AlbumCollector(window=10)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(collector.add("g", 1), 0.02)
    assert len(collector) == 0


async def test_many_concurrent_albums_each_item_delivered_exactly_once() -> None:
    rng = random.Random(7)
    collector: AlbumCollector[tuple[str, int]] = AlbumCollector(window=0.1, max_items=10)
    expected: dict[str, list[tuple[str, int]]] = {}
    jobs = []
    for g in range(60):
        group = f"album-{g}"
        offset = rng.uniform(0, 0.2)
        count = rng.randint(1, 10)
        expected[group] = [(group, k) for k in range(count)]
        for k in range(count):
            jobs.append((offset, group, k))
            # Items of one album arrive close together (well inside the window), like
            # Telegram's, interleaved with other albums' items.
            offset += rng.uniform(0.001, 0.02)
    rng.shuffle(jobs)

    # Absolute deadlines on the loop's timer heap: item k of an album is added strictly
    # after item k-1, whatever order the tasks started in, even when a busy machine makes
    # the loop late and some deadlines are already past (asyncio.sleep would then yield
    # in task order instead).
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1

    async def deliver(offset: float, group: str, k: int):
        arrived = loop.create_future()
        loop.call_at(start + offset, arrived.set_result, None)
        await arrived
        return group, await collector.add(group, (group, k))

    results = await asyncio.gather(*(deliver(*job) for job in jobs))
    batches: dict[str, list[list[tuple[str, int]]]] = {}
    for group, batch in results:
        if batch is not None:
            batches.setdefault(group, []).append(batch)
    assert batches.keys() == expected.keys()
    for group, items in expected.items():
        assert batches[group] == [items], group  # one batch, all items, in arrival order
    assert len(collector) == 0


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        AlbumCollector(window=-1)
    with pytest.raises(ValueError):
        AlbumCollector(max_items=0)
