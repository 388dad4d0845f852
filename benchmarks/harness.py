"""Driver-side plumbing: the bot subprocess, the fakes it talks to, a profiler, statistics.

The driver process runs the fake servers on loopback and is pinned to one core; the bot
runs in its own process (`benchmarks.bot_process`) pinned to the other, so the CPU and memory
read from /proc for the bot's pid are the bot's own cost and nothing of the fakes'.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.procstat import cpu_seconds, memory_mb, pin
from benchmarks.timed_fakes import TimedGigaChat, TimedTelegram, TimedUpstream

REPO = Path(__file__).resolve().parent.parent

# Settings every benchmark bot gets (production defaults unless a scenario says otherwise).
# Outbound pacing is lifted for the throughput and latency scenarios: at Telegram's real 30
# messages/s the bot could never show more than 30 answers/s, whatever its own cost.
BASE_SETTINGS: dict[str, str] = {
    "LLM_RPS": "0",
    "TELEGRAM_GLOBAL_RPS": "100000",
    "TELEGRAM_CHAT_RPS": "100000",
    "DRAFT_INTERVAL_SECONDS": "0.25",
    "EDIT_INTERVAL_SECONDS": "1.0",
    "POLLING_TIMEOUT": "30",
    "SHUTDOWN_GRACE_SECONDS": "5",
    "LOG_LEVEL": "INFO",
}
# Anything the caller's shell might set that would change the bot under test.
_SETTING_NAMES = frozenset(
    {
        "BOT_TOKEN",
        "TELEGRAM_API_URL",
        "LLM_BASE_URL",
        "LLM_API_KEY",
        "LLM_RPS",
        "LLM_APP_TITLE",
        "LLM_TIMEOUT_SECONDS",
        "DATABASE_URL",
        "ADMIN_IDS",
        "DEFAULT_MODEL",
        "MAX_TOKENS",
        "DEFAULT_CONTEXT_TOKENS",
        "DEFAULT_SYSTEM_PROMPT",
        "MODELS_CACHE_SECONDS",
        "TELEGRAM_GLOBAL_RPS",
        "TELEGRAM_CHAT_RPS",
        "DRAFT_INTERVAL_SECONDS",
        "EDIT_INTERVAL_SECONDS",
        "BREAKER_FAILURES",
        "BREAKER_COOLDOWN_SECONDS",
        "POLLING_TIMEOUT",
        "SHUTDOWN_GRACE_SECONDS",
        "LOG_LEVEL",
        "BROADCAST_RPS",
        "BROADCAST_PROGRESS_SECONDS",
        # A provider key in the caller's shell would enable that provider in the bot.
        "GIGACHAT_CREDENTIALS",
        "GIGACHAT_SCOPE",
        "GIGACHAT_AUTH_URL",
        "GIGACHAT_BASE_URL",
        "GIGACHAT_CA_BUNDLE",
        "GIGACHAT_VERIFY_SSL",
        "GIGACHAT_MAX_STREAMS",
        "GIGACHAT_PROXY",
        "MASHAGPT_API_KEY",
        "MASHAGPT_BASE_URL",
        "MASHAGPT_PROXY",
        "MASHAGPT_RPS",
        "MASHAGPT_MODELS",
    }
)
# Settings shown as *** in results.json.
_SECRET_SETTINGS = frozenset(
    {"BOT_TOKEN", "LLM_API_KEY", "GIGACHAT_CREDENTIALS", "MASHAGPT_API_KEY"}
)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return percentile(present, 50)


@dataclass
class Sizes:
    warm_up: int = 20  # answers before a throughput measurement (catalog load, lazy imports)
    s1_messages: int = 5000
    s1_users: int = 500
    s2_rate: float = 50.0
    s2_seconds: float = 20.0
    s2_users: int = 200
    s3_seconds: float = 10.0
    s3_chunk_delay: float = 0.05
    s4_users: int = 1000
    s4_latency: float = 2.0
    s5_users: int = 100_000
    s5_messages: int = 2_000_000
    s5_samples: int = 300
    s5_answers: int = 200
    s6_recipients: int = 10_000
    s6_rps: float = 25.0
    s7_heavy: int = 20
    s7_others: int = 5
    s7_rps: float = 0.5
    # 8: steady load at Telegram's ceiling (30 messages/s), answers streamed as in scenario 3.
    s8_rate: float = 30.0
    s8_seconds: float = 20.0
    s8_users: int = 300
    s8_chunk_delay: float = 0.05
    # 10: two replicas on PostgreSQL and Redis vs one on SQLite (scenario 1's load, smaller).
    s10_messages: int = 1000
    s10_users: int = 100
    s10_limited: int = 50


FULL = Sizes()
QUICK = Sizes(
    s1_messages=1000,
    s1_users=100,
    s2_seconds=5.0,
    s2_users=100,
    s3_seconds=4.0,
    s4_users=300,
    s5_users=10_000,
    s5_messages=200_000,
    s5_samples=100,
    s5_answers=60,
    s6_recipients=1000,
    s7_heavy=6,
    s8_seconds=5.0,
    s8_users=100,
    s10_messages=400,
    s10_users=50,
    s10_limited=30,
)


class BotProcess:
    """`python -m benchmarks.bot_process` with the given settings, pinned to its own core."""

    def __init__(self, env: dict[str, str], log_path: Path, cpu: int | None) -> None:
        self.env = env
        self.log_path = log_path
        self.cpu = cpu
        self.proc: asyncio.subprocess.Process | None = None
        self._log: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, telegram: TimedTelegram, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Start the bot; return once it polls."""
        await self.spawn_until(telegram.wait_poll(telegram.polls_started, timeout))

    async def spawn_until(self, ready: Awaitable[Any]) -> None:
        """Start the process; return once `ready` is done, or raise (with the tail of the
        bot's log) should the process exit first."""
        self._log = open(self.log_path, "ab")  # noqa: ASYNC230, SIM115 - closed in stop()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.bot_process",
            cwd=str(REPO),
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        pin(self.proc.pid, self.cpu)
        waiter = asyncio.ensure_future(ready)
        exited = asyncio.ensure_future(self.proc.wait())
        done, _ = await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            waiter.cancel()
            raise RuntimeError(f"the bot exited at start-up:\n{self.log_tail()}")
        exited.cancel()
        waiter.result()

    def cpu_time(self) -> float:
        value = cpu_seconds(self.pid)
        return value if value is not None else math.nan

    def memory(self) -> dict[str, float]:
        return memory_mb(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_lines(self) -> int:
        try:
            with open(self.log_path, "rb") as f:
                return sum(1 for _ in f)
        except OSError:
            return 0

    async def stop(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            # SIGINT is what aiogram's polling handles for a graceful stop.
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class Profiler:
    """py-spy sampling the bot process.

    Blocking mode (the default): py-spy pauses the bot for each sample, which costs the bot a
    little speed but gives whole stacks; --nonblocking truncates many of them, which makes
    inclusive figures meaningless. Profiled runs are therefore reported apart from the medians.
    """

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self.proc: asyncio.subprocess.Process | None = None

    @staticmethod
    def available() -> bool:
        return (
            shutil.which("py-spy") is not None or Path(sys.executable).with_name("py-spy").exists()
        )

    async def start(self) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.proc = await asyncio.create_subprocess_exec(
            exe,
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--duration",
            "900",
            "-o",
            str(self.out),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(0.5)  # py-spy needs a moment to attach

    async def stop(self) -> str:
        proc, self.proc = self.proc, None
        if proc is None:
            return ""
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()
            _, err = await proc.communicate()
        return (err or b"").decode(errors="replace")


@dataclass
class Context:
    telegram: TimedTelegram
    upstream: TimedUpstream
    workdir: Path
    sizes: Sizes
    driver_cpu: int | None
    bot_cpu: int | None
    profile: bool = False
    profile_dir: Path | None = None
    # Started by the runner only when a scenario needs it (9): its test CA costs a key pair.
    gigachat: TimedGigaChat | None = None
    settings_used: dict[str, dict[str, str]] = field(default_factory=dict)
    _runs: int = 0

    def env(self, db: Path, overrides: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
        env.update(BASE_SETTINGS)
        env.update(
            {
                "BOT_TOKEN": self.telegram.token,
                "TELEGRAM_API_URL": self.telegram.url,
                "LLM_BASE_URL": self.upstream.url,
                "LLM_API_KEY": self.upstream.api_key,
                "DATABASE_URL": f"sqlite:///{db}",
            }
        )
        env.update(overrides)
        if self.bot_cpu is not None:
            env["BENCH_BOT_CPU"] = str(self.bot_cpu)
        return env

    @contextlib.asynccontextmanager
    async def bot(
        self, label: str, *, db: Path | None = None, **overrides: str
    ) -> AsyncIterator[BotProcess]:
        """A fresh bot process (fresh database unless `db` is given) against reset fakes."""
        self._runs += 1
        run_dir = self.workdir / f"run{self._runs:03d}-{label}"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.telegram.reset()
        self.upstream.reset()
        if self.gigachat is not None:
            self.gigachat.reset()
        env = self.env(db or run_dir / "bot.db", overrides)
        shown = {
            k: ("***" if k in _SECRET_SETTINGS else v)
            for k, v in env.items()
            if k in _SETTING_NAMES or k == "BENCH_BOT_CPU"
        }
        self.settings_used[label] = shown
        bot = BotProcess(env, run_dir / "bot.log", self.bot_cpu)
        await bot.start(self.telegram)
        try:
            yield bot
        finally:
            await bot.stop()

    async def warm_up(self, users: range, n: int = 0, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """One question per user, all at once; returns when all are answered."""
        from benchmarks.timed_fakes import question

        before = len(self.telegram.finals)
        for user in users:
            self.telegram.send_message(user, question(user, n)[1])
        if not await self.telegram.wait_finals(before + len(users), timeout):
            raise RuntimeError(
                f"warm-up: only {len(self.telegram.finals) - before} of {len(users)} answered"
            )


def now() -> float:
    return time.monotonic()
