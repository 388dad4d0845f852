"""/settings: persona (system prompt), temperature, reset to defaults."""

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
)
from handlers.ui.keyboards import (
    media_models_keyboard,
    persona_keyboard,
    reply_mode_keyboard,
    settings_keyboard,
    temperature_keyboard,
    voices_keyboard,
)
from handlers.ui.texts import LANG_NAMES, t
from services.chat import ChatService
from services.model_choice import ModelChooser
from services.users import MAX_SYSTEM_PROMPT, Profile, UserService
from services.voice import VOICES


@dataclass(frozen=True, slots=True)
class MediaDefaults:
    """The deployment's defaults, shown when a user has not chosen their own."""

    image_model: str
    voice: str
    # A configured provider speaks (text-to-speech): otherwise voice options are hidden.
    speech: bool = True


PERSONA_PREVIEW = 200


class SettingsForm(StatesGroup):
    persona = State()


def settings_text(profile: Profile, chat: ChatService, defaults: MediaDefaults) -> str:
    user = profile.user
    persona = t(profile.lang, "persona_default")
    if user.system_prompt:
        preview = user.system_prompt
        if len(preview) > PERSONA_PREVIEW:
            preview = preview[:PERSONA_PREVIEW] + "…"
        persona = f"<i>{html.escape(preview)}</i>"
    temperature = (
        f"{user.temperature:g}"
        if user.temperature is not None
        else t(profile.lang, "temperature_default")
    )
    return t(
        profile.lang,
        "settings_title",
        model=html.escape(chat.model_for(user)),
        persona=persona,
        temperature=temperature,
        lang=LANG_NAMES.get(profile.lang, profile.lang),
        vision=html.escape(chat.vision_model_for(user)),
        image=html.escape(user.image_model or defaults.image_model),
        voice=html.escape(user.tts_voice or defaults.voice),
        reply_mode=t(profile.lang, f"reply_mode_{user.reply_mode or 'auto'}"),
    )


async def settings_command(
    message: Message,
    profile: Profile,
    chat: ChatService,
    state: FSMContext,
    media_defaults: MediaDefaults,
) -> None:
    await state.clear()
    await message.answer(
        settings_text(profile, chat, media_defaults),
        reply_markup=settings_keyboard(profile.lang, speech=media_defaults.speech),
    )


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
) -> None:
    action = callback_data.action
    lang = profile.lang
    if action == "persona":
        await state.set_state(SettingsForm.persona)
        await redraw(query, callback_answer, lang, t(lang, "persona_ask"), persona_keyboard(lang))
        return
    if action == "temperature":
        markup = temperature_keyboard(lang, profile.user.temperature)
        await redraw(query, callback_answer, lang, t(lang, "temperature_ask"), markup)
        return
    if action in ("vision", "image"):
        ids = await models.ids_of_kind(action)
        current = profile.user.vision_model if action == "vision" else profile.user.image_model
        title = t(lang, f"pick_{action}_model")
        if not ids:
            title += "\n" + t(lang, "no_models_of_kind")
        markup = media_models_keyboard(lang, action, ids, current)
        await redraw(query, callback_answer, lang, title, markup)
        return
    if action in ("voice", "reply") and not media_defaults.speech:
        expire(callback_answer, lang)  # a button from before the speech provider went away
        return
    if action == "voice":
        markup = voices_keyboard(lang, VOICES, profile.user.tts_voice)
        await redraw(query, callback_answer, lang, t(lang, "pick_voice"), markup)
        return
    if action == "reply":
        markup = reply_mode_keyboard(lang, profile.user.reply_mode)
        await redraw(query, callback_answer, lang, t(lang, "pick_reply_mode"), markup)
        return
    if action == "persona_clear":
        await state.clear()
        profile = await users.set_system_prompt(query.from_user.id, None)
    elif action == "reset":
        await state.clear()
        profile = await users.reset(query.from_user.id)
    elif action == "back":
        await state.clear()
    else:  # forged: no such button was ever drawn
        expire(callback_answer, lang)
        return
    await _show_settings(query, callback_answer, profile, chat, media_defaults)


