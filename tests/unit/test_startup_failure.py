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
