"""The last line of defence: log the failure, tell the user briefly, keep polling."""

from __future__ import annotations

import contextlib
import logging

from aiogram import Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, ErrorEvent
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.ui.callbacks import expire
from handlers.ui.texts import t
from services.users import Profile, language_for

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
        await message.answer(t(lang, "err_unexpected"))


async def button_expired(
    query: CallbackQuery, callback_answer: CallbackAnswer, profile: Profile | None = None
) -> None:
    """A button no handler takes: forged data, or one from a menu of an older version."""
    lang = profile.lang if profile else language_for(query.from_user.language_code)
    expire(callback_answer, lang)


def create_router() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(button_expired)
    router.error.register(on_error)
    return router
