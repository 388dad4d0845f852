"""The bot with REDIS_URL and another replica beside it that got some parts of the same album
(its collector on the same Redis prefix, fed as that replica's handler would): the album is
answered once, with all its images, by whichever replica got its first part."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram.types import Message
from redis.asyncio import Redis

from services.shared.albums import RedisAlbumCollector
from services.shared.guard import RedisGuard
from tests.e2e.conftest import Bench, sharing_redis, text_of
from tests.e2e.test_media import image_parts, png_bytes
from tests.services import redis_url

USER = 8101
WINDOW = 1.0
_ids = itertools.count(1)


@pytest.fixture
async def shared_bench(bench: Bench) -> AsyncIterator[Bench]:
    async with sharing_redis(bench, album_window_seconds=WINDOW):
        yield bench


@pytest.fixture
async def other_replica(shared_bench: Bench) -> AsyncIterator[RedisAlbumCollector[Message]]:
    """The other replica's collector, with the bot's own codec (bot/factory.py)."""
    assert shared_bench.app is not None and shared_bench.app.services.shared is not None
    client = Redis.from_url(redis_url())
    yield RedisAlbumCollector(
        client,
        RedisGuard(timeout=1.0),
        prefix=shared_bench.app.services.shared.prefix,
        dump=lambda message: message.model_dump_json(exclude_unset=True, by_alias=True),
        load=Message.model_validate_json,
        key=lambda message: str(message.message_id),
        window=WINDOW,
    )
    await client.aclose()


def photo(bench: Bench, color: str, group: str, caption: str | None = None) -> dict[str, Any]:
    """A part of an album as Telegram delivers it (its file downloadable from fake Telegram)."""
    n = next(_ids)
    file_id = f"shared-album-{n}"
    bench.telegram.add_file(file_id, png_bytes(color), f"photos/shared_{n}.png")
    message: dict[str, Any] = {
        "message_id": 60_000 + n,
        "date": int(time.time()),
        "chat": {"id": USER, "type": "private", "first_name": "U"},
        "from": {"id": USER, "is_bot": False, "first_name": "U", "language_code": "en"},
        "media_group_id": group,
        "photo": [{"file_id": file_id, "file_unique_id": f"u{file_id}", "width": 64, "height": 48}],
    }
    if caption:
        message["caption"] = caption
    return message


async def lead_taken(bench: Bench, group: str) -> None:
    """Until the album's first part holds the lead (its update reached the handler)."""
    assert bench.app is not None and bench.app.services.shared is not None
    redis, prefix = bench.app.services.shared.redis, bench.app.services.shared.prefix
    async with asyncio.timeout(5):
        while not await redis.exists(f"{prefix}album:{group}:leader"):  # noqa: ASYNC110 - on Redis
            await asyncio.sleep(0.01)


async def test_an_album_split_over_two_replicas_is_answered_once_with_every_image(
    shared_bench: Bench, other_replica: RedisAlbumCollector[Message]
) -> None:
    bench = shared_bench
    group = "split-album"
    bench.telegram.push_update({"message": photo(bench, "red", group)})
    await lead_taken(bench, group)
    # Two parts reached the other replica (one with the album's caption, which the bot reads
    # back and answers): its handler hands them over and answers nothing.
    for color, caption in (("green", "Compare these"), ("blue", None)):
        part = Message.model_validate(photo(bench, color, group, caption))
        assert await other_replica.add(group, part) is None
    bench.telegram.push_update({"message": photo(bench, "yellow", group)})

    final = (await bench.telegram.wait_for("sendRichMessage", timeout=10))[0]
    await asyncio.sleep(WINDOW + 0.3)
    requests = bench.upstream.chat_requests()
    assert len(requests) == 1
    parts = image_parts(requests[0].json)
    assert parts[0]["text"] == "Compare these"
    assert sum(p["type"] == "image_url" for p in parts) == 4
    assert text_of(final) == "Echo: Compare these"
    assert bench.finals(USER) == [final]


async def test_parts_handed_to_the_other_replicas_leader_are_not_answered_here(
    shared_bench: Bench, other_replica: RedisAlbumCollector[Message]
) -> None:
    bench = shared_bench
    group = "led-elsewhere"
    first = Message.model_validate(photo(bench, "red", group, "What are these?"))
    leader = asyncio.create_task(other_replica.add(group, first))
    await lead_taken(bench, group)
    for color in ("green", "blue"):
        bench.telegram.push_update({"message": photo(bench, color, group)})
    batch = await leader
    assert batch is not None
    assert [m.caption for m in batch] == ["What are these?", None, None]
    assert len({m.message_id for m in batch}) == 3
    await asyncio.sleep(0.3)
    assert not bench.upstream.chat_requests()
    assert not bench.finals(USER)
