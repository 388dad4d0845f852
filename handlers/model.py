"""/model: pick the chat model from every provider's live list, or set it by (part of) its id.

The model set is the chat's (`chat_settings`): a person's own in a private chat, the group's
in a group, where only the group's admins (and the bot's) may change it (`GroupAdminOnly`).

With several providers the menu has two levels: the providers, then one provider's models
page by page. It opens where the current model is; with one provider the first level is
skipped, as it would hold a single button.
"""

from __future__ import annotations

import html

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.ui.callbacks import ModelPage, ModelPick, ModelProvider, expire, redraw, toast
from handlers.ui.group_admins import GROUP_ADMIN, GroupAdminOnly
from handlers.ui.keyboards import (
    MODELS_PER_PAGE,
    model_matches_keyboard,
    models_keyboard,
    page_count,
    providers_keyboard,
)
from handlers.ui.ownership import MenuOwnership
from handlers.ui.texts import t
from services.chat import ChatService
from services.model_choice import ModelChooser, ProviderModels, locate
from services.storage import UserRecord
from services.users import Profile

View = tuple[str, InlineKeyboardMarkup | None]

# How much of a user's /model text is echoed back: a whole message's worth would not fit.
QUERY_SHOWN = 100


def _shown_query(text: str) -> str:
    if len(text) > QUERY_SHOWN:
        text = text[:QUERY_SHOWN] + "…"
    return html.escape(text)


def _providers_view(lists: list[ProviderModels], current: str, lang: str, owner: int) -> View:
    lines = [t(lang, "model_providers_title", model=html.escape(current))]
    lines += [
        t(lang, "models_unavailable", provider=html.escape(models.title))
        for models in lists
        if not models.available
    ]
    available = [models for models in lists if models.available]
    if not available:
        lines.append(t(lang, "model_list_empty"))
        return "\n".join(lines), None
    here = locate(lists, current)
    markup = providers_keyboard(available, here.provider if here else None, owner=owner)
    return "\n".join(lines), markup


def _menu_view(
    lists: list[ProviderModels],
    current: str,
    lang: str,
    provider: int | None,
    page: int | None,
    owner: int,
) -> View:
    """The menu at `provider` (None: the providers) and `page` (None: the one holding the
    current model, else the first), pressed by `owner` only."""
    several = len(lists) > 1
    if not several:
        provider = 0
    if provider is None:
        return _providers_view(lists, current, lang, owner)
    models = lists[provider]
    if not models.available:
        if not several:
            return t(lang, "model_list_empty"), None
        text = t(lang, "models_unavailable", provider=html.escape(models.title))
        markup, _, _ = models_keyboard(
            (),
            current,
            0,
            provider=provider,
            back_to_providers=t(lang, "btn_providers"),
            owner=owner,
        )
        return text, markup
    if page is None:
        here = locate([models], current)
        page = here.index // MODELS_PER_PAGE if here else 0
    markup, page, pages = models_keyboard(
        models.ids,
        current,
        page,
        provider=provider,
        back_to_providers=t(lang, "btn_providers") if several else None,
        owner=owner,
    )
    text = t(lang, "model_title", model=html.escape(current), page=page + 1, pages=pages)
    if several:
        text = f"<b>{html.escape(models.title)}</b>\n{text}"
    return text, markup


async def _opening_view(models: ModelChooser, current: str, lang: str, owner: int) -> View:
    """The menu where the current model is: its provider and page (the providers when no
    list holds it)."""
    lists = await models.menu()
    here = locate(lists, current)
    return _menu_view(lists, current, lang, here.provider if here else None, None, owner)


def _target(profile: Profile, chat_settings: UserRecord | None) -> UserRecord:
    """Whose model the menu changes: the chat's (the sender's own when none was given)."""
    return chat_settings if chat_settings is not None else profile.user


