"""Inline keyboards, built as functions of what they show."""

from __future__ import annotations

from collections.abc import Sequence

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from handlers.ui.callbacks import (
    BroadcastAction,
    ModelPage,
    ModelPick,
    ModelProvider,
    PickMediaModel,
    PickReplyMode,
    PickVoice,
    SetLanguage,
    SetTemperature,
    SettingsAction,
    StopReply,
)
from handlers.ui.texts import LANG_NAMES, t
from services.model_choice import ModelRef, ProviderModels, model_digest

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


def _model_button(
    provider: int, index: int, model_id: str, current: str, owner: int
) -> InlineKeyboardButton:
    mark = "✅ " if model_id == current else ""
    return InlineKeyboardButton(
        text=f"{mark}{model_id}",
        callback_data=ModelPick(
            provider=provider, index=index, digest=model_digest(model_id), owner=owner
        ).pack(),
    )


def models_keyboard(
    model_ids: Sequence[str],
    current: str,
    page: int,
    *,
    provider: int = 0,
    back_to_providers: str | None = None,
    owner: int = 0,
) -> tuple[InlineKeyboardMarkup, int, int]:
    """A page of one provider's models with the current one marked; `back_to_providers` is
    the label of a last row leading to the providers (None: only one, no row). `owner`, here
    and in every menu below: who may press its buttons (0: anyone).
    Returns (markup, page, pages)."""
    pages = page_count(len(model_ids))
    page = min(max(page, 0), pages - 1)
    builder = InlineKeyboardBuilder()
    start = page * MODELS_PER_PAGE
    for offset, model_id in enumerate(model_ids[start : start + MODELS_PER_PAGE]):
        builder.row(_model_button(provider, start + offset, model_id, current, owner))
    nav: list[InlineKeyboardButton] = []

    def to_page(label: str, target: int) -> InlineKeyboardButton:
        return InlineKeyboardButton(
            text=label,
            callback_data=ModelPage(provider=provider, page=target, owner=owner).pack(),
        )

    if page > 0:
        nav.append(to_page("«", page - 1))
    if pages > 1:
        nav.append(to_page(f"{page + 1}/{pages}", page))
    if page < pages - 1:
        nav.append(to_page("»", page + 1))
    if nav:
        builder.row(*nav)
    if back_to_providers is not None:
        builder.row(
            InlineKeyboardButton(
                text=back_to_providers,
                callback_data=ModelProvider(index=None, owner=owner).pack(),
            )
        )
    return builder.as_markup(), page, pages


def providers_keyboard(
    lists: Sequence[ProviderModels], current: int | None, *, owner: int = 0
) -> InlineKeyboardMarkup:
    """One button per provider; ✅ on the one whose list holds the current model."""
    builder = InlineKeyboardBuilder()
    for models in lists:
        mark = "✅ " if models.index == current else ""
        builder.row(
            InlineKeyboardButton(
                text=f"{mark}{models.title}",
                callback_data=ModelProvider(index=models.index, owner=owner).pack(),
            )
        )
    return builder.as_markup()


def model_matches_keyboard(
    matches: Sequence[ModelRef], current: str, *, owner: int = 0
) -> InlineKeyboardMarkup:
    """The models `/model <text>` matched, from any provider, one per row."""
    builder = InlineKeyboardBuilder()
    for ref in matches:
        builder.row(_model_button(ref.provider, ref.index, ref.id, current, owner))
    return builder.as_markup()


def _action(lang: str, label: str, action: str, owner: int) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=t(lang, label), callback_data=SettingsAction(action=action, owner=owner).pack()
    )


def settings_keyboard(
    lang: str, *, speech: bool = True, group: bool = False, owner: int = 0
) -> InlineKeyboardMarkup:
    """The settings menu; without a speech provider (`speech=False`) no voice options.

    A group's menu (`group=True`) holds only what a group has of its own (persona,
    temperature, vision model): the image model, voice and reply mode stay each person's,
    set in their private chat with the bot.
    """
    builder = InlineKeyboardBuilder()
    builder.row(
        _action(lang, "btn_persona", "persona", owner),
        _action(lang, "btn_temperature", "temperature", owner),
    )
    if group:
        builder.row(_action(lang, "btn_vision_model", "vision", owner))
    else:
        builder.row(
            _action(lang, "btn_vision_model", "vision", owner),
            _action(lang, "btn_image_model", "image", owner),
        )
    if speech and not group:
        builder.row(
            _action(lang, "btn_voice", "voice", owner),
            _action(lang, "btn_reply_mode", "reply", owner),
        )
    builder.row(_action(lang, "btn_reset", "reset", owner))
    return builder.as_markup()


