"""The last line of defence: log the failure, tell the user briefly, keep polling."""

from __future__ import annotations

import contextlib
import logging

from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent

from handlers.ui.texts import t
from services.users import language_for

log = logging.getLogger(__name__)


async def on_error(event: ErrorEvent) -> None:
    update = event.update
    log.error("update %s failed: %s", update.update_id, event.exception, exc_info=event.exception)
    message = update.message or (update.callback_query.message if update.callback_query else None)
    user = update.message.from_user if update.message else None
    if update.callback_query:
        user = update.callback_query.from_user
        with contextlib.suppress(TelegramAPIError):
            await update.callback_query.answer()
    if message is None or isinstance(event.exception, TelegramAPIError):
        return
    lang = language_for(user.language_code if user else None)
    with contextlib.suppress(TelegramAPIError):
        await message.answer(t(lang, "err_unexpected"))  # type: ignore[union-attr]


def create_router() -> Router:
    router = Router(name=__name__)
    router.error.register(on_error)
    return router
