"""`python -m bot`: long polling with SQLite, nothing else to start."""

from __future__ import annotations

import logging
import sys

from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError

from bot.factory import build_app
from bot.logging_setup import setup_logging
from bot.runtime import freeze_startup_heap, run
from bot.settings import SettingsError, load_settings


def main(*, read_env_file: bool = True) -> int:
    """Start the bot; `read_env_file=False` takes settings from the environment only."""
    try:
        settings = load_settings() if read_env_file else load_settings(_env_file=None)
    except SettingsError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        return 2
    setup_logging(
        settings.log_level,
        [settings.bot_token.get_secret_value(), settings.llm_api_key.get_secret_value()],
    )
    try:
        app = build_app(settings)
    except ValueError as error:  # e.g. an unsupported DATABASE_URL
        print(f"Configuration error: {error}", file=sys.stderr)
        return 2
    freeze_startup_heap()
    try:
        run(app.run_polling())
    except KeyboardInterrupt:
        pass
    except TelegramUnauthorizedError:
        print("Configuration error: Telegram rejected BOT_TOKEN", file=sys.stderr)
        return 2
    except TelegramNetworkError as error:
        # At start-up only: once polling runs, network errors are retried with backoff.
        logging.getLogger("bot").critical("cannot reach Telegram: %s", error)
        return 1
    except Exception as error:
        logging.getLogger("bot").critical("the bot stopped: %s", error, exc_info=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
