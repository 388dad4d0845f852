"""Typed callback data: every inline button's payload has a class and a prefix."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class StopReply(CallbackData, prefix="stop"):
    reply_id: int


class ModelPage(CallbackData, prefix="mp"):
    page: int


class ModelPick(CallbackData, prefix="mk"):
    # A short digest of the model id: ids can exceed the 64-byte callback limit.
    digest: str


class SettingsAction(CallbackData, prefix="st"):
    action: str  # "persona" | "temperature" | "reset" | "back" | "persona_clear"


class SetTemperature(CallbackData, prefix="tmp"):
    # Tenths of a degree as an int; -1 means "model default".
    tenths: int


class SetLanguage(CallbackData, prefix="lang"):
    code: str  # "ru" | "en" | "auto"


class PickMediaModel(CallbackData, prefix="mm"):
    kind: str  # "vision" | "image"
    digest: str  # empty: back to the default


class PickVoice(CallbackData, prefix="vo"):
    voice: str  # empty: default


class PickReplyMode(CallbackData, prefix="rm"):
    mode: str  # "text" | "voice" | "both" | "auto"


class BroadcastAction(CallbackData, prefix="bc"):
    action: str  # "send" | "cancel" (confirmation) | "stop" (progress)
    ref: int  # "send"/"cancel": the message to copy; "stop": the broadcast id
