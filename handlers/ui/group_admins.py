"""Who may change a group's settings and conversation: its administrators and the bot's.

In a group, `/model`, `/settings` and `/new` (and their buttons) act on the group itself, so
one member must not be able to change what everyone gets. Handlers that do so are
registered with the flag `GROUP_ADMIN` (`flags={GROUP_ADMIN: True}`) on a router that carries
`GroupAdminOnly` as an inner middleware; private chats pass straight through.

Telegram is asked (`getChatMember`) at most once a minute per member of a group: a menu's
every press would otherwise cost a round trip, and a demoted admin loses the right within
that minute.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.dispatcher.flags import get_flag
from aiogram.enums import ChatMemberStatus, ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, Chat, Message, TelegramObject, User

from handlers.ui.texts import t
from services.users import Profile, language_for

log = logging.getLogger(__name__)

GROUP_ADMIN = "group_admin"
GROUP_TYPES = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})
_ADMIN_STATUSES = frozenset({ChatMemberStatus.CREATOR, ChatMemberStatus.ADMINISTRATOR})


class GroupAdmins:
    """Group administrators as Telegram reports them, each answer kept for `ttl` seconds.

    Bounded: past `size` entries the least recently used is forgotten. A failed lookup (the
    bot cannot see the members, Telegram is down) is not remembered and counts as "no".
    """

    def __init__(
        self,
        *,
        ttl: float = 60.0,
        size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._known: OrderedDict[tuple[int, int], tuple[bool, float]] = OrderedDict()

    async def is_admin(self, bot: Bot, chat_id: int, user_id: int) -> bool:
        key = (chat_id, user_id)
        now = self._clock()
        known = self._known.get(key)
        if known is not None and known[1] > now:
            self._known.move_to_end(key)
            return known[0]
        try:
            member = await bot.get_chat_member(chat_id, user_id)
        except TelegramAPIError as error:
            log.info("admin check in chat %s failed: %s", chat_id, error)
            return False
        admin = member.status in _ADMIN_STATUSES
        self._known[key] = (admin, now + self._ttl)
        self._known.move_to_end(key)
        if len(self._known) > self._size:
            self._known.popitem(last=False)
        return admin


class GroupAdminOnly(BaseMiddleware):
    """Lets a handler flagged `GROUP_ADMIN` run in a group only for the group's admins and
    the bot's (ADMIN_IDS); anyone else gets a short refusal (a reply, or an alert on a
    button) and nothing changes. Needs `group_admins` (a `GroupAdmins`) in the data."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        chat: Chat | None = data.get("event_chat")
        if chat is None or chat.type not in GROUP_TYPES or not get_flag(data, GROUP_ADMIN):
            return await handler(event, data)
        user: User | None = data.get("event_from_user")
        profile: Profile | None = data.get("profile")
        if profile is not None and profile.is_admin:
            return await handler(event, data)
        admins: GroupAdmins = data["group_admins"]
        if user is not None and await admins.is_admin(data["bot"], chat.id, user.id):
            return await handler(event, data)
        lang = profile.lang if profile else language_for(user.language_code if user else None)
        text = t(lang, "group-admins-only")
        if isinstance(event, CallbackQuery):
            data["callback_answer"].text = text
            data["callback_answer"].show_alert = True
        elif isinstance(event, Message):
            await event.reply(text)
        return None
