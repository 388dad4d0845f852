"""/settings: persona (system prompt), temperature, reset to defaults."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from handlers.ui.callbacks import SetTemperature, SettingsAction
from handlers.ui.keyboards import persona_keyboard, settings_keyboard, temperature_keyboard
from handlers.ui.texts import LANG_NAMES, t
from services.chat import ChatService
from services.users import MAX_SYSTEM_PROMPT, Profile, UserService

PERSONA_PREVIEW = 200


class SettingsForm(StatesGroup):
    persona = State()


def settings_text(profile: Profile, chat: ChatService) -> str:
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
    )


async def settings_command(
    message: Message, profile: Profile, chat: ChatService, state: FSMContext
) -> None:
    await state.clear()
    await message.answer(settings_text(profile, chat), reply_markup=settings_keyboard(profile.lang))


async def settings_action(
    query: CallbackQuery,
    callback_data: SettingsAction,
    profile: Profile,
    users: UserService,
    chat: ChatService,
    state: FSMContext,
) -> None:
    message = query.message
    action = callback_data.action
    await query.answer()
    if message is None:
        return
    if action == "persona":
        await state.set_state(SettingsForm.persona)
        await message.edit_text(  # type: ignore[union-attr]
            t(profile.lang, "persona_ask"), reply_markup=persona_keyboard(profile.lang)
        )
        return
    if action == "temperature":
        await message.edit_text(  # type: ignore[union-attr]
            t(profile.lang, "temperature_ask"),
            reply_markup=temperature_keyboard(profile.lang, profile.user.temperature),
        )
        return
    if action == "persona_clear":
        await state.clear()
        profile = await users.set_system_prompt(query.from_user.id, None)
    elif action == "reset":
        await state.clear()
        profile = await users.reset(query.from_user.id)
    else:  # back
        await state.clear()
    await message.edit_text(  # type: ignore[union-attr]
        settings_text(profile, chat), reply_markup=settings_keyboard(profile.lang)
    )


async def temperature_chosen(
    query: CallbackQuery,
    callback_data: SetTemperature,
    users: UserService,
    chat: ChatService,
) -> None:
    value = None if callback_data.tenths < 0 else callback_data.tenths / 10
    try:
        profile = await users.set_temperature(query.from_user.id, value)
    except ValueError:
        await query.answer()
        return
    shown = f"{value:g}" if value is not None else t(profile.lang, "temperature_default")
    await query.answer(t(profile.lang, "temperature_set", temperature=shown))
    if query.message is not None:
        await query.message.edit_text(  # type: ignore[union-attr]
            settings_text(profile, chat), reply_markup=settings_keyboard(profile.lang)
        )


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
    router.message.register(cancel, Command("cancel"))
    router.message.register(
        persona_received, StateFilter(SettingsForm.persona), F.text, ~F.text.startswith("/")
    )
    router.message.register(persona_not_text, StateFilter(SettingsForm.persona))
    return router
