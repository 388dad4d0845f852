"""/model: pick the chat model from the live list, or set it by id."""

from __future__ import annotations

import html

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.ui.callbacks import ModelPage, ModelPick, expire, redraw
from handlers.ui.keyboards import MODELS_PER_PAGE, models_keyboard, page_count
from handlers.ui.texts import t
from services.chat import ChatService
from services.model_choice import ModelChooser
from services.users import Profile


async def _menu(
    models: ModelChooser, chat: ChatService, profile: Profile, page: int | None
) -> tuple[str, InlineKeyboardMarkup | None]:
    ids = await models.chat_model_ids()
    if not ids:
        return t(profile.lang, "model_list_empty"), None
    current = chat.model_for(profile.user)
    if page is None:
        # Open on the page that holds the current model.
        page = ids.index(current) // MODELS_PER_PAGE if current in ids else 0
    markup, page, pages = models_keyboard(ids, current, page)
    text = t(profile.lang, "model_title", model=html.escape(current), page=page + 1, pages=pages)
    return text, markup


async def model_command(
    message: Message,
    command: CommandObject,
    models: ModelChooser,
    chat: ChatService,
    profile: Profile,
) -> None:
    if command.args:
        wanted = command.args.strip()
        updated = await models.choose(profile.user.user_id, wanted)
        if updated is None:
            await message.answer(t(profile.lang, "model_unknown", model=html.escape(wanted)))
        else:
            model = html.escape(chat.model_for(updated.user))
            await message.answer(t(profile.lang, "model_set", model=model))
        return
    text, markup = await _menu(models, chat, profile, None)
    await message.answer(text, reply_markup=markup)


async def model_page(
    query: CallbackQuery,
    callback_data: ModelPage,
    callback_answer: CallbackAnswer,
    models: ModelChooser,
    chat: ChatService,
    profile: Profile,
) -> None:
    pages = page_count(len(await models.chat_model_ids()))
    if not 0 <= callback_data.page < pages:
        # Forged, or from a list that has shrunk since: no page to show.
        expire(callback_answer, profile.lang)
        return
    text, markup = await _menu(models, chat, profile, callback_data.page)
    await redraw(query, callback_answer, profile.lang, text, markup)


async def model_pick(
    query: CallbackQuery,
    callback_data: ModelPick,
    callback_answer: CallbackAnswer,
    models: ModelChooser,
    chat: ChatService,
    profile: Profile,
) -> None:
    updated = await models.choose_by_digest(query.from_user.id, callback_data.digest)
    if updated is None:
        callback_answer.text = t(profile.lang, "model_gone")
        callback_answer.show_alert = True
        return
    model = chat.model_for(updated.user)
    callback_answer.text = (
        t(updated.lang, "model_set", model=model).replace("<code>", "").replace("</code>", "")
    )
    text, markup = await _menu(models, chat, updated, None)
    await redraw(query, callback_answer, updated.lang, text, markup)


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(model_command, Command("model", "models"))
    router.callback_query.register(model_page, ModelPage.filter())
    router.callback_query.register(model_pick, ModelPick.filter())
    return router
