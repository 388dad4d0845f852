"""/start, /help and /lang."""

from __future__ import annotations

import html

from aiogram import Bot, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import CallbackQuery, Message

from handlers.ui.callbacks import SetLanguage
from handlers.ui.keyboards import language_keyboard
from handlers.ui.texts import t
from services.chat import ChatService
from services.users import Profile, UserService


async def start(message: Message, profile: Profile, chat: ChatService) -> None:
    name = html.escape(profile.user.first_name or "")
    model = html.escape(chat.model_for(profile.user))
    await message.answer(t(profile.lang, "start", name=name, model=model))


async def help_(message: Message, profile: Profile, bot: Bot) -> None:
    me = await bot.me()
    await message.answer(t(profile.lang, "help", bot=html.escape(me.username or "")))


async def lang_menu(message: Message, profile: Profile) -> None:
    await message.answer(
        t(profile.lang, "lang_ask"),
        reply_markup=language_keyboard(profile.lang, profile.user.language),
    )


async def lang_chosen(query: CallbackQuery, callback_data: SetLanguage, users: UserService) -> None:
    code = None if callback_data.code == "auto" else callback_data.code
    updated = await users.set_language(query.from_user.id, code)
    if query.message is not None:
        await query.message.edit_text(  # type: ignore[union-attr]
            t(updated.lang, "lang_set"),
            reply_markup=language_keyboard(updated.lang, updated.user.language),
        )


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    router.message.register(lang_menu, Command("lang"))
    router.callback_query.register(lang_chosen, SetLanguage.filter())
    return router
