"""/new: start a fresh conversation in this chat (or forum topic).

In a group the conversation is everyone's, so only the group's admins (and the bot's) may
start it over (`GroupAdminOnly`).
"""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from handlers.chat import thread_of
from handlers.ui.group_admins import GROUP_ADMIN, GroupAdminOnly
from handlers.ui.texts import t
from services.chat import ChatService
from services.users import Profile


async def new_conversation(message: Message, chat: ChatService, profile: Profile) -> None:
    await chat.new_conversation(message.chat.id, thread_of(message))
    await message.answer(t(profile.lang, "new_done"))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.middleware(GroupAdminOnly())
    router.message.register(
        new_conversation, Command("new", "reset", "clear"), flags={GROUP_ADMIN: True}
    )
    return router
