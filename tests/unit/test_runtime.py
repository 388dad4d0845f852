"""The entry points' runner: uvloop where installed, the same result either way."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys

import pytest

from bot.runtime import run


async def _loop_type() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_run_returns_the_coroutine_result_on_uvloop_when_installed() -> None:
    module = run(_loop_type())
    if importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed on this platform")
    assert module.startswith("uvloop")


def test_freeze_startup_heap_moves_live_objects_out_of_collection() -> None:
    # In a child process: freezing here would change the collector for the whole suite.
    code = (
        "import gc, aiogram; from bot.runtime import freeze_startup_heap; "
        "freeze_startup_heap(); print(gc.get_freeze_count())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert int(result.stdout) > 10_000  # aiogram's models and schemas, at least