async def model_command(
    message: Message,
    command: CommandObject,
    models: ModelChooser,
    chat: ChatService,
    profile: Profile,
    chat_settings: UserRecord | None = None,
) -> None:
    lang = profile.lang
    record = _target(profile, chat_settings)
    owner = profile.user.user_id
    if command.args and command.args.strip():
        wanted = command.args.strip()
        choice = await models.choose(record.user_id, wanted, limit=MODELS_PER_PAGE)
        if choice.profile is not None:
            model = html.escape(chat.model_for(choice.profile.user))
            await message.answer(t(lang, "model_set", model=model))
        elif choice.candidates:
            text = t(lang, "model_matches", query=_shown_query(wanted))
            if choice.more:
                text += "\n" + t(lang, "model_matches_more", count=choice.more)
            current = chat.model_for(record)
            picks = model_matches_keyboard(choice.candidates, current, owner=owner)
            await message.answer(text, reply_markup=picks)
        else:
            await message.answer(t(lang, "model_unknown", model=_shown_query(wanted)))
        return
    text, markup = await _opening_view(models, chat.model_for(record), lang, owner)
    await message.answer(text, reply_markup=markup)


async def model_provider(
    query: CallbackQuery,
    callback_data: ModelProvider,
    callback_answer: CallbackAnswer,
    models: ModelChooser,
    chat: ChatService,
    profile: Profile,
    chat_settings: UserRecord | None = None,
) -> None:
    lists = await models.menu()
    index = callback_data.index
    if index is not None and not 0 <= index < len(lists):
        expire(callback_answer, profile.lang)  # forged, or the providers changed since
        return
    current = chat.model_for(_target(profile, chat_settings))
    text, markup = _menu_view(lists, current, profile.lang, index, None, query.from_user.id)
    await redraw(query, callback_answer, profile.lang, text, markup)


async def model_page(
    query: CallbackQuery,
    callback_data: ModelPage,
    callback_answer: CallbackAnswer,
    models: ModelChooser,
    chat: ChatService,
    profile: Profile,
    chat_settings: UserRecord | None = None,
) -> None:
    lists = await models.menu()
    provider, page = callback_data.provider, callback_data.page
    if not 0 <= provider < len(lists) or not 0 <= page < page_count(len(lists[provider].ids)):
        # Forged, or from a list that has shrunk since: no page to show.
        expire(callback_answer, profile.lang)
        return
    current = chat.model_for(_target(profile, chat_settings))
    text, markup = _menu_view(lists, current, profile.lang, provider, page, query.from_user.id)
    # The page on screen (its own "2/3" button) draws the same menu: redraw sends nothing.
    await redraw(query, callback_answer, profile.lang, text, markup)


async def model_pick(
    query: CallbackQuery,
    callback_data: ModelPick,
    callback_answer: CallbackAnswer,
    models: ModelChooser,
    chat: ChatService,
    profile: Profile,
    chat_settings: UserRecord | None = None,
) -> None:
    lang = profile.lang
    record = _target(profile, chat_settings)
    updated = await models.choose_at(
        record.user_id, callback_data.provider, callback_data.index, callback_data.digest
    )
    if updated is None:
        # The list changed under the menu: say so, and show it as it is now.
        toast(callback_answer, t(lang, "model_gone"), alert=True)
    else:
        record = updated.user
        toast(callback_answer, t(lang, "model_set", model=chat.model_for(record)))
    text, markup = await _opening_view(models, chat.model_for(record), lang, query.from_user.id)
    await redraw(query, callback_answer, lang, text, markup)


def create_router() -> Router:
    router = Router(name=__name__)
    # A menu is pressed by whoever opened it; in a group, by an admin (checked in this order).
    router.message.middleware(GroupAdminOnly())
    router.callback_query.middleware(MenuOwnership())
    router.callback_query.middleware(GroupAdminOnly())
    admin_only = {GROUP_ADMIN: True}
    router.message.register(model_command, Command("model", "models"), flags=admin_only)
    router.callback_query.register(model_provider, ModelProvider.filter(), flags=admin_only)
    router.callback_query.register(model_page, ModelPage.filter(), flags=admin_only)
    router.callback_query.register(model_pick, ModelPick.filter(), flags=admin_only)
    return router