async def temperature_chosen(
    query: CallbackQuery,
    callback_data: SetTemperature,
    callback_answer: CallbackAnswer,
    profile: Profile,
    users: UserService,
    chat: ChatService,
    media_defaults: MediaDefaults,
) -> None:
    value = None if callback_data.tenths < 0 else callback_data.tenths / 10
    try:
        profile = await users.set_temperature(query.from_user.id, value)
    except ValueError:  # out of range: not one of the buttons drawn
        expire(callback_answer, profile.lang)
        return
    shown = f"{value:g}" if value is not None else t(profile.lang, "temperature_default")
    callback_answer.text = t(profile.lang, "temperature_set", temperature=shown)
    await _show_settings(query, callback_answer, profile, chat, media_defaults)


async def media_model_chosen(
    query: CallbackQuery,
    callback_data: PickMediaModel,
    callback_answer: CallbackAnswer,
    profile: Profile,
    users: UserService,
    models: ModelChooser,
    chat: ChatService,
    media_defaults: MediaDefaults,
) -> None:
    if callback_data.kind not in ("vision", "image"):
        expire(callback_answer, profile.lang)
        return
    field = "vision_model" if callback_data.kind == "vision" else "image_model"
    if callback_data.digest:
        chosen = await models.choose_kind_by_digest(
            query.from_user.id, callback_data.kind, callback_data.digest
        )
        if chosen is None:  # the model left the list since the menu was drawn
            expire(callback_answer, profile.lang)
            return
        profile = chosen
    else:
        profile = await users.set_media_choice(query.from_user.id, field, None)
    await _show_settings(query, callback_answer, profile, chat, media_defaults)


async def voice_chosen(
    query: CallbackQuery,
    callback_data: PickVoice,
    callback_answer: CallbackAnswer,
    profile: Profile,
    users: UserService,
    chat: ChatService,
    media_defaults: MediaDefaults,
) -> None:
    if callback_data.voice and callback_data.voice not in VOICES:
        expire(callback_answer, profile.lang)
        return
    voice = callback_data.voice or None
    profile = await users.set_media_choice(query.from_user.id, "tts_voice", voice)
    await _show_settings(query, callback_answer, profile, chat, media_defaults)


async def reply_mode_chosen(
    query: CallbackQuery,
    callback_data: PickReplyMode,
    callback_answer: CallbackAnswer,
    profile: Profile,
    users: UserService,
    chat: ChatService,
    media_defaults: MediaDefaults,
) -> None:
    if callback_data.mode not in ("text", "voice", "both", "auto"):
        expire(callback_answer, profile.lang)
        return
    mode = None if callback_data.mode == "auto" else callback_data.mode
    profile = await users.set_media_choice(query.from_user.id, "reply_mode", mode)
    await _show_settings(query, callback_answer, profile, chat, media_defaults)


async def _show_settings(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    profile: Profile,
    chat: ChatService,
    media_defaults: MediaDefaults,
) -> None:
    text = settings_text(profile, chat, media_defaults)
    markup = settings_keyboard(profile.lang, speech=media_defaults.speech)
    await redraw(query, callback_answer, profile.lang, text, markup)


async def cancel(message: Message, profile: Profile, state: FSMContext) -> None:
    await state.clear()
    await message.answer(t(profile.lang, "cancelled"))


async def persona_received(
    message: Message, profile: Profile, users: UserService, state: FSMContext
) -> None:
    text = message.text or ""
    if len(text) > MAX_SYSTEM_PROMPT:
        await message.answer(t(profile.lang, "persona_bad"))
        return
    await users.set_system_prompt(profile.user.user_id, text)
    await state.clear()
    await message.answer(t(profile.lang, "persona_set"))


async def persona_not_text(message: Message, profile: Profile) -> None:
    await message.answer(t(profile.lang, "persona_bad"))


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(settings_command, Command("settings"))
    router.callback_query.register(settings_action, SettingsAction.filter())
    router.callback_query.register(temperature_chosen, SetTemperature.filter())
    router.callback_query.register(media_model_chosen, PickMediaModel.filter())
    router.callback_query.register(voice_chosen, PickVoice.filter())
    router.callback_query.register(reply_mode_chosen, PickReplyMode.filter())
    router.message.register(cancel, Command("cancel"))
    return router


def create_form_router() -> Router:
    """What is sent while the persona form waits: after the commands (so /cancel and the
    others still work), before media and the catch-alls (so a photo gets "send text")."""
    router = Router(name=f"{__name__}.form")
    router.message.filter(StateFilter(SettingsForm.persona))
    router.message.register(persona_received, Magic(F.text), Magic(~F.text.startswith("/")))
    router.message.register(persona_not_text)
    return router
