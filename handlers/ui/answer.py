"""Drawing a `Reply` in Telegram: live drafts or edits, then the final messages.

Private chats stream with native drafts (`sendRichMessageDraft`, falling back to
`sendMessageDraft`) and Telegram's own Stop button. Groups have no drafts: one
message is edited at most once per `edit_interval` with an inline Stop button.
The final answer is a rich Markdown message, split at block boundaries; when
Telegram rejects rich messages it becomes HTML, and plain text is the last
resort, so no part of an answer is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import time
from dataclasses import dataclass, field

from aiogram import Bot
from aiogram.enums import ChatAction, ParseMode
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardMarkup,
    InputRichMessage,
    Message,
    ReplyParameters,
)
from aiogram.utils.chat_action import ChatActionSender

from handlers.ui.errors import error_text
from handlers.ui.keyboards import stop_keyboard
from handlers.ui.texts import t
from services.audio import AudioError
from services.chat import DeliveryResult, Reply, ReplyOutcome, ReplyStatus
from services.formatting import (
    markdown_to_html_parts,
    preview_tail,
    split_markdown,
    split_plain,
)
from services.llm import UpstreamError
from services.pacing import DraftBudget
from services.users import Profile
from services.voice import VoiceService

log = logging.getLogger(__name__)

RICH_LIMIT = 32_768
CLASSIC_LIMIT = 4_096
# Chat actions expire after about five seconds; repeat a little sooner.
ACTION_REPEAT = 4.5
_NO_KEYBOARD = InlineKeyboardMarkup(inline_keyboard=[])
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True, slots=True)
class RenderConfig:
    draft_interval: float = 0.25
    edit_interval: float = 1.0
    # Short enough to go unnoticed, long enough that a fast upstream needs no chat action.
    typing_delay: float = 0.3
    # The bot-wide budget of drafts (and live queue-position edits); None: unpaced.
    drafts: DraftBudget | None = None


@dataclass(frozen=True, slots=True)
class Target:
    chat_id: int
    thread_id: int | None = None
    reply_to: int | None = None  # the user's message, answered in groups


def _is_not_modified(error: TelegramBadRequest) -> bool:
    return "not modified" in error.message


async def _typing_until(bot: Bot, target: Target, reply: Reply, delay: float) -> None:
    """Show "typing…" until there is something else to see.

    The clock starts when the reply starts work: a question queued behind an earlier answer
    in the same chat has that answer's draft (or its "typing…") on screen already. Nothing
    is sent during the first `delay` seconds of work: an answer that starts that quickly
    puts its draft on screen first, and the chat action would be a wasted call.

    It only waits: the caller cancels it as soon as there is something to draw (or the
    reply ends), so it never wakes to find the answer already on screen. Plain sleeps, not
    timeouts around an event: a backlog of questions keeps one of these per question
    waiting, and a timeout costs an object, a cancelled wait and an exception per wake-up.
    """
    working_since = await reply.wait_working()  # queued behind this chat's earlier answer
    await asyncio.sleep(working_since + delay - time.monotonic())
    while not (reply.done or reply.text or reply.queue_position is not None):
        # (Checked again: what woke the caller may not have reached it yet.)
        with contextlib.suppress(TelegramAPIError):
            await bot.send_chat_action(
                target.chat_id, ChatAction.TYPING, message_thread_id=target.thread_id
            )
        await asyncio.sleep(ACTION_REPEAT)


def _live_text(reply: Reply, lang: str, limit: int) -> str | None:
    if reply.text:
        return preview_tail(reply.text, limit)
    if reply.queue_position is not None:
        return t(lang, "queue_position", position=reply.queue_position)
    return None


async def stream_private(
    bot: Bot, reply: Reply, target: Target, lang: str, config: RenderConfig
) -> ReplyOutcome:
    """Animate a draft while the reply grows; Telegram shows its own Stop button."""
    typing = asyncio.create_task(_typing_until(bot, target, reply, config.typing_delay))
    rich = True
    last: str | None = None
    try:
        async for _ in reply.watch(config.draft_interval):
            content = _live_text(reply, lang, RICH_LIMIT if rich else CLASSIC_LIMIT)
            if content:
                typing.cancel()  # something else to see now (a no-op once it has ended)
            if not content or content == last or reply.stop_requested:
                continue
            # Over the shared budget the draft is skipped; the next change replaces it.
            if config.drafts is not None and not config.drafts.allow(progress=not reply.text):
                continue
            try:
                if rich:
                    await bot.send_rich_message_draft(
                        chat_id=target.chat_id,
                        draft_id=reply.id,
                        rich_message=InputRichMessage(markdown=content),
                        message_thread_id=target.thread_id,
                        can_stop=True,
                    )
                else:
                    await bot.send_message_draft(
                        chat_id=target.chat_id,
                        draft_id=reply.id,
                        text=content,
                        parse_mode=None,
                        message_thread_id=target.thread_id,
                        can_stop=True,
                    )
                last = content
            except TelegramBadRequest as error:
                # Partial Markdown or a client without rich drafts: plain drafts still
                # show progress; the final message is formatted anyway.
                if rich:
                    log.debug("rich draft rejected, using plain drafts: %s", error.message)
                    rich = False
                    last = None
            except TelegramAPIError as error:
                log.debug("draft not shown: %s", error)
    finally:
        typing.cancel()
    outcome = await reply.wait()
    return outcome


async def stream_group(
    bot: Bot, reply: Reply, target: Target, lang: str, config: RenderConfig
) -> tuple[ReplyOutcome, int | None]:
    """Edit one message with the growing answer; its inline button stops the reply."""
    keyboard = stop_keyboard(lang, reply.id)
    placeholder: Message | None = None
    with contextlib.suppress(TelegramAPIError):
        placeholder = await bot.send_message(
            target.chat_id,
            t(lang, "thinking"),
            message_thread_id=target.thread_id,
            reply_parameters=_reply_params(target),
            reply_markup=keyboard,
            parse_mode=None,
        )
    last: str | None = None
    if placeholder is not None:
        async for _ in reply.watch(config.edit_interval):
            content = _live_text(reply, lang, CLASSIC_LIMIT)
            if not content or content == last or reply.stop_requested:
                continue
            # A queue position is progress, paced bot-wide like the drafts that show it.
            if (
                not reply.text
                and config.drafts is not None
                and not config.drafts.allow(progress=True)
            ):
                continue
            try:
                await bot.edit_message_text(
                    text=content,
                    chat_id=target.chat_id,
                    message_id=placeholder.message_id,
                    parse_mode=None,
                    reply_markup=keyboard,
                )
                last = content
            except TelegramBadRequest as error:
                if _is_not_modified(error):
                    last = content
                else:
                    log.debug("live edit rejected: %s", error.message)
            except TelegramAPIError as error:
                log.debug("live edit failed: %s", error)
    outcome = await reply.wait()
    return outcome, placeholder.message_id if placeholder else None


def _reply_params(target: Target) -> ReplyParameters | None:
    if target.reply_to is None:
        return None
    return ReplyParameters(message_id=target.reply_to, allow_sending_without_reply=True)


def compose_final(outcome: ReplyOutcome, lang: str, *, is_admin: bool) -> tuple[str, str]:
    """What to show when a reply ends: (kind, text) with kind "markdown" or "html"."""
    text = outcome.text.strip()
    if outcome.status is ReplyStatus.COMPLETE:
        if text and outcome.truncated:
            return "markdown", f"{text}\n\n*{t(lang, 'truncated_mark')}*"
        return ("markdown", text) if text else ("html", t(lang, "empty_answer"))
    if outcome.status is ReplyStatus.REFUSED:
        return "html", t(lang, "refused")
    if outcome.status is ReplyStatus.STOPPED:
        mark = t(lang, "stopped_mark")
        return ("markdown", f"{text}\n\n*{mark}*") if text else ("html", mark)
    if outcome.status is ReplyStatus.INTERRUPTED and text:
        return "markdown", f"{text}\n\n*{t(lang, 'interrupted_mark')}*"
    return "html", error_text(outcome.error, lang, model=outcome.model, is_admin=is_admin)


@dataclass(slots=True)
class FinalDelivery:
    """How the final messages of one answer fared."""

    sent: int = 0  # messages that reached the chat (the placeholder edit included)
    failed: int = 0  # messages of the answer Telegram did not take, after the session's retries
    # The placeholder could not be edited into the answer: it still shows a partial text
    # and, in groups, the Stop button.
    placeholder_stale: bool = False

    @property
    def result(self) -> DeliveryResult:
        if not self.failed:
            return DeliveryResult.FULL
        return DeliveryResult.PARTIAL if self.sent else DeliveryResult.NONE


@dataclass(slots=True)
class _Sending:
    """State shared by the messages of one final answer while they go out."""

    target: Target
    edit_id: int | None  # the placeholder, while the first message is still to go into it
    rich: bool = True  # Telegram took (or has not yet refused) rich messages
    delivery: FinalDelivery = field(default_factory=FinalDelivery)


async def send_final(
    bot: Bot,
    target: Target,
    kind: str,
    text: str,
    *,
    edit_message_id: int | None = None,
) -> FinalDelivery:
    """Send (or, for the first part, edit into place) the final answer.

    Never raises for Telegram's sake: a message that still fails after the session's own
    retries is counted and the later parts are still sent. A placeholder that cannot be
    edited gets the answer as a new message instead and is then removed (or at least loses
    its Stop button).
    """
    sending = _Sending(target, edit_message_id)
    if kind == "html":
        await _send_html_part(bot, sending, text)
    else:
        for part in split_markdown(text, RICH_LIMIT):
            await _send_markdown_part(bot, sending, part)
    delivery = sending.delivery
    if delivery.placeholder_stale and edit_message_id is not None:
        await _clear_placeholder(bot, target, edit_message_id, answered=delivery.sent > 0)
    return delivery


async def _send_markdown_part(bot: Bot, sending: _Sending, part: str) -> None:
    if sending.rich:
        try:
            await _put(bot, sending, rich=InputRichMessage(markdown=part))
            return
        except TelegramBadRequest as error:
            # A client or server without rich messages: this part and the later ones go
            # as HTML.
            log.info("rich message rejected (%s); sending HTML", error.message)
            sending.rich = False
    for html_part in markdown_to_html_parts(part, CLASSIC_LIMIT):
        await _send_html_part(bot, sending, html_part)


async def _send_html_part(bot: Bot, sending: _Sending, part: str) -> None:
    try:
        await _put(bot, sending, text=part, parse_mode=ParseMode.HTML)
        return
    except TelegramBadRequest as error:
        log.warning("HTML part rejected (%s); sending plain text", error.message)
    plain = html.unescape(_TAG.sub("", part))
    for piece in split_plain(plain, CLASSIC_LIMIT):
        await _put(bot, sending, text=piece, parse_mode=None)


def _edit_target_gone(error: TelegramBadRequest) -> bool:
    """The placeholder itself cannot take the edit (deleted, too old), whatever its content."""
    message = error.message.lower()
    return (
        "message to edit not found" in message
        or "can't be edited" in message
        or "message_id_invalid" in message
    )


async def _put(
    bot: Bot,
    sending: _Sending,
    *,
    rich: InputRichMessage | None = None,
    text: str = "",
    parse_mode: str | None = None,
) -> None:
    """One message of the answer: into the placeholder when it is still to be used, else new.

    Raises TelegramBadRequest only for a formatted message Telegram refused (the caller
    falls back to a plainer format); every other failure is logged and counted.
    """
    target = sending.target
    delivery = sending.delivery
    formatted = rich is not None or parse_mode is not None
    edit = sending.edit_id
    if edit is not None:
        sending.edit_id = None  # only the first message goes into the placeholder
        try:
            if rich is not None:
                await bot.edit_message_text(
                    chat_id=target.chat_id,
                    message_id=edit,
                    rich_message=rich,
                    reply_markup=_NO_KEYBOARD,
                )
            else:
                await _send_classic(bot, target, text, parse_mode, edit)
            delivery.sent += 1
            return
        except TelegramBadRequest as error:
            if _is_not_modified(error):
                delivery.sent += 1
                return
            if formatted and not _edit_target_gone(error):
                sending.edit_id = edit  # the plainer format edits the placeholder again
                raise
            log.warning("final edit in chat %s refused (%s); sending anew", target.chat_id, error)
        except TelegramAPIError as error:
            log.warning("final edit in chat %s failed (%s); sending anew", target.chat_id, error)
        delivery.placeholder_stale = True
    try:
        if rich is not None:
            await bot.send_rich_message(
                chat_id=target.chat_id,
                rich_message=rich,
                message_thread_id=target.thread_id,
                reply_parameters=_reply_params(target),
            )
        else:
            await _send_classic(bot, target, text, parse_mode, None)
    except TelegramBadRequest as error:
        if formatted:
            raise
        log.warning("answer part not delivered to chat %s: %s", target.chat_id, error)
        delivery.failed += 1
        return
    except TelegramAPIError as error:
        log.warning("answer part not delivered to chat %s: %s", target.chat_id, error)
        delivery.failed += 1
        return
    delivery.sent += 1


async def _clear_placeholder(bot: Bot, target: Target, message_id: int, *, answered: bool) -> None:
    """A placeholder the answer could not be edited into must not keep its Stop button.

    When the answer went out as a new message the placeholder (a stale partial text) is
    deleted; otherwise it stays, without the button, beside the notice that follows.
    """
    if answered:
        try:
            await bot.delete_message(target.chat_id, message_id)
            return
        except TelegramAPIError as error:
            log.info("stale placeholder in chat %s not deleted: %s", target.chat_id, error)
    try:
        await bot.edit_message_reply_markup(
            chat_id=target.chat_id, message_id=message_id, reply_markup=_NO_KEYBOARD
        )
    except TelegramAPIError as error:
        log.warning("Stop button in chat %s not removed: %s", target.chat_id, error)


async def tell(bot: Bot, target: Target, text: str) -> bool:
    """A short notice (HTML) to the chat; False, logged, when even that cannot be sent."""
    try:
        await bot.send_message(
            target.chat_id,
            text,
            message_thread_id=target.thread_id,
            reply_parameters=_reply_params(target),
        )
    except TelegramAPIError as error:
        log.warning("notice not delivered to chat %s: %s", target.chat_id, error)
        return False
    return True


async def _send_classic(
    bot: Bot, target: Target, text: str, parse_mode: str | None, edit: int | None
) -> Message | bool:
    if edit is not None:
        return await bot.edit_message_text(
            text=text,
            chat_id=target.chat_id,
            message_id=edit,
            parse_mode=parse_mode,
            reply_markup=_NO_KEYBOARD,
        )
    return await bot.send_message(
        target.chat_id,
        text,
        parse_mode=parse_mode,
        message_thread_id=target.thread_id,
        reply_parameters=_reply_params(target),
    )


async def send_voice_answer(
    bot: Bot, target: Target, text: str, voice: VoiceService, profile: Profile
) -> bool:
    """Speak the answer as one voice note; False when it could not be made or sent."""
    try:
        async with ChatActionSender.record_voice(
            bot=bot, chat_id=target.chat_id, message_thread_id=target.thread_id
        ):
            ogg, seconds = await voice.synthesize(
                text, voice=profile.user.tts_voice, user_key=profile.user.user_id
            )
        await bot.send_voice(
            target.chat_id,
            BufferedInputFile(ogg, filename="answer.ogg"),
            duration=max(1, round(seconds)),
            message_thread_id=target.thread_id,
            reply_parameters=_reply_params(target),
        )
    except (AudioError, UpstreamError, TelegramAPIError) as error:
        log.warning("voice answer failed: %s", error)
        return False
    return True


async def drop_placeholder(bot: Bot, target: Target, message_id: int) -> None:
    with contextlib.suppress(TelegramAPIError):
        await bot.delete_message(target.chat_id, message_id)
