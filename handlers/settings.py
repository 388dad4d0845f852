"""/settings: persona (system prompt), temperature, media models, voice, reply mode, reset.

The settings changed are the chat's (`chat_settings`): a person's own in a private chat, the
group's in a group. A group's menu holds what a group has of its own — persona, temperature,
vision model — and only the group's admins (and the bot's) open and press it
(`GroupAdminOnly`); the image model, voice and reply mode stay each person's, set in their
private chat. Texts and toasts are in the language of the person pressing.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.filters import Magic
from handlers.ui.callbacks import (
    PickMediaModel,
    PickReplyMode,
    PickVoice,
    SetTemperature,
    SettingsAction,
    expire,
    redraw,
    toast,
)
from handlers.ui.group_admins import GROUP_ADMIN, GroupAdminOnly
from handlers.ui.keyboards import (
    media_models_keyboard,
    persona_keyboard,
    reply_mode_keyboard,
    reset_confirm_keyboard,
    settings_keyboard,
    temperature_keyboard,
    voices_keyboard,
)
from handlers.ui.ownership import MenuOwnership
from handlers.ui.texts import LANG_NAMES, t
from services.chat import ChatService
from services.model_choice import ModelChooser
from services.storage import UserRecord
from services.users import MAX_SYSTEM_PROMPT, Profile, UserService, is_group
from services.voice import VOICES


@dataclass(frozen=True, slots=True)
class MediaDefaults:
    """The deployment's defaults, shown when a user has not chosen their own."""

    image_model: str
    voice: str
    # A configured provider speaks (text-to-speech): otherwise voice options are hidden.
    speech: bool = True


PERSONA_PREVIEW = 200
# Only a person's own menu has these: a group's image model, voice and reply mode are its
# members' own.
PERSONAL_ACTIONS = frozenset({"image", "voice", "reply"})


class SettingsForm(StatesGroup):
    persona = State()


def target_of(profile: Profile, chat_settings: UserRecord | None) -> UserRecord:
    """The settings this chat's menu changes (the sender's own when the middleware put none)."""
    return chat_settings if chat_settings is not None else profile.user


def settings_text(
    profile: Profile, record: UserRecord, chat: ChatService, defaults: MediaDefaults
) -> str:
    """`record`'s settings (a person's or a group's) in `profile`'s language."""
    lang = profile.lang
    persona = t(lang, "persona_default")
    if record.system_prompt:
        preview = record.system_prompt
        if len(preview) > PERSONA_PREVIEW:
            preview = preview[:PERSONA_PREVIEW] + "…"
        persona = f"<i>{html.escape(preview)}</i>"
    temperature = (
        f"{record.temperature:g}"
        if record.temperature is not None
        else t(lang, "temperature_default")
    )
    model = html.escape(chat.model_for(record))
    vision = html.escape(chat.vision_model_for(record))
    if is_group(record.user_id):
        return t(
            lang,
            "group-settings-title",
            model=model,
            persona=persona,
            temperature=temperature,
            vision=vision,
        )
    return t(
        lang,
        "settings_title",
        model=model,
        persona=persona,
        temperature=temperature,
        lang=LANG_NAMES.get(lang, lang),
        vision=vision,
        image=html.escape(record.image_model or defaults.image_model),
        voice=html.escape(record.tts_voice or defaults.voice),
        reply_mode=t(lang, f"reply_mode_{record.reply_mode or 'auto'}"),
    )


async def settings_command(
    message: Message,
    profile: Profile,
    chat: ChatService,
    state: FSMContext,
    media_defaults: MediaDefaults,
    chat_settings: UserRecord | None = None,
) -> None:
    await state.clear()
    record = target_of(profile, chat_settings)
    markup = settings_keyboard(
        profile.lang,
        speech=media_defaults.speech,
        group=is_group(record.user_id),
        owner=profile.user.user_id,
    )
    await message.answer(settings_text(profile, record, chat, media_defaults), reply_markup=markup)


