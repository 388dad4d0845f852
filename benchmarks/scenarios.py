"""The scenarios of issues 4 and 12. Each run returns a flat dict of figures (plus raw samples
under "_samples" for the plot); the runner takes medians across runs.

User id ranges keep scenarios apart in the fakes' state: 100_000+ throughput (scenarios 1
and 9 alike, so their texts match byte for byte), 200_000+
steady load (270_000+ at Telegram's ceiling, scenario 8), 300_000+ concurrency, 500_000+
limiter, 600_000+ broadcast recipients, 900_000+ warm-ups, 10_000_000+ the big database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import random
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from benchmarks.dbgen import BigDatabase, generate
from benchmarks.harness import Context, Profiler, percentile
from benchmarks.timed_fakes import ANSWER_BODY, TimedGigaChat, question
from services.storage import SQLiteStorage
from tests.fakes.telegram_server import SENDING_METHODS

Run = Callable[[Context], Awaitable[dict[str, Any]]]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _calls_per_answer(counts: dict[str, int], answers: int) -> dict[str, float]:
    return {m: round(n / answers, 3) for m, n in sorted(counts.items())} if answers else {}


# --------------------------------------------------------------------------------- 1 throughput


async def throughput(
    ctx: Context,
    *,
    profile_out: Path | None = None,
    label: str = "s1-throughput",
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """1: every question queued at once; the bot's CPU per answer and Telegram calls.

    `env` adds settings to the bot's environment (scenario 9 names its provider and model
    there); `label` names the run in the work directory and in results.json.
    """
    s = ctx.sizes
    tg = ctx.telegram
    per_user = max(1, s.s1_messages // s.s1_users)
    users = range(100_000, 100_000 + s.s1_users)
    async with ctx.bot(label, db=None, **(env or {})) as bot:
        # A few answers first: the model catalog is loaded and lazy imports are done.
        await ctx.warm_up(range(900_000, 900_000 + s.warm_up))
        profiler = None
        if profile_out is not None:
            profiler = Profiler(bot.pid, profile_out)
            await profiler.start()
        base = len(tg.finals)
        keys: list[str] = []
        cpu0, driver0, t0 = bot.cpu_time(), time.process_time(), time.monotonic()
        for n in range(per_user):
            for user in users:
                key, text = question(user, n)
                tg.send_message(user, text)
                keys.append(key)
        timeout = 60 + len(keys) / 20
        complete = await tg.wait_finals(base + len(keys), timeout)
        cpu1, driver1, t1 = bot.cpu_time(), time.process_time(), time.monotonic()
        profiler_log = await profiler.stop() if profiler is not None else ""
        memory = bot.memory()
        log_lines = bot.log_lines()
    answered = [k for k in keys if k in tg.finals]
    last = max((tg.finals[k] for k in answered), default=t1)
    wall = last - t0
    cpu = cpu1 - cpu0
    mismatched = sum(1 for k in answered if tg.final_texts[k] != f"[{k}] {ANSWER_BODY}")
    calls = tg.bot_calls(t0, t1)
    total_calls = sum(calls.values())
    n = len(answered)
    result: dict[str, Any] = {
        "messages": len(keys),
        "users": len(users),
        "answered": n,
        "complete": complete,
        "wrong_final_text": mismatched,
        "seconds": wall,
        "answers_per_s": n / wall if wall > 0 else None,
        "bot_cpu_s": cpu,
        "cpu_ms_per_answer": cpu * 1000 / n if n else None,
        "cpu_bound_answers_per_s": n / cpu if cpu > 0 else None,
        "bot_core_utilisation": cpu / (t1 - t0),
        "driver_core_utilisation": (driver1 - driver0) / (t1 - t0),
        "telegram_calls_per_answer": total_calls / n if n else None,
        "calls_by_method_per_answer": _calls_per_answer(calls, n),
        "drafts_per_answer": tg.drafts / n if n else None,
        "rss_mb_after": memory.get("rss"),
        "peak_rss_mb": memory.get("peak"),
        "bot_log_lines": log_lines,
    }
    if profiler is not None:
        result["profiler_log"] = profiler_log[-2000:]
    return result


# ------------------------------------------------------------------------ 9 throughput, GigaChat

GIGACHAT_MODEL = "gigachat:GigaChat-2"
# As many streams as scenario 1's users ask at once (500), so GigaChat's answers are not
# queued behind its stream limit and the two scenarios do the same work.
GIGACHAT_MAX_STREAMS = 1000


def gigachat_env(giga: TimedGigaChat) -> dict[str, str]:
    """The bot's settings that make the GigaChat fake answer every question."""
    return {
        "GIGACHAT_CREDENTIALS": giga.credentials,
        "GIGACHAT_SCOPE": giga.scope,
        "GIGACHAT_BASE_URL": giga.base_url,
        "GIGACHAT_AUTH_URL": giga.auth_url,
        "GIGACHAT_CA_BUNDLE": giga.ca_pem_path,
        "GIGACHAT_MAX_STREAMS": str(GIGACHAT_MAX_STREAMS),
        "DEFAULT_MODEL": GIGACHAT_MODEL,
    }


