"""Scenario 10 (issue 15): two replicas behind a balancer on PostgreSQL and Redis.

Three phases, each with fresh bot processes (all bots pinned to the bot core, the fakes and the
balancer on the driver core):

1. One replica on SQLite (long polling, as in scenario 1 but smaller): answers per second and
   bot CPU per answer; then the same replica in webhook mode behind the balancer (1b), which
   takes each update as its own HTTP request instead of a `getUpdates` batch: the transport of
   phase 2 without its shared state.
2. Two replicas in webhook mode on one fresh PostgreSQL schema and Redis (database 15, flushed
   first, so no test's keys are touched), the fake Telegram delivering to a round-robin
   balancer (tests/fakes/balancer.py): the same load; answers per second and the CPU of both
   processes per answer, and its ratios to phase 1 and to phase 1b (1b isolates what the
   issue bounds, "the shared state must not cost more than 1.5x per answer": same transport).
3. Two replicas with `LLM_RPS` set, the fake upstream answering 429 to any start sooner than
   1/LLM_RPS after the previous one: starts per second across both replicas and upstream 429s;
   then one replica is killed (SIGKILL) and a question is sent when the balancer's turn is the
   dead one's: the time from the kill to that question's answer from the survivor.

The fake Telegram delivers the webhook as the Bot API server does: up to setWebhook's
max_connections (40, the bot sets no other) at once, one at a time per chat.

User ids 700_000+. Figures, not pass/fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks.harness import BotProcess, Context, Profiler
from benchmarks.timed_fakes import ANSWER_BODY, question
from tests.fakes.balancer import Balancer
from tests.fakes.bot_subprocess import free_port
from tests.pg_schema import fresh_schema

# A database of its own on the test Redis: flushed before each run, never the tests' (0).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
SECRET = "bench-replicas_secret"
HOOK_PATH = "/telegram/webhook"
LIMITER_RPS = 10.0


class _Replica(BotProcess):
    """A bot in webhook mode: started once it has registered its webhook."""

    async def start_webhook(self, ctx: Context, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        tg = ctx.telegram
        seen = len(tg.calls_of("setWebhook"))
        await self.spawn_until(tg.wait_for("setWebhook", count=seen + 1, timeout=timeout))

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


async def _flush_redis() -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _pair(
    ctx: Context, label: str, *, count: int = 2, shared: bool = True, **overrides: str
) -> AsyncIterator[tuple[Balancer, list[_Replica]]]:
    """`count` webhook replicas behind a fresh balancer: on a fresh schema and a flushed Redis
    (`shared`), or (one replica) on its own SQLite file."""
    ctx.telegram.reset()
    ctx.upstream.reset()
    ctx.telegram.allow_loopback_webhook = True
    await _flush_redis()
    ports = [free_port() for _ in range(count)]
    balancer = Balancer([f"http://127.0.0.1:{p}" for p in ports])
    await balancer.start()
    replicas: list[_Replica] = []
    run_dir = ctx.workdir / f"s10-{label}"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        async with fresh_schema() as database_url:
            for index, port in enumerate(ports):
                env = ctx.env(run_dir / "bot.db", dict(overrides))
                if shared:
                    env.update(DATABASE_URL=database_url, REDIS_URL=REDIS_URL)
                env.update(
                    WEBHOOK_URL=balancer.url + HOOK_PATH,
                    WEBHOOK_SECRET=SECRET,
                    WEBHOOK_HOST="127.0.0.1",
                    WEBHOOK_PORT=str(port),
                )
                ctx.settings_used[f"s10-{label}-{index}"] = {
                    k: v for k, v in env.items() if k in overrides or k.startswith("WEBHOOK_P")
                }
                replica = _Replica(env, run_dir / f"replica{index}.log", ctx.bot_cpu)
                replicas.append(replica)
                await replica.start_webhook(ctx)
            try:
                yield balancer, replicas
            finally:
                await asyncio.gather(*(r.stop() for r in replicas))
    finally:
        for replica in replicas:
            replica.kill()  # one that did not stop (or start)
        await asyncio.gather(*(r.stop() for r in replicas))  # closes the logs
        await balancer.stop()
        ctx.telegram.allow_loopback_webhook = False


def _load(ctx: Context, users: range, per_user: int) -> list[str]:
    keys = []
    for n in range(per_user):
        for user in users:
            key, text = question(user, n)
            ctx.telegram.send_message(user, text)
            keys.append(key)
    return keys


def _figures(ctx: Context, keys: list[str], t0: float, cpu: float) -> dict[str, Any]:
    tg = ctx.telegram
    answered = [k for k in keys if k in tg.finals]
    last = max((tg.finals[k] for k in answered), default=t0)
    wall = last - t0
    n = len(answered)
    wrong = sum(1 for k in answered if tg.final_texts[k] != f"[{k}] {ANSWER_BODY}")
    return {
        "answered": n,
        "wrong_final_text": wrong,
        "answers_per_s": n / wall if wall > 0 else None,
        "cpu_ms_per_answer": cpu * 1000 / n if n else None,
    }


@contextlib.asynccontextmanager
async def _profiled(pid: int, out: Path | None) -> AsyncIterator[None]:
    """py-spy on one process while the block runs (nothing when `out` is None)."""
    if out is None:
        yield
        return
    profiler = Profiler(pid, out)
    await profiler.start()
    try:
        yield
    finally:
        await profiler.stop()


async def scale_out(ctx: Context, *, profile_out: Path | None = None) -> dict[str, Any]:
    """With `profile_out`, py-spy records replica 0 of phase 2 there and the replica of
    phase 1b beside it (`-webhook` before the suffix): both runs' profiles per answer."""
    s = ctx.sizes
    users = range(700_000, 700_000 + s.s10_users)
    per_user = max(1, s.s10_messages // s.s10_users)
    tg = ctx.telegram
    result: dict[str, Any] = {"messages": per_user * len(users)}

    # 1. One replica on SQLite, long polling.
    async with ctx.bot("s10-one-sqlite") as bot:
        await ctx.warm_up(range(900_000, 900_000 + s.warm_up))
        base = len(tg.finals)
        cpu0, t0 = bot.cpu_time(), time.monotonic()
        keys = _load(ctx, users, per_user)
        await tg.wait_finals(base + len(keys), 60 + len(keys) / 20)
        one = _figures(ctx, keys, t0, bot.cpu_time() - cpu0)
    result.update({f"one_{k}": v for k, v in one.items()})

    # 1b. The same replica in webhook mode: the transport of phase 2 without the shared state.
    async with _pair(ctx, "one-webhook", count=1, shared=False) as (_, replicas):
        await ctx.warm_up(range(900_000, 900_000 + s.warm_up))
        base = len(tg.finals)
        hook_out = None
        if profile_out is not None:
            hook_out = profile_out.with_name(f"{profile_out.stem}-webhook{profile_out.suffix}")
        async with _profiled(replicas[0].pid, hook_out):
            cpu0, t0 = replicas[0].cpu_time(), time.monotonic()
            keys = _load(ctx, users, per_user)
            await tg.wait_finals(base + len(keys), 60 + len(keys) / 20)
        hooked = _figures(ctx, keys, t0, replicas[0].cpu_time() - cpu0)
    result.update({f"one_webhook_{k}": v for k, v in hooked.items()})

    # 2. Two replicas on PostgreSQL and Redis behind the balancer.
    async with _pair(ctx, "two") as (balancer, replicas):
        await ctx.warm_up(range(900_000, 900_000 + s.warm_up))
        base = len(tg.finals)
        async with _profiled(replicas[0].pid, profile_out):
            cpu0, t0 = sum(r.cpu_time() for r in replicas), time.monotonic()
            keys = _load(ctx, users, per_user)
            await tg.wait_finals(base + len(keys), 60 + len(keys) / 20)
        two = _figures(ctx, keys, t0, sum(r.cpu_time() for r in replicas) - cpu0)
        shares = [len(balancer.routed_to(i)) for i in (0, 1)]
    result.update({f"two_{k}": v for k, v in two.items()})
    result["two_deliveries_per_replica"] = shares
    if one["cpu_ms_per_answer"] and two["cpu_ms_per_answer"]:
        result["cpu_ratio_two_to_one"] = two["cpu_ms_per_answer"] / one["cpu_ms_per_answer"]
    if hooked["cpu_ms_per_answer"] and two["cpu_ms_per_answer"]:
        # What the shared state costs: both in webhook mode, one per update over HTTP.
        result["cpu_ratio_two_to_one_webhook"] = (
            two["cpu_ms_per_answer"] / hooked["cpu_ms_per_answer"]
        )

    # 3. The shared limiter across both, then fail-over.
    async with _pair(ctx, "limiter", LLM_RPS=str(LIMITER_RPS)) as (balancer, replicas):
        up = ctx.upstream
        # 10 ms of loopback arrival jitter forgiven (a tenth of the interval), as in the tests.
        up.enforce_rps(LIMITER_RPS, tolerance=0.01)
        limited = range(760_000, 760_000 + s.s10_limited)
        base = len(tg.finals)
        keys = _load(ctx, limited, 1)
        await tg.wait_finals(base + len(keys), 30 + len(keys) / LIMITER_RPS * 2)
        accepted = sorted(r.started_at for r in up.chat_requests() if r.status == 200)
        span = accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0
        rate = (len(accepted) - 1) / span if span > 0 else None
        gaps = [b - a for a, b in itertools.pairwise(accepted)]
        result.update(
            {
                "llm_rps": LIMITER_RPS,
                "limiter_answered": sum(1 for k in keys if k in tg.finals),
                "limiter_starts_per_s": rate,
                "limiter_error_pct": abs(rate - LIMITER_RPS) / LIMITER_RPS * 100 if rate else None,
                "limiter_min_gap_s": min(gaps) if gaps else None,
                "upstream_429": up.rejected_429,
            }
        )

        up.enforce_rps(None)
        dead = balancer.next_backend  # the next question is the dead one's share
        replicas[dead].kill()
        killed = time.monotonic()
        key, text = question(790_000, 0)
        base = len(tg.finals)
        tg.send_message(790_000, text)
        await tg.wait_finals(base + 1, 30)
        answered_at = tg.finals.get(key)
        survivor_took = any(r.backend == 1 - dead for r in balancer.routes[-2:])
        result["failover_s"] = answered_at - killed if answered_at is not None else None
        result["failover_served_by_survivor"] = survivor_took
    return result
