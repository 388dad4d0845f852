"""The entry points' runner: uvloop where installed, the same result either way."""

from __future__ import annotations

import asyncio
import importlib.util

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
