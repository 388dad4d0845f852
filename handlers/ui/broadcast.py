"""The Telegram side of broadcasts: copying the message to one user, and the admin's
progress message.

BroadcastService calls this from its background task, also after a restart, so everything
the progress message needs is in the stored broadcast (chat, message id, language).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import MessageEntity

from handlers.ui.keyboards import broadcast_stop_keyboard
from handlers.ui.texts import t
from services.broadcast import DeliveryOutcome, RetryLater, SourceMissing
from services.storage import Broadcast

log = logging.getLogger(__name__)

# Telegram's words for "this recipient cannot receive messages from the bot (any more)".
_UNREACHABLE = (
    "chat not found",
    "user is deactivated",
    "peer_id_invalid",
    "bot can't initiate conversation",
    "bot was blocked",
    "user not found",
)
# The command itself ("/broadcast", "/broadcast@bot"): everything up to the first whitespace.
_COMMAND = re.compile(r"\S*")
_SOURCE_GONE = ("message to copy not found", "message_id_invalid")
# A network error pauses everybody this long and the recipient is tried again.
_NETWORK_PAUSE = 1.0


def _utf16_len(text: str) -> int:
    # Telegram measures entity offsets and lengths in UTF-16 code units.
    return len(text.encode("utf-16-le")) // 2


def command_payload(
    text: str, entities: Sequence[MessageEntity] | None
) -> tuple[str, list[MessageEntity]] | None:
    """What follows the command in "/broadcast <text>", with the admin's formatting: the
    entities that fall in it, shifted and clipped to it (the command's own are dropped).
    None when nothing but whitespace follows the command."""
    command = _COMMAND.match(text)
    rest = text[command.end() :] if command else text
    payload = rest.strip()
    if not payload:
        return None
    begin = len(text) - len(rest) + (len(rest) - len(rest.lstrip()))
    start = _utf16_len(text[:begin])
    end = start + _utf16_len(payload)
    shifted: list[MessageEntity] = []
    for entity in entities or ():
        first = max(entity.offset, start)
        last = min(entity.offset + entity.length, end)
        if last > first:
            update = {"offset": first - start, "length": last - first}
            shifted.append(entity.model_copy(update=update))
    return payload, shifted


def duration_text(lang: str, seconds: float) -> str:
    if seconds < 59.5:
        return t(lang, "duration_s", seconds=max(1, round(seconds)))
    minutes = round(seconds / 60)
    if minutes < 60:
        return t(lang, "duration_m", minutes=minutes)
    return t(lang, "duration_hm", hours=minutes // 60, minutes=minutes % 60)


def progress_text(broadcast: Broadcast, rate: float) -> str:
    done = broadcast.delivered + broadcast.blocked + broadcast.failed
    # Users who joined after the start are sent to as well, so "done" may pass "total".
    total = max(broadcast.total, done)
    percent = 100 if total == 0 else min(100, done * 100 // total)
    return t(
        broadcast.lang,
        "broadcast_progress",
        id=broadcast.id,
        done=done,
        total=total,
        percent=percent,
        delivered=broadcast.delivered,
        blocked=broadcast.blocked,
        failed=broadcast.failed,
        eta=duration_text(broadcast.lang, (total - done) / rate),
    )


def finished_text(broadcast: Broadcast) -> str:
    lang = broadcast.lang
    icon = {"done": "✅", "stopped": "⏹", "failed": "❗"}.get(broadcast.state, "📣")
    end = broadcast.finished_at or broadcast.updated_at
    return t(
        lang,
        "broadcast_finished",
        icon=icon,
        id=broadcast.id,
        outcome=t(lang, f"broadcast_{broadcast.state}"),
        duration=duration_text(lang, end - broadcast.created_at),
        delivered=broadcast.delivered,
        blocked=broadcast.blocked,
        failed=broadcast.failed,
        reason=t(lang, "broadcast_source_gone") if broadcast.state == "failed" else "",
    )


def _has(error: TelegramAPIError, phrases: tuple[str, ...]) -> bool:
    message = error.message.lower()
    return any(phrase in message for phrase in phrases)


class TelegramBroadcaster:
    """Both halves BroadcastService needs: `BroadcastSender` and `BroadcastNotifier`."""

    def __init__(self, bot: Bot, rate: float) -> None:
        self._bot = bot
        self._rate = rate

    async def copy(self, chat_id: int, from_chat_id: int, message_id: int) -> DeliveryOutcome:
        try:
            await self._bot.copy_message(chat_id, from_chat_id, message_id)
        except TelegramRetryAfter as error:  # flood control already waited and retried
            raise RetryLater(error.retry_after) from None
        except TelegramForbiddenError:
            return DeliveryOutcome.BLOCKED
        except (TelegramBadRequest, TelegramNotFound) as error:
            if _has(error, _SOURCE_GONE):
                raise SourceMissing(error.message) from None
            if _has(error, _UNREACHABLE):
                return DeliveryOutcome.BLOCKED
            log.info("broadcast to %d refused: %s", chat_id, error.message)
            return DeliveryOutcome.FAILED
        except (TelegramNetworkError, TelegramServerError) as error:
            # Telegram or the network is struggling: it affects every recipient alike.
            log.warning("broadcast to %d: %s", chat_id, error)
            raise RetryLater(_NETWORK_PAUSE) from None
        return DeliveryOutcome.DELIVERED

    async def progress(self, broadcast: Broadcast) -> None:
        if broadcast.progress_message_id is None:
            return
        with contextlib.suppress(TelegramAPIError):  # deleted, or "not modified"
            await self._bot.edit_message_text(
                text=progress_text(broadcast, self._rate),
                chat_id=broadcast.admin_id,
                message_id=broadcast.progress_message_id,
                reply_markup=broadcast_stop_keyboard(broadcast.lang, broadcast.id),
            )

    async def finished(self, broadcast: Broadcast) -> None:
        text = finished_text(broadcast)
        if broadcast.progress_message_id is not None:
            try:
                await self._bot.edit_message_text(
                    text=text, chat_id=broadcast.admin_id, message_id=broadcast.progress_message_id
                )
                return
            except TelegramAPIError as error:
                log.info("broadcast %d: progress message not edited: %s", broadcast.id, error)
        # The progress message is gone: the report must still reach the admin.
        await self._bot.send_message(broadcast.admin_id, text)
