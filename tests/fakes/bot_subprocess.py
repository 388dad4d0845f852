"""The real bot (`python -m bot`) in a child process, for tests that kill it; several of them
as replicas in webhook mode (`replica_env`, `start_replicas`).

Settings come from the environment exactly as in production; the child runs in a directory
without a `.env`. Its stderr goes to a file (a pipe nobody reads could fill up and stall it).
The fakes it talks to run in the test's own event loop, so everything here is async.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.upstream_server import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]
# Importing aiogram takes seconds on a small, busy machine.
START_TIMEOUT = 30.0


def bot_env(
    telegram: FakeTelegram, upstream: FakeUpstream, db: Path | str, **overrides: str
) -> dict[str, str]:
    """`db`: an SQLite file, or a whole DATABASE_URL (PostgreSQL)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "LLM_BASE_URL": upstream.url,
        "LLM_API_KEY": upstream.api_key,
        "DATABASE_URL": db if isinstance(db, str) else f"sqlite:///{db}",
        "LLM_RPS": "0",
        "POLLING_TIMEOUT": "1",
        "DRAFT_INTERVAL_SECONDS": "0.05",
        "EDIT_INTERVAL_SECONDS": "0.1",
        "SHUTDOWN_GRACE_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }
    env.update(overrides)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def replica_env(
    telegram: FakeTelegram,
    upstream: FakeUpstream,
    *,
    database_url: str,
    redis_url: str,
    webhook_url: str,
    secret: str,
    port: int,
    **overrides: str,
) -> dict[str, str]:
    """One replica: webhook mode on 127.0.0.1:`port`, registering `webhook_url` (the balancer
    in front of every replica), on the shared database and Redis."""
    return bot_env(
        telegram,
        upstream,
        database_url,
        REDIS_URL=redis_url,
        WEBHOOK_URL=webhook_url,
        WEBHOOK_SECRET=secret,
        WEBHOOK_HOST="127.0.0.1",
        WEBHOOK_PORT=str(port),
        **overrides,
    )


async def start_replicas(
    telegram: FakeTelegram, envs: Sequence[dict[str, str]], workdir: Path
) -> list[BotProcess]:
    """Start one webhook-mode bot per env, one after the other (each has registered the
    webhook, so its listener is up, before the next starts). On a failure the ones already
    started are killed."""
    bots: list[BotProcess] = []
    try:
        for index, env in enumerate(envs):
            bot = BotProcess(env, workdir / f"replica{index}", name=f"replica{index}")
            bots.append(bot)
            await bot.start_webhook(telegram)
    except BaseException:
        for bot in bots:
            await bot.close()
        raise
    return bots


class BotProcess:
    def __init__(self, env: dict[str, str], workdir: Path, name: str = "bot") -> None:
        self._env = env
        self._workdir = workdir
        self._log = workdir / f"{name}.stderr"
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    @property
    def stderr(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    async def spawn(self) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        with self._log.open("wb") as err:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=self._workdir,
                env=self._env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
            )

    async def start(self, telegram: FakeTelegram) -> None:
        """Spawn and wait until it polls Telegram (start-up, replay included, is under way)."""
        starts = len(telegram.calls_of("deleteWebhook"))
        await self.spawn()
        waiting = asyncio.ensure_future(self._polling(telegram, starts))
        exited = asyncio.ensure_future(self.wait(START_TIMEOUT))
        done, _ = await asyncio.wait({waiting, exited}, return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done:
            waiting.cancel()
            raise AssertionError(f"the bot exited during start-up:\n{self.stderr}")
        exited.cancel()
        waiting.result()

    async def start_webhook(self, telegram: FakeTelegram) -> None:
        """Spawn in webhook mode and wait until it registered the webhook (its listener is up
        by then: the bot registers only once it can take deliveries)."""
        seen = len(telegram.calls_of("setWebhook"))
        await self.spawn()
        waiting = asyncio.ensure_future(
            telegram.wait_for("setWebhook", count=seen + 1, timeout=START_TIMEOUT)
        )
        exited = asyncio.ensure_future(self.wait(START_TIMEOUT))
        done, _ = await asyncio.wait({waiting, exited}, return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done:
            waiting.cancel()
            raise AssertionError(f"the bot exited during start-up:\n{self.stderr}")
        exited.cancel()
        waiting.result()

    @staticmethod
    async def _polling(telegram: FakeTelegram, starts: int) -> None:
        # Its own start first (every start clears the webhook): a killed bot's long poll is
        # recorded when its connection drops, and must not pass for the new one's.
        await telegram.wait_for("deleteWebhook", count=starts + 1, timeout=START_TIMEOUT)
        seen = len(telegram.calls_of("getUpdates"))
        await telegram.wait_for("getUpdates", count=seen + 1, timeout=START_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no last write, as a crash or the OOM killer leaves it."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    async def terminate(self, timeout: float = 20.0) -> int:  # noqa: ASYNC109
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
        return await self.wait(timeout)

    async def wait(self, timeout: float = 20.0) -> int:  # noqa: ASYNC109
        assert self._proc is not None
        return await asyncio.wait_for(self._proc.wait(), timeout)

    async def close(self) -> None:
        """Make sure the child is gone (for a test's finally)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            with contextlib.suppress(Exception):
                await self._proc.wait()


async def stop_replicas(bots: Sequence[BotProcess], timeout: float = 15.0) -> None:  # noqa: ASYNC109
    """SIGTERM every replica still running, all at once, and make sure each is gone (for a
    test's finally): one that does not stop in `timeout` seconds is killed."""

    async def stop(bot: BotProcess) -> None:
        with contextlib.suppress(Exception):
            await bot.terminate(timeout=timeout)
        await bot.close()

    await asyncio.gather(*(stop(bot) for bot in bots))


async def forget_redis_keys(redis_url: str, bot_id: int) -> None:
    """Delete the bot's keys (`llmbot:<bot id>:*`) that replicas left in the shared Redis."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"llmbot:{bot_id}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