def reset_confirm_keyboard(lang: str, *, owner: int = 0) -> InlineKeyboardMarkup:
    """ "Reset to defaults" asks first: a press by mistake must not wipe a persona."""
    builder = InlineKeyboardBuilder()
    builder.row(
        _action(lang, "menu-reset-yes", "reset_confirm", owner),
        _action(lang, "btn_cancel", "back", owner),
    )
    return builder.as_markup()


def _back_button(lang: str, owner: int) -> InlineKeyboardButton:
    return _action(lang, "btn_back", "back", owner)


def media_models_keyboard(
    lang: str, kind: str, model_ids: Sequence[str], current: str | None, *, owner: int = 0
) -> InlineKeyboardMarkup:
    """At most 30 models: the list of one kind is short; more would not fit a screen."""
    builder = InlineKeyboardBuilder()
    for model_id in model_ids[:30]:
        mark = "✅ " if model_id == current else ""
        builder.row(
            InlineKeyboardButton(
                text=f"{mark}{model_id}",
                callback_data=PickMediaModel(
                    kind=kind, digest=model_digest(model_id), owner=owner
                ).pack(),
            )
        )
    builder.row(
        InlineKeyboardButton(
            text=("✅ " if current is None else "") + t(lang, "btn_default"),
            callback_data=PickMediaModel(kind=kind, digest="", owner=owner).pack(),
        ),
        _back_button(lang, owner),
    )
    return builder.as_markup()


def voices_keyboard(
    lang: str, voices: Sequence[str], current: str | None, *, owner: int = 0
) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for voice in voices:
        mark = "✅ " if voice == current else ""
        builder.button(
            text=f"{mark}{voice}", callback_data=PickVoice(voice=voice, owner=owner).pack()
        )
    builder.adjust(3)
    builder.row(
        InlineKeyboardButton(
            text=("✅ " if current is None else "") + t(lang, "btn_default"),
            callback_data=PickVoice(voice="", owner=owner).pack(),
        ),
        _back_button(lang, owner),
    )
    return builder.as_markup()


def reply_mode_keyboard(lang: str, current: str | None, *, owner: int = 0) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for mode in ("text", "voice", "both", "auto"):
        selected = (current or "auto") == mode
        builder.button(
            text=("✅ " if selected else "") + t(lang, f"reply_mode_{mode}"),
            callback_data=PickReplyMode(mode=mode, owner=owner).pack(),
        )
    builder.adjust(2)
    builder.row(_back_button(lang, owner))
    return builder.as_markup()


def persona_keyboard(lang: str, *, owner: int = 0) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.row(
        _action(lang, "btn_default", "persona_clear", owner),
        _back_button(lang, owner),
    )
    return builder.as_markup()


def temperature_keyboard(
    lang: str, current: float | None, *, owner: int = 0
) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    row = []
    for value in TEMPERATURES:
        mark = "✅ " if current is not None and abs(current - value) < 1e-9 else ""
        row.append(
            InlineKeyboardButton(
                text=f"{mark}{value:g}",
                callback_data=SetTemperature(tenths=round(value * 10), owner=owner).pack(),
            )
        )
    builder.row(*row)
    builder.row(
        InlineKeyboardButton(
            text=("✅ " if current is None else "") + t(lang, "btn_default"),
            callback_data=SetTemperature(tenths=-1, owner=owner).pack(),
        ),
        _back_button(lang, owner),
    )
    return builder.as_markup()


def language_keyboard(lang: str, override: str | None, *, owner: int = 0) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for code, name in LANG_NAMES.items():
        mark = "✅ " if override == code else ""
        builder.button(
            text=f"{mark}{name}", callback_data=SetLanguage(code=code, owner=owner).pack()
        )
    builder.button(
        text=("✅ " if override is None else "") + t(lang, "lang_auto"),
        callback_data=SetLanguage(code="auto", owner=owner).pack(),
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
