"""Typed callback data: every inline button's payload has a class and a prefix.

Also what every button press shares: the middleware that answers each callback query
(handlers put their toast in `callback_answer` instead of answering themselves) and
`redraw`, which turns a menu message into its next state, or says the button expired.
"""

from __future__ import annotations

import html
import logging
import re

from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer, CallbackAnswerMiddleware

from handlers.ui.texts import t

log = logging.getLogger(__name__)
_TAG = re.compile(r"<[^>]+>")


class AnswerEveryCallback(CallbackAnswerMiddleware):
    """aiogram's CallbackAnswerMiddleware, answering after the handler (with the text it
    left in `callback_answer`), quietly: a press is routine, not an INFO line.

    A handler that still answers by itself makes this answer fail ("query is too old");
    that is expected and only logged at DEBUG.
    """

    async def answer(  # type: ignore[override]  # the base returns the awaitable method
        self, event: CallbackQuery, callback_answer: CallbackAnswer
    ) -> None:
        try:
            await event.answer(
                text=callback_answer.text,
                show_alert=callback_answer.show_alert,
                url=callback_answer.url,
                cache_time=callback_answer.cache_time,
            )
        except TelegramBadRequest as error:
            log.debug("callback %s answered already: %s", event.id, error.message)
        except TelegramAPIError as error:
            log.info("callback %s not answered: %s", event.id, error)


def _shown(markup: InlineKeyboardMarkup | None) -> object:
    # As plain data: a keyboard parsed from an update and one built here compare equal.
    return markup.model_dump(exclude_none=True) if markup is not None else None


# Telegram's limit for a callback answer's text.
TOAST_LIMIT = 200


def toast(callback_answer: CallbackAnswer, text: str, *, alert: bool = False) -> None:
    """The press's answer: `text` (HTML allowed, shown plain), cut to what Telegram takes."""
    plain = html.unescape(_TAG.sub("", text))
    if len(plain) > TOAST_LIMIT:
        plain = plain[: TOAST_LIMIT - 1] + "…"
    callback_answer.text = plain
    callback_answer.show_alert = alert


def expire(callback_answer: CallbackAnswer, lang: str) -> None:
    """A forged or stale button: its reply, menu or page no longer exists."""
    callback_answer.text = t(lang, "button_expired")


async def redraw(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    lang: str,
    text: str,
    markup: InlineKeyboardMarkup | None,
) -> None:
    """Show `text` and `markup` (HTML) in the message under the pressed button.

    Nothing is sent when the message already shows exactly that (a page button for the
    page on screen); a message that is gone or too old to edit makes the button expired.
    """
    message = query.message
    if not isinstance(message, Message):  # none, or inaccessible (older than 48 h)
        expire(callback_answer, lang)
        return
    if _shown(message.reply_markup) == _shown(markup) and message.text == html.unescape(
        _TAG.sub("", text)
    ):
        return
    try:
        await message.edit_text(text, reply_markup=markup)
    except TelegramBadRequest as error:
        if "not modified" in error.message:
            log.debug("menu unchanged: %s", error.message)
            return
        log.info("menu in chat %s not redrawn: %s", message.chat.id, error.message)
        expire(callback_answer, lang)
    except TelegramAPIError as error:
        log.warning("menu in chat %s not redrawn: %s", message.chat.id, error)


class StopReply(CallbackData, prefix="stop"):
    reply_id: int


# Menus carry `owner`, the id of the user who opened them (0: anyone), last so that every
# other field keeps its place: see handlers/ui/ownership.py.


class ModelProvider(CallbackData, prefix="mv"):
    # The provider's index in the registry; None: the list of providers.
    index: int | None = None
    owner: int = 0


class ModelPage(CallbackData, prefix="mp"):
    provider: int  # the provider's index in the registry
    page: int
    owner: int = 0


class ModelPick(CallbackData, prefix="mk"):
    # The model's place (provider index, index in its sorted chat list) and a short digest
    # of its id: ids can exceed the 64-byte callback limit, and the digest tells when the
    # list changed since the button was drawn.
    provider: int
    index: int
    digest: str
    owner: int = 0


class SettingsAction(CallbackData, prefix="st"):
    # "persona" | "temperature" | "vision" | "image" | "voice" | "reply" | "persona_clear"
    # | "reset" (asks first) | "reset_confirm" | "back"
    action: str
    owner: int = 0


class SetTemperature(CallbackData, prefix="tmp"):
    # Tenths of a degree as an int; -1 means "model default".
    tenths: int
    owner: int = 0


class SetLanguage(CallbackData, prefix="lang"):
    code: str  # "ru" | "en" | "auto"
    owner: int = 0


class PickMediaModel(CallbackData, prefix="mm"):
    kind: str  # "vision" | "image"
    digest: str  # empty: back to the default
    owner: int = 0


class PickVoice(CallbackData, prefix="vo"):
    voice: str  # empty: default
    owner: int = 0


class PickReplyMode(CallbackData, prefix="rm"):
    mode: str  # "text" | "voice" | "both" | "auto"
    owner: int = 0


class BroadcastAction(CallbackData, prefix="bc"):
    action: str  # "send" | "cancel" (confirmation) | "stop" (progress)
    ref: int  # "send"/"cancel": the message to copy; "stop": the broadcast id
