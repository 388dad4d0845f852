"""One place for Telegram's flood control on every outgoing call.

Outgoing messages are paced (about 30/s overall, about 1/s per chat with short
bursts, 20/min in groups) so 429s stay rare, and a 429 that still comes back is
honoured by waiting `retry_after` and sending again. Drafts are not retried: by
the time the wait is over a newer draft has replaced them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

from services.pacing import KeyedPacer

log = logging.getLogger(__name__)

# Calls that put a new message into a chat and count against Telegram's limits.
PACED_METHODS = frozenset(
    {
        "sendMessage",
        "sendRichMessage",
        "sendPhoto",
        "sendVoice",
        "sendAudio",
        "sendVideo",
        "sendDocument",
        "sendAnimation",
        "sendVideoNote",
        "sendMediaGroup",
        "sendSticker",
        "copyMessage",
        "forwardMessage",
    }
)
NOT_RETRIED = frozenset({"sendMessageDraft", "sendRichMessageDraft", "sendChatAction"})


class FloodControl(BaseRequestMiddleware):
    def __init__(self, pacer: KeyedPacer, *, max_retries: int = 3, max_wait: float = 60.0) -> None:
        self._pacer = pacer
        self._max_retries = max_retries
        self._max_wait = max_wait

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        if name in PACED_METHODS:
            chat_id: Any = getattr(method, "chat_id", None)
            group = isinstance(chat_id, int) and chat_id < 0
            await self._pacer.wait(chat_id, group=group)
        attempt = 0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                attempt += 1
                if (
                    name in NOT_RETRIED
                    or attempt > self._max_retries
                    or error.retry_after > self._max_wait
                ):
                    raise
                log.warning("Telegram asked to wait %ss before %s", error.retry_after, name)
                await asyncio.sleep(error.retry_after)
