"""LLM_RPS across replicas: two limiters on one Redis rate never start two requests closer
than the interval, keep the rate full, and fall back to local pacing when Redis is gone."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import pytest

from services.llm.limiter import FairRateLimiter
from services.shared.gcra import GcraLimiter, SharedStartGate
from services.shared.guard import RedisGuard
from services.shared.rate import Rate
from tests.unit.shared_redis import Replicas, replicas

__all__ = ["replicas"]

RATE = 20.0  # starts per second: a 50 ms interval keeps the test short
# Loop and timer jitter of one process on a shared 2-core machine: a start may be measured
# up to this much late, so its successor may look this much closer.
JITTER = 0.008


def shared_limiter(replicas: Replicas, rate: float = RATE) -> FairRateLimiter:
    gcra = GcraLimiter(replicas.client(), replicas.guard(), prefix=replicas.prefix)
    return FairRateLimiter(rate, gate=SharedStartGate(gcra, "llm:openai", rate))


async def run_users(limiter: FairRateLimiter, users: int, each: int, starts: list[float]) -> None:
    async def user(key: int) -> None:
        for _ in range(each):
            await limiter.acquire(key)
            starts.append(time.monotonic())

    await asyncio.gather(*(user(key) for key in range(users)))


async def test_two_replicas_together_keep_the_interval_and_the_rate(replicas: Replicas) -> None:
    first, second = shared_limiter(replicas), shared_limiter(replicas)
    starts_a: list[float] = []
    starts_b: list[float] = []
    await asyncio.gather(
        run_users(first, users=3, each=7, starts=starts_a),
        run_users(second, users=2, each=10, starts=starts_b),
    )
    starts = sorted(starts_a + starts_b)
    assert len(starts) == 41
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    violations = [gap for gap in gaps if gap < 1 / RATE - JITTER]
    assert violations == []
    measured = (len(starts) - 1) / (starts[-1] - starts[0])
    assert abs(measured - RATE) / RATE < 0.03
    # Neither replica was starved: the shared starts alternate between them.
    assert abs(len([s for s in starts[:20] if s in starts_a]) - 10) <= 3


async def test_without_the_shared_gate_two_replicas_double_the_rate(replicas: Replicas) -> None:
    # The control for the test above: two plain limiters start twice as often.
    first, second = FairRateLimiter(RATE), FairRateLimiter(RATE)
    starts: list[float] = []
    await asyncio.gather(run_users(first, 2, 5, starts), run_users(second, 2, 5, starts))
    starts.sort()
    assert min(b - a for a, b in itertools.pairwise(starts)) < 1 / RATE / 2


async def test_the_local_queue_still_decides_who_goes_next(replicas: Replicas) -> None:
    limiter = shared_limiter(replicas)
    order: list[str] = []

    async def ask(key: str) -> None:
        await limiter.acquire(key)
        order.append(key)

    burst = [asyncio.create_task(ask("busy")) for _ in range(5)]
    await asyncio.sleep(0)
    other = asyncio.create_task(ask("quiet"))
    await asyncio.gather(*burst, other)
    assert order.index("quiet") <= 2  # not behind the whole burst


async def test_gcra_books_several_keys_at_once(replicas: Replicas) -> None:
    gcra = GcraLimiter(replicas.client(), replicas.guard(), prefix=replicas.prefix)
    overall, chat = Rate("all", 100, burst=5), Rate("chat:1", 1, burst=3)
    waits = [await gcra.book((overall, chat)) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]  # the chat's burst of 3
    assert waits[3] is not None and 0.95 < waits[3] <= 1.0  # then one a second
    # The overall rate counted every booking, without waiting for the chat: 4 of 5 are gone.
    other_waits = [await gcra.book((overall,)) for _ in range(3)]
    assert other_waits[0] == 0.0 and other_waits[2] is not None and other_waits[2] > 0


async def test_redis_gone_paces_locally_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from redis.asyncio import Redis

    # Nothing listens on port 1: every call fails at once (connection refused).
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    guard = RedisGuard(timeout=0.2, retry_after=0.05)
    gcra = GcraLimiter(client, guard, prefix="test:gone:")
    limiter = FairRateLimiter(RATE, gate=SharedStartGate(gcra, "llm:openai", RATE))
    starts: list[float] = []
    caplog.set_level(logging.INFO, logger="services.shared.guard")
    began = time.monotonic()
    await asyncio.wait_for(run_users(limiter, users=2, each=5, starts=starts), timeout=5)
    elapsed = time.monotonic() - began
    await client.aclose()
    starts.sort()
    assert len(starts) == 10
    # Paced locally at the same rate: no starts closer than the interval, no hang.
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 1 / RATE - JITTER
    assert elapsed < 9 / RATE + 1.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ConnectionError" in warnings[0].getMessage()


async def test_a_redis_that_does_not_answer_times_out_and_paces_locally() -> None:
    from redis.asyncio import Redis

    # A server that accepts connections and never answers: the guard's timeout ends each try.
    silent: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=5)
    guard = RedisGuard(timeout=0.1, retry_after=10.0)
    gcra = GcraLimiter(client, guard, prefix="test:silent:")
    limiter = FairRateLimiter(RATE, gate=SharedStartGate(gcra, "llm:openai", RATE))
    starts: list[float] = []
    began = time.monotonic()
    await asyncio.wait_for(run_users(limiter, users=1, each=4, starts=starts), timeout=3)
    # One timeout (0.1 s), then local pacing without asking Redis again for retry_after.
    assert time.monotonic() - began < 0.1 + 3 / RATE + 0.3
    assert guard.down
    for writer in silent:
        writer.close()
    server.close()
    await client.aclose()
