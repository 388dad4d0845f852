"""`python -m bot` when start-up fails: a clear line and a prompt exit, never a hang."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.fakes.telegram_server import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]


def _run_bot(tmp_path: Path, telegram_url: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BOT_TOKEN": token,
        "LLM_API_KEY": "k",
        "TELEGRAM_API_URL": telegram_url,
        "LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
    }
    # The database's worker thread used to keep a process whose start-up failed alive
    # for ever; 60 s is far beyond a normal exit (about a second).
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unreachable_telegram_exits_with_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _run_bot(tmp_path, f"http://127.0.0.1:{port}", "123:abc")
    assert result.returncode == 1
    assert "cannot reach Telegram" in result.stderr
    assert "Traceback" not in result.stderr
    assert "123:abc" not in result.stderr


async def test_rejected_token_exits_as_a_configuration_error(tmp_path: Path) -> None:
    telegram = FakeTelegram(token="42:RIGHT")
    await telegram.start()
    try:
        result = await asyncio.to_thread(_run_bot, tmp_path, telegram.url, "42:WRONG")
    finally:
        await telegram.stop()
    assert result.returncode == 2
    assert "Telegram rejected BOT_TOKEN" in result.stderr
    assert "42:WRONG" not in result.stderr


def _run_module(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("BOT_TOKEN", "LLM_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env={**clean, **(env or {}), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_prints_usage_and_every_setting_instead_of_starting(tmp_path: Path) -> None:
    result = _run_module(tmp_path, "--help")
    assert result.returncode == 0
    assert "usage: python -m bot" in result.stdout
    for name in ("BOT_TOKEN", "LLM_API_KEY", "TELEGRAM_PROXY", "LLM_CA_BUNDLE", "LOG_LEVEL"):
        assert name in result.stdout
    assert not (tmp_path / "data").exists()  # nothing was started


def test_a_configuration_error_is_reported_before_aiogram_is_imported(tmp_path: Path) -> None:
    # Importing aiogram takes seconds on a small machine; a typo must not wait for it.
    code = (
        "import sys, bot.__main__ as m; code = m.main([], read_env_file=False); "
        "print('aiogram' in sys.modules, code)"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("BOT_TOKEN", "LLM_API_KEY")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "LOUD"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["False", "2"]
    assert "BOT_TOKEN is required" in result.stderr
    assert "LOG_LEVEL is invalid" in result.stderr
    assert "Traceback" not in result.stderr


async def test_an_api_url_that_is_not_the_bot_api_is_one_line(tmp_path: Path) -> None:
    from aiohttp import web

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html>Welcome to nginx!</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    await web.SockSite(runner, listening).start()
    try:
        result = await asyncio.to_thread(_run_bot, tmp_path, f"http://127.0.0.1:{port}", "5:abc")
    finally:
        await runner.cleanup()
    assert result.returncode == 2
    assert "TELEGRAM_API_URL did not answer like the Bot API" in result.stderr
    assert "Traceback" not in result.stderr
    assert "5:abc" not in result.stderr