async def throughput_gigachat(ctx: Context, *, profile_out: Path | None = None) -> dict[str, Any]:
    """9: scenario 1 with every answer streamed by (fake) GigaChat instead of the
    OpenAI-compatible upstream: OAuth, HTTPS with the fake's own CA, GigaChat's message and
    chunk shapes, the bot's per-key slots. The runner adds the ratio of its CPU per answer
    to scenario 1's when both ran in one invocation.
    """
    giga = ctx.gigachat
    if giga is None:
        raise RuntimeError("scenario 9 needs the GigaChat fake (Context.gigachat)")
    up = ctx.upstream
    result = await throughput(
        ctx, profile_out=profile_out, label="s9-throughput-gigachat", env=gigachat_env(giga)
    )
    # Which upstream really answered: a misrouted model would measure the other path.
    result.update(
        {
            "gigachat_chat_requests": len(giga.chat_requests()),
            "openai_chat_requests": len(up.chat_requests()),
            "gigachat_token_requests": giga.token_requests,
            "gigachat_429": giga.rejected_429,
        }
    )
    return result


def cpu_ratio(numerator: dict[str, Any] | None, denominator: dict[str, Any] | None) -> float | None:
    """cpu_ms_per_answer of one result over another's; None when either lacks it."""
    top = (numerator or {}).get("cpu_ms_per_answer")
    bottom = (denominator or {}).get("cpu_ms_per_answer")
    if not isinstance(top, int | float) or not isinstance(bottom, int | float) or bottom <= 0:
        return None
    return float(top) / float(bottom)


# ------------------------------------------------------------------------ 2/3 steady load