async def settings_action(
    query: CallbackQuery,
    callback_data: SettingsAction,
    callback_answer: CallbackAnswer,
    profile: Profile,
    users: UserService,
    chat: ChatService,
    state: FSMContext,
    models: ModelChooser,
    media_defaults: MediaDefaults,
    chat_settings: UserRecord | None = None,
) -> None:
    action = callback_data.action
    lang = profile.lang
    record = target_of(profile, chat_settings)
    group = is_group(record.user_id)
    owner = query.from_user.id
    if group and action in PERSONAL_ACTIONS:
        expire(callback_answer, lang)  # never drawn in a group's menu
        return
    if action == "persona":
        await state.set_state(SettingsForm.persona)
        ask = t(lang, "group-persona-ask" if group else "persona_ask")
        await redraw(query, callback_answer, lang, ask, persona_keyboard(lang, owner=owner))
        return
    if action == "temperature":
        markup = temperature_keyboard(lang, record.temperature, owner=owner)
        await redraw(query, callback_answer, lang, t(lang, "temperature_ask"), markup)
        return
    if action in ("vision", "image"):
        ids = await models.ids_of_kind(action)
        current = record.vision_model if action == "vision" else record.image_model
        title = t(lang, f"pick_{action}_model")
        if not ids:
            title += "\n" + t(lang, "no_models_of_kind")
        markup = media_models_keyboard(lang, action, ids, current, owner=owner)
        await redraw(query, callback_answer, lang, title, markup)
        return
    if action in ("voice", "reply") and not media_defaults.speech:
        expire(callback_answer, lang)  # a button from before the speech provider went away
        return
    if action == "voice":
        markup = voices_keyboard(lang, VOICES, record.tts_voice, owner=owner)
        await redraw(query, callback_answer, lang, t(lang, "pick_voice"), markup)
        return
    if action == "reply":
        markup = reply_mode_keyboard(lang, record.reply_mode, owner=owner)
        await redraw(query, callback_answer, lang, t(lang, "pick_reply_mode"), markup)
        return
    if action == "reset":
        # Asks first: one press by mistake must not wipe a persona written with care.
        await state.clear()
        ask = t(lang, "group-reset-ask" if group else "menu-reset-ask")
        await redraw(query, callback_answer, lang, ask, reset_confirm_keyboard(lang, owner=owner))
        return
    if action == "persona_clear":
        await state.clear()
        record = (await users.set_system_prompt(record.user_id, None)).user
        toast(callback_answer, t(lang, "persona_cleared"))
    elif action == "reset_confirm":
        await state.clear()
        record = (await users.reset(record.user_id)).user
        toast(callback_answer, t(lang, "reset_done"))
    elif action == "back":
        await state.clear()
    else:  # forged: no such button was ever drawn
        expire(callback_answer, lang)
        return
    await _show_settings(query, callback_answer, profile, record, chat, media_defaults)


async def temperature_chosen(
    query: CallbackQuery,
    callback_data: SetTemperature,
    callback_answer: CallbackAnswer,
    profile: Profile,
    users: UserService,
    chat: ChatService,
    media_defaults: MediaDefaults,
    chat_settings: UserRecord | None = None,
) -> None:
    value = None if callback_data.tenths < 0 else callback_data.tenths / 10
    target = target_of(profile, chat_settings).user_id
    try:
        record = (await users.set_temperature(target, value)).user
    except ValueError:  # out of range: not one of the buttons drawn
        expire(callback_answer, profile.lang)
        return
    shown = f"{value:g}" if value is not None else t(profile.lang, "temperature_default")
    toast(callback_answer, t(profile.lang, "temperature_set", temperature=shown))
    await _show_settings(query, callback_answer, profile, record, chat, media_defaults)


async def media_model_chosen(
    query: CallbackQuery,
    callback_data: PickMediaModel,
    callback_answer: CallbackAnswer,
    profile: Profile,
    users: UserService,
    models: ModelChooser,
    chat: ChatService,
    media_defaults: MediaDefaults,
    chat_settings: UserRecord | None = None,
) -> None:
    lang = profile.lang
    target = target_of(profile, chat_settings).user_id
    kind = callback_data.kind
    if kind not in ("vision", "image") or (kind == "image" and is_group(target)):
        expire(callback_answer, lang)
        return
    field = "vision_model" if kind == "vision" else "image_model"
    if callback_data.digest:
        chosen = await models.choose_kind_by_digest(target, kind, callback_data.digest)
        if chosen is None:  # the model left the list since the menu was drawn
            expire(callback_answer, lang)
            return
        record = chosen.user
    else:
        record = (await users.set_media_choice(target, field, None)).user
    model = getattr(record, field) or t(lang, "btn_default")
    toast(callback_answer, t(lang, f"menu-{kind}-set", model=model))
    await _show_settings(query, callback_answer, profile, record, chat, media_defaults)


