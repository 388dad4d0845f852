"""Users blocking and unblocking the bot: broadcasts skip the ones who blocked it."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import KICKED, MEMBER, ChatMemberUpdatedFilter
from aiogram.types import ChatMemberUpdated

from handlers.filters import Magic
from services.users import UserService


async def bot_blocked(event: ChatMemberUpdated, users: UserService) -> None:
    await users.set_blocked(event.chat.id, True)


async def bot_unblocked(event: ChatMemberUpdated, users: UserService) -> None:
    await users.set_blocked(event.chat.id, False)


def create_router() -> Router:
    router = Router(name=__name__)
    # In a private chat the bot's own membership is the user's verdict on it.
    router.my_chat_member.filter(Magic(F.chat.type == "private"))
    router.my_chat_member.register(bot_blocked, ChatMemberUpdatedFilter(KICKED))
    router.my_chat_member.register(bot_unblocked, ChatMemberUpdatedFilter(KICKED >> MEMBER))
    return router
