"""/start, /help and /lang.

In a group /start and /help are short and say how to address the bot there; /lang sets the
language of the person who sends it (in any chat), and its menu is pressed by them only.
"""

from __future__ import annotations

import html

from aiogram import Bot, Router
from aiogram.enums import ChatType
from aiogram.filters import Command, CommandStart
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.ui.callbacks import SetLanguage, expire, redraw, toast
from handlers.ui.keyboards import language_keyboard
from handlers.ui.ownership import MenuOwnership
from handlers.ui.texts import t
from services.chat import ChatService
from services.users import LANGUAGES, Profile, UserService


def _in_group(message: Message) -> bool:
    return message.chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)


async def start(message: Message, profile: Profile, chat: ChatService, bot: Bot) -> None:
    if _in_group(message):
        me = await bot.me()
        await message.answer(t(profile.lang, "group-start", bot=html.escape(me.username or "")))
        return
    name = html.escape(profile.user.first_name or "")
    model = html.escape(chat.model_for(profile.user))
    await message.answer(t(profile.lang, "start", name=name, model=model))


async def help_(
    message: Message, profile: Profile, bot: Bot, balance_for_everyone: bool = False
) -> None:
    me = await bot.me()
    bot_name = html.escape(me.username or "")
    if _in_group(message):
        await message.answer(t(profile.lang, "group-help", bot=bot_name))
        return
    # /balance is listed only for those who may use it.
    usage = (
        "admin-help-usage-balance"
        if profile.is_admin or balance_for_everyone
        else "admin-help-usage"
    )
    await message.answer(t(profile.lang, "help", bot=bot_name, usage=t(profile.lang, usage)))


async def lang_menu(message: Message, profile: Profile) -> None:
    await message.answer(
        t(profile.lang, "lang_ask"),
        reply_markup=language_keyboard(
            profile.lang, profile.user.language, owner=profile.user.user_id
        ),
    )


async def lang_chosen(
    query: CallbackQuery,
    callback_data: SetLanguage,
    callback_answer: CallbackAnswer,
    users: UserService,
    profile: Profile,
) -> None:
    if callback_data.code not in (*LANGUAGES, "auto"):
        expire(callback_answer, profile.lang)  # forged: no such button was drawn
        return
    code = None if callback_data.code == "auto" else callback_data.code
    updated = await users.set_language(query.from_user.id, code)
    text = t(updated.lang, "lang_set")
    toast(callback_answer, text)
    markup = language_keyboard(updated.lang, updated.user.language, owner=query.from_user.id)
    await redraw(query, callback_answer, updated.lang, text, markup)


def create_router() -> Router:
    router = Router(name=__name__)
    router.callback_query.middleware(MenuOwnership())
    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    router.message.register(lang_menu, Command("lang"))
    router.callback_query.register(lang_chosen, SetLanguage.filter())
    return router
