"""Two replicas (two `build_app`s, each its own replica id) on one PostgreSQL schema and Redis,
sharing the fake Telegram: one dies mid-video-job and mid-broadcast (its tasks end without the
clean shutdown: nothing released, no last writes, its heartbeat stops), the other finishes both
with no duplicates once the dead one's heartbeat is older than REPLICA_TIMEOUT_SECONDS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.e2e.conftest import ADMIN_ID, Bench
from tests.e2e.test_admin import USERS, confirm_broadcast, copies, finished_report, join, press
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.upstream_server import FakeUpstream
from tests.pg_schema import fresh_schema
from tests.services import redis_url

VIDEO_USER = 7001


@pytest.fixture
async def replicas(
    telegram: FakeTelegram, upstream: FakeUpstream, tmp_path: Path
) -> AsyncIterator[tuple[Bench, Bench]]:
    redis = redis_url()
    async with fresh_schema() as url:
        telegram.reset()
        upstream.reset()
        overrides = {
            "database_url": url,
            "redis_url": redis,
            "replica_timeout_seconds": 2,
            "video_poll_seconds": 0.2,
            "broadcast_rps": 8,
            "broadcast_progress_seconds": 60,
        }
        first = Bench(telegram, upstream, tmp_path / "unused.db", overrides=dict(overrides))
        second = Bench(telegram, upstream, tmp_path / "unused.db", overrides=dict(overrides))
        try:
            yield first, second
        finally:
            await first.stop()
            await second.stop()
            client = Redis.from_url(redis)
            prefix = f"llmbot:{telegram.token.split(':')[0]}:"
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()


async def die(bench: Bench) -> None:
    """End a replica as a kill would, seen from the database: its heartbeat stops, its video
    pollers and its broadcast are cancelled where they are, and nothing is released."""
    app = bench.app
    assert app is not None
    services = app.services

    async def no_release() -> None:
        await services.replicas.halt()

    close_broadcasts = services.broadcasts.close

    async def cut_broadcast(grace: float = 5.0) -> None:
        run = services.broadcasts._run
        if run is not None and run.task is not None:
            run.task.cancel()  # where it is: no last write of the position
            await asyncio.gather(run.task, return_exceptions=True)
        await close_broadcasts(grace)

    services.replicas.close = no_release  # type: ignore[method-assign]
    services.broadcasts.close = cut_broadcast  # type: ignore[method-assign]
    await services.replicas.halt()  # no heartbeat from here on
    await bench.stop()


async def test_the_other_replica_finishes_a_video_and_a_broadcast_with_no_duplicates(
    replicas: tuple[Bench, Bench],
) -> None:
    first, second = replicas
    await first.start()
    await join(first, [ADMIN_ID, *USERS])
    # A video job on the first replica, still generating when it dies.
    first.upstream.video_steps = ["IN_QUEUE", *["IN_PROGRESS"] * 20, "COMPLETED"]
    first.telegram.send_message(VIDEO_USER, "/video a cat surfing a wave")
    await first.telegram.wait_for(
        "editMessageText", lambda c: "Generating" in c.params.get("text", ""), timeout=10
    )
    # A broadcast on the first replica, a few copies out when it dies.
    _, confirm = await confirm_broadcast(first, "Fail-over news")
    press(first, ADMIN_ID, confirm, "Send")
    await first.telegram.wait_for("copyMessage", count=3)

    await die(first)
    sent_before = len(copies(first))
    assert sent_before < len(USERS) + 1

    # The survivor: its scans take over once the dead one's heartbeat is 2 s old.
    await second.start()
    report = await finished_report(second, timeout=30)
    video = await second.telegram.wait_for("sendVideo", timeout=30)

    assert len(video) == 1 and video[0].chat_id == VIDEO_USER
    recipients = [c.chat_id for c in copies(second)]
    assert len(recipients) == len(set(recipients))  # nobody got two copies
    text = report.params["text"]
    assert "finished" in text
    # Every user (the video's asker too) is a recipient; the copies on their way when the
    # first replica died may be lost (counted failed), none is sent twice.
    everyone = {ADMIN_ID, VIDEO_USER, *USERS}
    assert set(recipients) <= everyone
    assert len(recipients) >= len(everyone) - 2
    # A copy that went out just before the kill but was never counted is reported failed.
    delivered = int(text.split("delivered ")[1].split()[0])
    failed = int(text.split("failed ")[1].split()[0])
    assert delivered + failed == len(everyone)
    assert delivered <= len(recipients) <= delivered + failed
