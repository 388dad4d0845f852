"""Which update a log line belongs to, and one line per finished answer.

`LogContext` (an outer update middleware) puts the update's id, chat and user in
`UPDATE_CONTEXT`; asyncio copies it into every task the handling starts (the answer's stream,
its delivery), so any log line written on the update's behalf — by the bot or a library —
carries them (bot/logging_setup.py's `UpdateContextFilter` adds them to the record: JSON lines
show them as fields, the text format ignores them). `log_answer` writes the one line per
answer an operator follows: its status, model and latency, never its text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Chat, TelegramObject, Update, User

from bot.logging_setup import UPDATE_CONTEXT
from services.chat import Reply, ReplyOutcome

log = logging.getLogger("bot.answers")


class LogContext(BaseMiddleware):
    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Update):
            return await handler(event, data)
        chat: Chat | None = data.get("event_chat")
        user: User | None = data.get("event_from_user")
        ids = (event.update_id, chat.id if chat else None, user.id if user else None)
        token = UPDATE_CONTEXT.set(ids)
        try:
            return await handler(event, data)
        finally:
            UPDATE_CONTEXT.reset(token)


def log_answer(reply: Reply, outcome: ReplyOutcome) -> None:
    """ChatService's listener: one INFO line per finished answer."""
    began = reply.working_since or reply.started_at
    latency = round(time.monotonic() - began, 3)
    log.info(
        "answer %s in %.2f s (model %s)",
        outcome.status.value,
        latency,
        reply.model,
        extra={
            "chat": reply.request.chat_id,
            "user": reply.request.user_id,
            "model": reply.model,
            "latency": latency,
        },
    )
