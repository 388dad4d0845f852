"""Inline keyboards, built as functions of what they show."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from handlers.ui.callbacks import (
    BroadcastAction,
    ModelPage,
    ModelPick,
    PickMediaModel,
    PickReplyMode,
    PickVoice,
    SetLanguage,
    SetTemperature,
    SettingsAction,
    StopReply,
)
from handlers.ui.texts import LANG_NAMES, t
from services.model_choice import model_digest

MODELS_PER_PAGE = 8
TEMPERATURES = (0.0, 0.3, 0.7, 1.0, 1.3)


def stop_keyboard(lang: str, reply_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t(lang, "stop_button"), callback_data=StopReply(reply_id=reply_id).pack()
                )
            ]
        ]
    )


def page_count(total: int) -> int:
    return max(1, -(-total // MODELS_PER_PAGE))


def models_keyboard(
    model_ids: Sequence[str], current: str, page: int
) -> tuple[InlineKeyboardMarkup, int, int]:
    """A page of models with the current one marked. Returns (markup, page, pages)."""
    pages = page_count(len(model_ids))
    page = min(max(page, 0), pages - 1)
    builder = InlineKeyboardBuilder()
    start = page * MODELS_PER_PAGE
    for model_id in model_ids[start : start + MODELS_PER_PAGE]:
        mark = "✅ " if model_id == current else ""
        builder.row(
            InlineKeyboardButton(
                text=f"{mark}{model_id}",
                callback_data=ModelPick(digest=model_digest(model_id)).pack(),
            )
        )
    nav: list[InlineKeyboardButton] = []
    if page > 0:
        nav.append(InlineKeyboardButton(text="«", callback_data=ModelPage(page=page - 1).pack()))
    if pages > 1:
        nav.append(
            InlineKeyboardButton(
                text=f"{page + 1}/{pages}", callback_data=ModelPage(page=page).pack()
            )
        )
    if page < pages - 1:
        nav.append(InlineKeyboardButton(text="»", callback_data=ModelPage(page=page + 1).pack()))
    if nav:
        builder.row(*nav)
    return builder.as_markup(), page, pages


def settings_keyboard(lang: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.row(
        InlineKeyboardButton(
            text=t(lang, "btn_persona"), callback_data=SettingsAction(action="persona").pack()
        ),
        InlineKeyboardButton(
            text=t(lang, "btn_temperature"),
            callback_data=SettingsAction(action="temperature").pack(),
        ),
    )
    builder.row(
        InlineKeyboardButton(
            text=t(lang, "btn_vision_model"), callback_data=SettingsAction(action="vision").pack()
        ),
        InlineKeyboardButton(
            text=t(lang, "btn_image_model"), callback_data=SettingsAction(action="image").pack()
        ),
    )
    builder.row(
        InlineKeyboardButton(
            text=t(lang, "btn_voice"), callback_data=SettingsAction(action="voice").pack()
        ),
        InlineKeyboardButton(
            text=t(lang, "btn_reply_mode"), callback_data=SettingsAction(action="reply").pack()
        ),
    )
    builder.row(
        InlineKeyboardButton(
            text=t(lang, "btn_reset"), callback_data=SettingsAction(action="reset").pack()
        )
    )
    return builder.as_markup()


def _back_button(lang: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=t(lang, "btn_back"), callback_data=SettingsAction(action="back").pack()
    )


def media_models_keyboard(
    lang: str, kind: str, model_ids: Sequence[str], current: str | None
) -> InlineKeyboardMarkup:
    """At most 30 models: the list of one kind is short; more would not fit a screen."""
    builder = InlineKeyboardBuilder()
    for model_id in model_ids[:30]:
        mark = "✅ " if model_id == current else ""
        builder.row(
            InlineKeyboardButton(
                text=f"{mark}{model_id}",
                callback_data=PickMediaModel(kind=kind, digest=model_digest(model_id)).pack(),
            )
        )
    builder.row(
        InlineKeyboardButton(
            text=("✅ " if current is None else "") + t(lang, "btn_default"),
            callback_data=PickMediaModel(kind=kind, digest="").pack(),
        ),
        _back_button(lang),
    )
    return builder.as_markup()


def voices_keyboard(lang: str, voices: Sequence[str], current: str | None) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for voice in voices:
        mark = "✅ " if voice == current else ""
        builder.button(text=f"{mark}{voice}", callback_data=PickVoice(voice=voice).pack())
    builder.adjust(3)
    builder.row(
        InlineKeyboardButton(
            text=("✅ " if current is None else "") + t(lang, "btn_default"),
            callback_data=PickVoice(voice="").pack(),
        ),
        _back_button(lang),
    )
    return builder.as_markup()


def reply_mode_keyboard(lang: str, current: str | None) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for mode in ("text", "voice", "both", "auto"):
        selected = (current or "auto") == mode
        builder.button(
            text=("✅ " if selected else "") + t(lang, f"reply_mode_{mode}"),
            callback_data=PickReplyMode(mode=mode).pack(),
        )
    builder.adjust(2)
    builder.row(_back_button(lang))
    return builder.as_markup()


def persona_keyboard(lang: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.row(
        InlineKeyboardButton(
            text=t(lang, "btn_default"), callback_data=SettingsAction(action="persona_clear").pack()
        ),
        InlineKeyboardButton(
            text=t(lang, "btn_back"), callback_data=SettingsAction(action="back").pack()
        ),
    )
    return builder.as_markup()


def temperature_keyboard(lang: str, current: float | None) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    row = []
    for value in TEMPERATURES:
        mark = "✅ " if current is not None and abs(current - value) < 1e-9 else ""
        row.append(
            InlineKeyboardButton(
                text=f"{mark}{value:g}",
                callback_data=SetTemperature(tenths=round(value * 10)).pack(),
            )
        )
    builder.row(*row)
    builder.row(
        InlineKeyboardButton(
            text=("✅ " if current is None else "") + t(lang, "btn_default"),
            callback_data=SetTemperature(tenths=-1).pack(),
        ),
        InlineKeyboardButton(
            text=t(lang, "btn_back"), callback_data=SettingsAction(action="back").pack()
        ),
    )
    return builder.as_markup()


def language_keyboard(lang: str, override: str | None) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for code, name in LANG_NAMES.items():
        mark = "✅ " if override == code else ""
        builder.button(text=f"{mark}{name}", callback_data=SetLanguage(code=code).pack())
    builder.button(
        text=("✅ " if override is None else "") + t(lang, "lang_auto"),
        callback_data=SetLanguage(code="auto").pack(),
    )
    builder.adjust(2, 1)
    return builder.as_markup()


def broadcast_confirm_keyboard(lang: str, message_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t(lang, "broadcast_send_button"),
        callback_data=BroadcastAction(action="send", ref=message_id),
    )
    builder.button(
        text=t(lang, "broadcast_cancel_button"),
        callback_data=BroadcastAction(action="cancel", ref=message_id),
    )
    return builder.as_markup()


def broadcast_stop_keyboard(lang: str, broadcast_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t(lang, "broadcast_stop_button"),
        callback_data=BroadcastAction(action="stop", ref=broadcast_id),
    )
    return builder.as_markup()
