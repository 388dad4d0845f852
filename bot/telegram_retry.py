"""Retries for the Telegram calls that carry an answer, and one log line per failure.

A connect error, a timeout or a 5xx on the final message, a continuation part, the
group's final edit or a media answer would lose an answer the user paid a question for.
`DeliveryRetry` sends such a call again after 0.5, 1 and 2 s (by default), within a
bounded total, then lets the error propagate to the renderer, which tells the user.

Possible duplicates, accepted on purpose: a timeout or a dropped connection after the
request went out may mean Telegram did deliver it and only the answer was lost. The Bot
API has no idempotency key and no way to read a chat's messages back, so "check before
repeating" is impossible; a rare duplicate message is a far smaller harm than a lost
answer. (A repeated `editMessageText` that did land gets 400 "message is not modified",
which the renderer already treats as done.)

Drafts, chat actions, `copyMessage` (broadcasts pause and resume on their own) and
`getUpdates` (the polling loop retries) are not retried here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError, TelegramServerError
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

log = logging.getLogger(__name__)

# Calls whose loss would lose (part of) an answer.
ANSWER_METHODS = frozenset(
    {
        "sendMessage",
        "sendRichMessage",
        "editMessageText",
        "sendVoice",
        "sendPhoto",
        "sendVideo",
        "sendDocument",
        "sendMediaGroup",
        "sendAnimation",
        "sendAudio",
    }
)
DEFAULT_DELAYS = (0.5, 1.0, 2.0)
# Failures worth another attempt: the connection (refused, reset, dropped, timed out)
# and the server's own errors. A 4xx is the request's fault and would fail again.
RETRIED_ERRORS: tuple[type[TelegramAPIError], ...] = (TelegramNetworkError, TelegramServerError)

Sleep = Callable[[float], Awaitable[None]]


def backoff_delays(base: float, retries: int) -> tuple[float, ...]:
    """`retries` delays doubling from `base`: 0.5 → (0.5, 1.0, 2.0)."""
    return tuple(base * 2**n for n in range(retries))


def error_kind(error: TelegramAPIError) -> str:
    """What went wrong, fit for a log line: the exception class and Telegram's description
    (or, for a transport failure, aiohttp's message, already freed of the token)."""
    return f"{type(error).__name__}: {error.message}"


class DeliveryRetry(BaseRequestMiddleware):
    """Sends an answer-carrying call again on a transport failure or a 5xx.

    `delays` are the waits before each retry (their count is the number of retries);
    no retry starts once `max_total` seconds have passed since the first attempt, so an
    answer is given up on (and the user told) within a bounded time. `sleep` is
    injectable so tests run at full speed.
    """

    def __init__(
        self,
        delays: Sequence[float] = DEFAULT_DELAYS,
        *,
        max_total: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        methods: frozenset[str] = ANSWER_METHODS,
    ) -> None:
        self._delays = tuple(delays)
        self._max_total = max_total
        self._sleep = sleep
        self._clock = clock
        self._methods = methods

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        if name not in self._methods:
            return await make_request(bot, method)
        started = self._clock()
        attempt = 1
        while True:
            try:
                return await make_request(bot, method)
            except RETRIED_ERRORS as error:
                chat_id: Any = getattr(method, "chat_id", None)
                delay = self._delays[attempt - 1] if attempt <= len(self._delays) else None
                if delay is None or self._clock() - started + delay > self._max_total:
                    log.warning(
                        "Telegram %s to chat %s failed after %d attempts: %s",
                        name,
                        chat_id,
                        attempt,
                        error_kind(error),
                    )
                    raise
                log.info(
                    "Telegram %s to chat %s failed (attempt %d), retrying in %.1fs: %s",
                    name,
                    chat_id,
                    attempt,
                    delay,
                    error_kind(error),
                )
                await self._sleep(delay)
                attempt += 1
