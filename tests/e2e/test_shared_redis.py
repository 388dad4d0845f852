"""The bot with REDIS_URL: answers, paces and stops as without it, its state in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.e2e.conftest import Bench, sharing_redis, text_of
from tests.services import redis_url

USER = 1001


@pytest.fixture
async def shared_bench(bench: Bench) -> AsyncIterator[Bench]:
    async with sharing_redis(bench, llm_rps=20):
        yield bench


async def test_a_question_is_answered_and_stopped_with_shared_state(shared_bench: Bench) -> None:
    bench = shared_bench
    assert bench.app is not None and bench.app.services.shared is not None
    answer = await bench.ask(USER, "hello")
    assert text_of(answer)

    bench.upstream.reply = lambda req: "word " * 200
    bench.upstream.chunks = 100
    bench.upstream.chunk_delay = 0.05
    bench.telegram.send_message(USER, "tell me a long story")
    drafts = await bench.telegram.wait_for(
        "sendRichMessageDraft", lambda c: "word" in str(c.params), count=2
    )
    bench.telegram.press_stop(USER, int(drafts[-1].params["draft_id"]))
    request = bench.upstream.chat_requests()[-1]
    await asyncio.wait_for(request.disconnected_event.wait(), 2)
    finals = await bench.telegram.wait_for(("sendRichMessage", "sendMessage"), count=2)
    assert "Stopped" in text_of(finals[-1])


async def test_a_stop_for_an_answer_streamed_elsewhere_is_published(shared_bench: Bench) -> None:
    bench = shared_bench
    assert bench.app is not None and bench.app.services.shared is not None
    client = Redis.from_url(redis_url())
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    prefix = bench.app.services.shared.prefix
    await pubsub.psubscribe(f"{prefix}stop:*")
    # A draft's Stop for an answer this replica does not stream (another replica's).
    bench.telegram.press_stop(USER, 123456)
    message = None
    for _ in range(40):
        message = await pubsub.get_message(timeout=0.1)
        if message is not None:
            break
    assert message is not None and message["channel"] == f"{prefix}stop:123456".encode()
    await pubsub.aclose()
    await client.aclose()