async def voice_chosen(
    query: CallbackQuery,
    callback_data: PickVoice,
    callback_answer: CallbackAnswer,
    profile: Profile,
    users: UserService,
    chat: ChatService,
    media_defaults: MediaDefaults,
    chat_settings: UserRecord | None = None,
) -> None:
    target = target_of(profile, chat_settings).user_id
    if is_group(target) or (callback_data.voice and callback_data.voice not in VOICES):
        expire(callback_answer, profile.lang)
        return
    voice = callback_data.voice or None
    record = (await users.set_media_choice(target, "tts_voice", voice)).user
    shown = voice or t(profile.lang, "btn_default")
    toast(callback_answer, t(profile.lang, "menu-voice-set", voice=shown))
    await _show_settings(query, callback_answer, profile, record, chat, media_defaults)


async def reply_mode_chosen(
    query: CallbackQuery,
    callback_data: PickReplyMode,
    callback_answer: CallbackAnswer,
    profile: Profile,
    users: UserService,
    chat: ChatService,
    media_defaults: MediaDefaults,
    chat_settings: UserRecord | None = None,
) -> None:
    target = target_of(profile, chat_settings).user_id
    if is_group(target) or callback_data.mode not in ("text", "voice", "both", "auto"):
        expire(callback_answer, profile.lang)
        return
    mode = None if callback_data.mode == "auto" else callback_data.mode
    record = (await users.set_media_choice(target, "reply_mode", mode)).user
    shown = t(profile.lang, f"reply_mode_{callback_data.mode}")
    toast(callback_answer, t(profile.lang, "menu-reply-mode-set", mode=shown))
    await _show_settings(query, callback_answer, profile, record, chat, media_defaults)


async def _show_settings(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    profile: Profile,
    record: UserRecord,
    chat: ChatService,
    media_defaults: MediaDefaults,
) -> None:
    text = settings_text(profile, record, chat, media_defaults)
    markup = settings_keyboard(
        profile.lang,
        speech=media_defaults.speech,
        group=is_group(record.user_id),
        owner=query.from_user.id,
    )
    await redraw(query, callback_answer, profile.lang, text, markup)


async def cancel(message: Message, profile: Profile, state: FSMContext) -> None:
    if await state.get_state() is None:
        await message.answer(t(profile.lang, "menu-nothing-to-cancel"))
        return
    await state.clear()
    await message.answer(t(profile.lang, "cancelled"))


async def persona_received(
    message: Message,
    profile: Profile,
    users: UserService,
    state: FSMContext,
    chat_settings: UserRecord | None = None,
) -> None:
    text = message.text or ""
    if len(text) > MAX_SYSTEM_PROMPT:
        await message.answer(t(profile.lang, "persona_bad"))
        return
    target = target_of(profile, chat_settings).user_id
    await users.set_system_prompt(target, text)
    await state.clear()
    await message.answer(
        t(profile.lang, "group-persona-set" if is_group(target) else "persona_set")
    )


async def persona_not_text(message: Message, profile: Profile) -> None:
    await message.answer(t(profile.lang, "persona_bad"))


def create_router() -> Router:
    router = Router(name=__name__)
    # A menu is pressed by whoever opened it; in a group, by an admin (checked in this order).
    router.message.middleware(GroupAdminOnly())
    router.callback_query.middleware(MenuOwnership())
    router.callback_query.middleware(GroupAdminOnly())
    admin_only = {GROUP_ADMIN: True}
    router.message.register(settings_command, Command("settings"), flags=admin_only)
    router.callback_query.register(settings_action, SettingsAction.filter(), flags=admin_only)
    router.callback_query.register(temperature_chosen, SetTemperature.filter(), flags=admin_only)
    router.callback_query.register(media_model_chosen, PickMediaModel.filter(), flags=admin_only)
    # A person's own choices: no admin needed (a group's menu does not offer them).
    router.callback_query.register(voice_chosen, PickVoice.filter())
    router.callback_query.register(reply_mode_chosen, PickReplyMode.filter())
    router.message.register(cancel, Command("cancel"))
    return router


def create_form_router() -> Router:
    """What is sent while the persona form waits: after the commands (so /cancel and the
    others still work), before media and the catch-alls (so a photo gets "send text").

    aiogram keys a form by user in chat: in a group only the member who opened it is in
    it, and everyone else's messages go on as ordinary chatter."""
    router = Router(name=f"{__name__}.form")
    router.message.filter(StateFilter(SettingsForm.persona))
    router.message.register(persona_received, Magic(F.text), Magic(~F.text.startswith("/")))
    router.message.register(persona_not_text)
    return router
