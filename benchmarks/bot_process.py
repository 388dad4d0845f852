"""`python -m benchmarks.bot_process`: the real bot, alone in its own process.

Settings come from the environment exactly as in production (BOT_TOKEN, TELEGRAM_API_URL,
LLM_BASE_URL, LLM_API_KEY, DATABASE_URL, LLM_RPS, ...; no .env file is read), the app is
built by `bot.factory.build_app` and runs long polling until SIGINT/SIGTERM. The only
addition is BENCH_BOT_CPU: the core to pin this process to, applied before anything is
imported so every thread the bot starts inherits it.
"""

from __future__ import annotations

import contextlib
import os
import sys


def _pin_early() -> None:
    cpu = os.environ.get("BENCH_BOT_CPU")
    if cpu and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError, ValueError):
            os.sched_setaffinity(0, {int(cpu)})


def main() -> int:
    _pin_early()
    from bot.__main__ import main as run_bot  # imported after pinning: threads inherit it

    return run_bot(read_env_file=False)


if __name__ == "__main__":
    sys.exit(main())