async def _steady(
    ctx: Context,
    label: str,
    *,
    chunk_delay: float,
    seconds: float,
    user_base: int,
    rate: float | None = None,
    users_count: int | None = None,
    profile_out: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    s = ctx.sizes
    tg, up = ctx.telegram, ctx.upstream
    rate = rate or s.s2_rate
    users = range(user_base, user_base + (users_count or s.s2_users))
    async with ctx.bot(label) as bot:
        # Known users, as in steady operation: their first message (profile row, first
        # conversation) is not part of the measurement.
        await ctx.warm_up(users)
        profiler = None
        if profile_out is not None:
            profiler = Profiler(bot.pid, profile_out)
            await profiler.start()
        up.chunk_delay = chunk_delay
        count = int(seconds * rate)
        sent: list[tuple[str, int]] = []
        base = len(tg.finals)
        # VmHWM also holds the start-up and warm-up peaks; samples while it runs do not.
        peak_seen = bot.memory().get("rss") or 0.0
        cpu0, driver0 = bot.cpu_time(), time.process_time()
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if i % max(1, int(rate / 10)) == 0:  # ~10 RSS samples a second
                peak_seen = max(peak_seen, bot.memory().get("rss") or 0.0)
            user = users[i % len(users)]
            key, text = question(user, 1 + i // len(users))
            update = tg.send_message(user, text)
            sent.append((key, update["update_id"]))
        sending = time.monotonic() - start
        complete = await tg.wait_finals(base + count, 60 + chunk_delay * 20)
        end = time.monotonic()
        cpu = bot.cpu_time() - cpu0
        driver = time.process_time() - driver0
        memory = bot.memory()
        peak_seen = max(peak_seen, memory.get("rss") or 0.0)
        profiler_log = await profiler.stop() if profiler is not None else ""
    to_upstream: list[float] = []
    to_final: list[float] = []
    to_draft: list[float] = []
    no_draft = 0
    for key, update_id in sent:
        requests = up.by_key.get(key)
        returned = tg.update_returned.get(update_id)
        if not requests or returned is None:
            continue
        rec = requests[0]
        to_upstream.append(rec.started_at - returned)
        final = tg.finals.get(key)
        if final is not None and rec.last_chunk_at is not None:
            to_final.append(final - rec.last_chunk_at)
        draft = tg.first_draft.get(key)
        if draft is not None and rec.first_chunk_at is not None:
            to_draft.append(draft - rec.first_chunk_at)
        else:
            no_draft += 1
    n = sum(1 for key, _ in sent if key in tg.finals)
    calls = tg.bot_calls(start, end)
    common = {
        "rate_per_s": rate,
        "users": len(users),
        "messages": count,
        "answered": n,
        "complete": complete,
        "achieved_rate_per_s": (count - 1) / sending if sending > 0 else None,
        "cpu_ms_per_answer": cpu * 1000 / n if n else None,
        "bot_core_utilisation": cpu / (end - start),
        "driver_core_utilisation": driver / (end - start),
        "telegram_calls_per_answer": sum(calls.values()) / n if n else None,
        "calls_by_method_per_answer": _calls_per_answer(calls, n),
        "rss_mb_after": memory.get("rss"),
        "peak_rss_mb": peak_seen,
        "peak_rss_mb_vmhwm": memory.get("peak"),
    }
    if profiler is not None:
        common["profiler_log"] = profiler_log[-2000:]
    samples = {
        "update_to_upstream_ms": [_ms(v) for v in to_upstream],
        "last_chunk_to_final_ms": [_ms(v) for v in to_final],
        "first_chunk_to_draft_ms": [_ms(v) for v in to_draft],
    }
    common["answers_without_draft"] = no_draft
    return common, samples


def _latency_figures(samples: list[float | None]) -> dict[str, float | None]:
    values = [v for v in samples if v is not None]
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "n": len(values),
    }


async def added_latency(ctx: Context) -> dict[str, Any]:
    common, samples = await _steady(
        ctx, "s2-latency", chunk_delay=0.0, seconds=ctx.sizes.s2_seconds, user_base=200_000
    )
    up = _latency_figures(samples["update_to_upstream_ms"])
    fin = _latency_figures(samples["last_chunk_to_final_ms"])
    common.update(
        {
            "update_to_upstream_p50_ms": up["p50"],
            "update_to_upstream_p99_ms": up["p99"],
            "update_to_upstream_max_ms": up["max"],
            "last_chunk_to_final_p50_ms": fin["p50"],
            "last_chunk_to_final_p99_ms": fin["p99"],
            "last_chunk_to_final_max_ms": fin["max"],
            "_samples": {
                "update_to_upstream_ms": samples["update_to_upstream_ms"],
                "last_chunk_to_final_ms": samples["last_chunk_to_final_ms"],
            },
        }
    )
    return common


async def first_draft(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    common, samples = await _steady(
        ctx,
        "s3-first-draft",
        chunk_delay=s.s3_chunk_delay,
        seconds=s.s3_seconds,
        user_base=250_000,
    )
    fd = _latency_figures(samples["first_chunk_to_draft_ms"])
    common.update(
        {
            "chunk_delay_s": s.s3_chunk_delay,
            "first_chunk_to_draft_p50_ms": fd["p50"],
            "first_chunk_to_draft_p90_ms": fd["p90"],
            "first_chunk_to_draft_p99_ms": fd["p99"],
            "drafts_per_answer": (
                common["calls_by_method_per_answer"].get("sendRichMessageDraft", 0.0)
                + common["calls_by_method_per_answer"].get("sendMessageDraft", 0.0)
            ),
            "_samples": {"first_chunk_to_draft_ms": samples["first_chunk_to_draft_ms"]},
        }
    )
    return common


async def steady_ceiling(ctx: Context, *, profile_out: Path | None = None) -> dict[str, Any]:
    """8: Telegram's ceiling (30 questions/s) held for a while, streams as in scenario 3.

    What the bot costs when it is as busy as Telegram lets it be: at most 30 messages a second
    leave a bot, so this is the most a single bot process ever has to carry in steady state.
    Pacing is lifted as in scenarios 1-4, so the figures are the bot's own and not its pacer's.
    """
    s = ctx.sizes
    common, samples = await _steady(
        ctx,
        "s8-steady-ceiling",
        chunk_delay=s.s8_chunk_delay,
        seconds=s.s8_seconds,
        user_base=270_000,
        rate=s.s8_rate,
        users_count=s.s8_users,
        profile_out=profile_out,
    )
    fd = _latency_figures(samples["first_chunk_to_draft_ms"])
    up = _latency_figures(samples["update_to_upstream_ms"])
    fin = _latency_figures(samples["last_chunk_to_final_ms"])
    common.update(
        {
            "chunk_delay_s": s.s8_chunk_delay,
            "all_answered": common["answered"] == common["messages"],
            "first_chunk_to_draft_p50_ms": fd["p50"],
            "first_chunk_to_draft_p90_ms": fd["p90"],
            "first_chunk_to_draft_p99_ms": fd["p99"],
            "first_chunk_to_draft_max_ms": fd["max"],
            "update_to_upstream_p50_ms": up["p50"],
            "update_to_upstream_p99_ms": up["p99"],
            "last_chunk_to_final_p50_ms": fin["p50"],
            "last_chunk_to_final_p99_ms": fin["p99"],
            "_samples": {"first_chunk_to_draft_ms_s8": samples["first_chunk_to_draft_ms"]},
        }
    )
    return common


# ------------------------------------------------------------------------------ 4 concurrency


async def concurrency(ctx: Context, *, profile_out: Path | None = None) -> dict[str, Any]:
    s = ctx.sizes
    tg, up = ctx.telegram, ctx.upstream
    users = range(300_000, 300_000 + s.s4_users)
    async with ctx.bot("s4-concurrency") as bot:
        await ctx.warm_up(range(900_000, 900_005))
        await asyncio.sleep(1.0)
        idle = bot.memory().get("rss")
        profiler = None
        if profile_out is not None:
            profiler = Profiler(bot.pid, profile_out)
            await profiler.start()
        up.first_token_delay = s.s4_latency
        base = len(tg.finals)
        keys = []
        cpu0, t0 = bot.cpu_time(), time.monotonic()
        for user in users:
            key, text = question(user, 0)
            tg.send_message(user, text)
            keys.append(key)
        # Sample RSS while it runs: VmHWM also holds the start-up peak, the samples do not.
        peak_seen = idle or 0.0
        # (time, bot CPU, driver CPU) every 50 ms: who was busy while the questions came in.
        timeline = [(t0, cpu0, time.process_time())]
        waiter = asyncio.ensure_future(tg.wait_finals(base + len(keys), 120))
        while not waiter.done():
            rss = bot.memory().get("rss")
            if rss:
                peak_seen = max(peak_seen, rss)
            timeline.append((time.monotonic(), bot.cpu_time(), time.process_time()))
            await asyncio.wait({waiter}, timeout=0.05)
        complete = waiter.result()
        cpu = bot.cpu_time() - cpu0
        memory = bot.memory()
        if profiler is not None:
            await profiler.stop()
    answered = [k for k in keys if k in tg.finals]
    finals = sorted(tg.finals[k] - t0 for k in answered)
    starts = sorted(recs[0].started_at - t0 for k in keys if (recs := up.by_key.get(k)))
    ingress_end = t0 + (starts[-1] if starts else 0.0)
    ingress = [p for p in timeline if p[0] <= ingress_end] or timeline[:1]
    span = ingress[-1][0] - t0
    return {
        "users": len(keys),
        "upstream_latency_s": s.s4_latency,
        "bot_core_busy_until_last_start": ((ingress[-1][1] - cpu0) / span if span > 0 else None),
        "driver_core_busy_until_last_start": (
            (ingress[-1][2] - timeline[0][2]) / span if span > 0 else None
        ),
        "answered": len(answered),
        "complete": complete,
        "all_answered_s": finals[-1] if finals else None,
        "answer_p50_s": percentile(finals, 50),
        "last_upstream_start_s": starts[-1] if starts else None,
        "cpu_ms_per_answer": cpu * 1000 / len(answered) if answered else None,
        "idle_rss_mb": idle,
        "peak_rss_mb": peak_seen,
        "peak_rss_mb_vmhwm": memory.get("peak"),
        "kb_per_concurrent_answer": (
            (peak_seen - idle) * 1024 / len(keys) if idle and keys else None
        ),
    }


# ----------------------------------------------------------------------------------- 5 memory

_FLOOR_CODE = (
    "import aiogram, re\n"
    "s = open('/proc/self/status').read()\n"
    "print(int(re.search(r'VmRSS:\\s+(\\d+)', s).group(1)) / 1024)\n"
)


def import_floor_mb() -> float | None:
    """RSS of a process that only imports aiogram."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", _FLOOR_CODE],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return float(out.stdout.strip())
    except (subprocess.SubprocessError, ValueError, OSError):
        return None


class BigDbCache:
    """The big database is generated once per invocation and shared by all runs."""

    def __init__(self) -> None:
        self.db: BigDatabase | None = None
        self._lock = asyncio.Lock()

    async def get(self, ctx: Context) -> BigDatabase:
        async with self._lock:
            if self.db is None:
                path = ctx.workdir / "big.db"
                self.db = await generate(path, ctx.sizes.s5_users, ctx.sizes.s5_messages)
            return self.db


async def _prepare_timings(ctx: Context, big: BigDatabase) -> dict[str, Any]:
    """ConversationService.prepare, in-process on the big database, as the bot builds it."""
    from bot.factory import build_services
    from bot.settings import load_settings

    settings = load_settings(
        _env_file=None,
        bot_token=ctx.telegram.token,
        telegram_api_url=ctx.telegram.url,
        llm_base_url=ctx.upstream.url,
        llm_api_key=ctx.upstream.api_key,
        database_url=f"sqlite:///{big.path}",
        llm_rps=0,
    )
    services = build_services(settings)
    await services.storage.connect()
    rng = random.Random(4)
    figures: dict[str, Any] = {}
    try:
        # The model list is loaded once per 10 minutes in the bot too.
        await services.providers.providers[0].catalog.models()
        for kind, pick in (("typical", big.typical_user), ("heavy", big.heavy_user)):
            population = big.users - big.heavy_users if kind == "typical" else big.heavy_users
            count = min(ctx.sizes.s5_samples, population)
            picks = rng.sample(range(population), count)
            timings: list[float] = []
            history = 0
            for index in picks:
                user = pick(index)
                started = time.perf_counter()
                prepared = await services.conversations.prepare(
                    chat_id=user,
                    thread_id=None,
                    user_id=user,
                    model=settings.llm.default_model,
                    system_prompt=settings.llm.default_system_prompt,
                    user_text="And one more question, please?",
                )
                timings.append((time.perf_counter() - started) * 1000)
                history = len(prepared.turns) - 2
            figures[f"prepare_{kind}_p50_ms"] = percentile(timings, 50)
            figures[f"prepare_{kind}_p99_ms"] = percentile(timings, 99)
            figures[f"prepare_{kind}_history_messages"] = history
    finally:
        await services.storage.close()
        await services.providers.aclose()
    return figures


async def memory(ctx: Context, big_cache: BigDbCache) -> dict[str, Any]:
    s = ctx.sizes
    tg = ctx.telegram
    result: dict[str, Any] = {"import_floor_mb": import_floor_mb()}
    async with ctx.bot("s5-idle") as bot:
        await asyncio.sleep(3.0)
        result["idle_rss_mb"] = bot.memory().get("rss")
    if result["idle_rss_mb"] and result["import_floor_mb"]:
        result["idle_above_floor_mb"] = result["idle_rss_mb"] - result["import_floor_mb"]

    big = await big_cache.get(ctx)
    result.update(
        {
            "db_users": big.users,
            "db_messages": big.messages,
            "db_heavy_users": big.heavy_users,
            "db_heavy_history": big.heavy_messages,
            "db_size_mb": big.path.stat().st_size / 2**20,
            "db_generation_s": big.seconds,
        }
    )
    result.update(await _prepare_timings(ctx, big))

    async with ctx.bot("s5-bigdb", db=big.path) as bot:
        await asyncio.sleep(3.0)
        result["idle_rss_mb_big_db"] = bot.memory().get("rss")
        # Some of the stored users come back (half with long histories) one after another.
        base = len(tg.finals)
        half = s.s5_answers // 2
        chosen = [big.typical_user(i * 7919) for i in range(half)]
        chosen += [big.heavy_user(i * 13) for i in range(s.s5_answers - half)]
        for i, user in enumerate(chosen):
            tg.send_message(user, question(user, i)[1])
        result["big_db_answers_complete"] = await tg.wait_finals(base + len(chosen), 120)
        result["rss_mb_after_answers_big_db"] = bot.memory().get("rss")
        result["peak_rss_mb_big_db"] = bot.memory().get("peak")
    return result


# ---------------------------------------------------------------------------- 6 broadcast


async def _seed_users(path: Path, users: range) -> None:
    """A database with the bot's own schema holding `users` (none of them blocked)."""
    storage = SQLiteStorage(path)
    await storage.connect()
    await storage.close()
    db = sqlite3.connect(path)
    try:
        with db:
            db.executemany(
                "INSERT INTO users (user_id, first_name, language_code, created_at) "
                "VALUES (?, 'User', 'en', ?)",
                ((user, time.time()) for user in users),
            )
    finally:
        db.close()


async def broadcast(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    tg = ctx.telegram
    admin = 600_000
    users = range(admin, admin + s.s6_recipients)  # the admin is one of the recipients
    db = ctx.workdir / f"s6-broadcast-{time.monotonic_ns()}.db"
    await _seed_users(db, users)
    # Production pacing: the fake enforces Telegram's 30 messages/s over every sending call.
    async with ctx.bot(
        "s6-broadcast",
        db=db,
        ADMIN_IDS=str(admin),
        BROADCAST_RPS=str(s.s6_rps),
        TELEGRAM_GLOBAL_RPS="30",
        TELEGRAM_CHAT_RPS="1",
    ) as bot:
        tg.enforce_limits(global_per_second=30)
        tg.send_message(admin, "/broadcast")
        await tg.wait_for("sendMessage", lambda c: c.chat_id == admin, timeout=30)
        tg.send_message(admin, "News for everyone: *faster answers*")
        confirm = (
            await tg.wait_for(
                "sendMessage",
                lambda c: c.chat_id == admin and "reply_markup" in c.params,
                timeout=30,
            )
        )[0]
        send_button = confirm.params["reply_markup"]["inline_keyboard"][0][0]
        # The fake stands in for Telegram, whose counters never pause. After scenarios 1-5
        # the driver's heap made its own garbage collections pause it for up to 250 ms,
        # and requests held up in the socket meanwhile were stamped together when it
        # resumed (31 in one second, a 429, in one of three runs). Freezing what the driver
        # holds keeps its collections to the new objects: pauses as in a fresh driver.
        gc.collect()
        gc.freeze()
        pauses = _GcPauses()
        cpu0, t0 = bot.cpu_time(), time.monotonic()
        tg.press_button(admin, tg.sent_messages(admin)[-1], send_button["callback_data"])
        budget = 60 + s.s6_recipients / s.s6_rps * 1.5
        try:
            report = await tg.wait_for(
                "editMessageText",
                lambda c: c.chat_id == admin and "finished" in str(c.params.get("text")),
                timeout=budget,
            )
        finally:
            pauses.close()
            gc.unfreeze()
        elapsed, cpu = time.monotonic() - t0, bot.cpu_time() - cpu0
    copies = [c for c in tg.calls if c.method == "copyMessage"]
    delivered = sorted(c.at for c in copies if c.ok)
    span = delivered[-1] - delivered[0] if len(delivered) > 1 else None
    achieved = (len(delivered) - 1) / span if span else None
    # The rate over each whole second, to show it is steady and not an average of bursts.
    per_second: dict[int, int] = {}
    for at in delivered:
        per_second[int(at - delivered[0])] = per_second.get(int(at - delivered[0]), 0) + 1
    full_seconds = [n for sec, n in per_second.items() if sec < int(span or 0)]
    counted = sorted(c.at for c in tg.calls if c.method in SENDING_METHODS and c.at >= t0)
    gaps = [b - a for a, b in itertools.pairwise(counted)]
    return {
        "recipients": len(users),
        "configured_rate": s.s6_rps,
        "delivered": len(delivered),
        "copy_calls": len(copies),
        "achieved_rate": achieved,
        "rate_error_pct": None if achieved is None else abs(achieved / s.s6_rps - 1) * 100,
        "max_per_second": max(full_seconds, default=None),
        "min_per_second": min(full_seconds, default=None),
        "telegram_429": tg.rate_limited,
        "duration_s": elapsed,
        "cpu_ms_per_message": cpu * 1000 / max(1, len(delivered)),
        "report": report[0].params.get("text"),
        # Where a 429 came from: how many counted calls the fake saw in the second before it,
        # and whether the driver (the fake) had just been paused by its own garbage collector
        # (arrivals held up in the socket are stamped together when it resumes).
        "rejected_429": [_window_at(c.at, counted, pauses.spans) for c in tg.calls if _is_429(c)],
        "max_arrival_gap_ms": max(gaps, default=0) * 1000,
        "driver_gc_max_pause_ms": max((d for _, d in pauses.spans), default=0) * 1000,
    }


class _GcPauses:
    """The driver's own garbage-collection pauses while it is registered."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []  # (end, duration)
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.monotonic()
        else:
            now = time.monotonic()
            self.spans.append((now, now - self._started))

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._callback)


def _is_429(call: Any) -> bool:
    return isinstance(call.response, dict) and call.response.get("error_code") == 429


def _window_at(at: float, counted: list[float], pauses: list[tuple[float, float]]) -> dict:
    recent = [end for end, duration in pauses if at - 1.0 <= end <= at and duration > 0.02]
    return {
        "calls_in_prior_second": sum(1 for x in counted if at - 1.0 < x <= at),
        "driver_gc_pause_ended_within_1s": bool(recent),
    }


# ------------------------------------------------------------------------------ 7 the limiter


async def limiter(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    tg, up = ctx.telegram, ctx.upstream
    heavy = 500_000
    others = range(500_001, 500_001 + s.s7_others)
    # Production pacing here: this scenario is about the upstream, not throughput.
    async with ctx.bot(
        "s7-limiter",
        LLM_RPS=str(s.s7_rps),
        TELEGRAM_GLOBAL_RPS="30",
        TELEGRAM_CHAT_RPS="1",
    ):
        up.enforce_rps(s.s7_rps)
        base = len(tg.finals)
        # One person asks in many group chats at once, so his questions really queue in the
        # limiter together (in one chat they would wait for each other's answers anyway).
        heavy_keys = []
        for n in range(s.s7_heavy):
            key, text = question(heavy, n)
            tg.send_message(
                heavy,
                f"@{tg.bot_username} {text}",
                chat_id=-1_000_000_000_000 - n,
                chat_type="supergroup",
            )
            heavy_keys.append(key)
        await up.wait_for_requests(1, timeout=30, path="/v1/chat/completions")
        await asyncio.sleep(0.5)
        other_keys: list[tuple[str, int]] = []
        for user in others:
            key, text = question(user, 0)
            update = tg.send_message(user, text)
            other_keys.append((key, update["update_id"]))
        total = s.s7_heavy + len(others)
        interval = 1 / s.s7_rps
        complete = await tg.wait_finals(base + total, 30 + total * interval * 1.2)
    accepted = sorted(
        (r for r in up.chat_requests() if r.status == 200), key=lambda r: r.started_at
    )
    slot_of: dict[str, int] = {}
    for slot, rec in enumerate(accepted, start=1):
        key_match = re.search(r"q\d+x\d+", str(rec.json))
        if key_match and key_match.group() not in slot_of:
            slot_of[key_match.group()] = slot
    slots: list[int | None] = []
    waited: list[int | None] = []
    for key, update_id in other_keys:
        slot = slot_of.get(key)
        slots.append(slot)
        arrived = tg.update_returned.get(update_id)
        if slot is None or arrived is None:
            waited.append(None)
            continue
        before = sum(1 for r in accepted if r.started_at < arrived)
        waited.append(slot - before)
    gaps = [b.started_at - a.started_at for a, b in itertools.pairwise(accepted)]
    return {
        "llm_rps": s.s7_rps,
        "heavy_requests": s.s7_heavy,
        "others": len(others),
        "complete": complete,
        "upstream_429": up.rejected_429,
        "other_slots": slots,
        "other_grants_waited": waited,
        "max_grants_waited": max((w for w in waited if w is not None), default=None),
        "min_gap_between_starts_s": min(gaps) if gaps else None,
        "accepted_requests": len(accepted),
    }
