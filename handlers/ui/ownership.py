"""A menu belongs to whoever opened it: in a group, other members' presses change nothing.

The owner's id travels in the button's own callback data (the `owner` field of the menu
callback classes in handlers/ui/callbacks.py), not in the message the menu replies to: a
command message is often deleted in groups (by its sender, or by a clean-up bot), the reply
link goes with it, and a restart of the bot must not orphan menus either. Owner 0 means
"anyone" (a menu drawn for no one in particular).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, TelegramObject

from handlers.ui.texts import t
from services.users import Profile, language_for


def menu_owner(callback_data: object) -> int:
    """The id of the user a pressed menu belongs to; 0 when it belongs to no one."""
    owner = getattr(callback_data, "owner", 0)
    return owner if isinstance(owner, int) else 0


class MenuOwnership(BaseMiddleware):
    """Answers a press on someone else's menu with a short alert and skips the handler.

    An inner callback-query middleware: it runs after the filters, so `callback_data` is the
    parsed button; `AnswerEveryCallback` (registered on the dispatcher) sends the alert.
    """

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, CallbackQuery):
            return await handler(event, data)
        owner = menu_owner(data.get("callback_data"))
        if owner == 0 or owner == event.from_user.id:
            return await handler(event, data)
        profile: Profile | None = data.get("profile")
        lang = profile.lang if profile else language_for(event.from_user.language_code)
        data["callback_answer"].text = t(lang, "group-menu-not-yours")
        data["callback_answer"].show_alert = True
        return None
