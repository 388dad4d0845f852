"""The one check in front of every admin command (/stats, /broadcast, /user, /allow, ...)."""

from __future__ import annotations

from aiogram.enums import ChatType
from aiogram.types import Message

from handlers.ui.texts import t
from services.users import Profile


async def admin_in_private(message: Message, profile: Profile) -> bool:
    """True when the command may go on: an admin, in the private chat with the bot (figures
    and levers are not for a group's eyes). Otherwise the refusal is answered here."""
    if not profile.is_admin:
        await message.answer(t(profile.lang, "admins_only"))
        return False
    if message.chat.type != ChatType.PRIVATE:
        await message.answer(t(profile.lang, "private_only"))
        return False
    return True
