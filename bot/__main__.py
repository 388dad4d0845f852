"""`python -m bot`: long polling with SQLite, nothing else to start (a webhook server
when WEBHOOK_URL is set).

Settings are read and checked before aiogram is imported (its import takes seconds on a
small machine), so a configuration error is reported at once.
"""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Sequence

from bot.settings import SECTIONS, SettingsError, env_names, load_settings

USAGE = """usage: python -m bot [--help]

Runs the Telegram bot: long polling, or a webhook server when WEBHOOK_URL is set.
Configuration comes from the environment and from ./.env (see .env.example);
BOT_TOKEN and LLM_API_KEY are required.
"""


def usage() -> str:
    lines = [USAGE, "Settings (environment variables):"]
    by_section: dict[str, list[str]] = {}
    for env, section, _ in env_names():
        by_section.setdefault(section or "process", []).append(env)
    for section in (*SECTIONS, "process"):
        names = ", ".join(by_section.get(section, []))
        lines.append(
            textwrap.fill(
                names, width=88, initial_indent=f"  {section}: ", subsequent_indent="    "
            )
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, *, read_env_file: bool = True) -> int:
    """Start the bot; `read_env_file=False` takes settings from the environment only."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        if args[0] in ("-h", "--help", "help"):
            print(usage())
            return 0
        print(f"unknown argument: {args[0]}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        settings = load_settings() if read_env_file else load_settings(_env_file=None)
    except SettingsError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 2

    from bot.logging_setup import setup_logging

    setup_logging(settings.log_level, settings.secrets(), settings.log_format)

    # Heavy imports only once the configuration is known to be good.
    from aiogram.exceptions import (
        ClientDecodeError,
        TelegramNetworkError,
        TelegramUnauthorizedError,
    )

    from bot.factory import build_app
    from bot.instance_lock import InstanceLocked
    from bot.runtime import freeze_startup_heap, run

    try:
        app = build_app(settings)
    except InstanceLocked as error:  # a second process on the same database
        print(f"Refusing to start: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # e.g. an unsupported DATABASE_URL
        print(f"Configuration error: {error}", file=sys.stderr)
        return 2
    freeze_startup_heap()
    log = logging.getLogger("bot")
    try:
        run(app.run())
    except KeyboardInterrupt:
        pass
    except TelegramUnauthorizedError:
        print("Configuration error: Telegram rejected BOT_TOKEN", file=sys.stderr)
        return 2
    except ClientDecodeError:
        # A web page or a proxy's error page where the Bot API should be.
        print(
            "Configuration error: TELEGRAM_API_URL did not answer like the Bot API "
            "(the response is not JSON)",
            file=sys.stderr,
        )
        return 2
    except TelegramNetworkError as error:
        # At start-up only: once polling runs, network errors are retried with backoff.
        log.critical("cannot reach Telegram: %s", error)
        return 1
    except Exception as error:
        log.critical("the bot stopped: %s", error, exc_info=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
