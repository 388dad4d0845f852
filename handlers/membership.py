"""The bot's own membership: users blocking and unblocking it, groups adding and removing it.

Broadcasts skip the users who blocked the bot; statistics count the groups it is still in.
"""

from __future__ import annotations

import html
import logging

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import (
    ADMINISTRATOR,
    KICKED,
    LEAVE_TRANSITION,
    LEFT,
    MEMBER,
    ChatMemberUpdatedFilter,
)
from aiogram.types import ChatMemberUpdated

from handlers.filters import Magic
from handlers.ui.texts import t
from services.users import UserService, language_for

log = logging.getLogger(__name__)


async def bot_blocked(event: ChatMemberUpdated, users: UserService) -> None:
    await users.set_blocked(event.chat.id, True)


async def bot_unblocked(event: ChatMemberUpdated, users: UserService) -> None:
    await users.set_blocked(event.chat.id, False)


async def bot_joined_group(event: ChatMemberUpdated, bot: Bot, users: UserService) -> None:
    """Added to a group: one short introduction, in the language of whoever added the bot
    (the best guess of the group's)."""
    await users.set_blocked(event.chat.id, False)
    me = await bot.me()
    lang = language_for(event.from_user.language_code)
    try:
        await bot.send_message(
            event.chat.id, t(lang, "group-intro", bot=html.escape(me.username or ""))
        )
    except TelegramAPIError as error:  # e.g. added without the right to write
        log.info("no introduction in chat %s: %s", event.chat.id, error)


async def bot_left_group(event: ChatMemberUpdated, users: UserService) -> None:
    await users.set_blocked(event.chat.id, True)


def create_router() -> Router:
    router = Router(name=__name__)
    # In a private chat the bot's own membership is the user's verdict on it.
    private = Magic(F.chat.type == ChatType.PRIVATE)
    router.my_chat_member.register(bot_blocked, private, ChatMemberUpdatedFilter(KICKED))
    router.my_chat_member.register(
        bot_unblocked, private, ChatMemberUpdatedFilter(KICKED >> MEMBER)
    )
    group = Magic(F.chat.type.in_({ChatType.GROUP, ChatType.SUPERGROUP}))
    # Only a join: a change of the bot's admin rights (member <-> administrator) says nothing.
    joined = ChatMemberUpdatedFilter((LEFT | KICKED) >> (MEMBER | ADMINISTRATOR))
    router.my_chat_member.register(bot_joined_group, group, joined)
    router.my_chat_member.register(bot_left_group, group, ChatMemberUpdatedFilter(LEAVE_TRANSITION))
    return router
