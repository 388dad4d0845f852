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
from dataclasses import dataclass

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
from services.chat import Reply, ReplyOutcome, ReplyStatus
from services.formatting import (
    markdown_to_html_parts,
    preview_tail,
    split_markdown,
    split_plain,
)
from services.llm import UpstreamError
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
    """
    wait = delay
    while True:
        if wait > 0:
            try:
                async with asyncio.timeout(wait):
                    await reply.wait()
            except TimeoutError:
                pass
        if reply.done or reply.text or reply.queue_position is not None:
            return
        if reply.working_since is None:
            wait = delay  # still queued behind this chat's earlier answer
            continue
        worked = time.monotonic() - reply.working_since
        if worked < delay:
            wait = delay - worked
            continue
        with contextlib.suppress(TelegramAPIError):
            await bot.send_chat_action(
                target.chat_id, ChatAction.TYPING, message_thread_id=target.thread_id
            )
        wait = ACTION_REPEAT


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
            if not content or content == last or reply.stop_requested:
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
        return ("markdown", text) if text else ("html", t(lang, "empty_answer"))
    if outcome.status is ReplyStatus.STOPPED:
        mark = t(lang, "stopped_mark")
        return ("markdown", f"{text}\n\n*{mark}*") if text else ("html", mark)
    if outcome.status is ReplyStatus.INTERRUPTED and text:
        return "markdown", f"{text}\n\n*{t(lang, 'interrupted_mark')}*"
    return "html", error_text(outcome.error, lang, model=outcome.model, is_admin=is_admin)


async def send_final(
    bot: Bot,
    target: Target,
    kind: str,
    text: str,
    *,
    edit_message_id: int | None = None,
) -> list[Message | bool]:
    """Send (or, for the first part, edit into place) the final answer."""
    if kind == "html":
        return await _send_html_parts(bot, target, [text], edit_message_id)
    sent: list[Message | bool] = []
    parts = split_markdown(text, RICH_LIMIT)
    for index, part in enumerate(parts):
        edit = edit_message_id if index == 0 else None
        try:
            sent.append(await _send_rich(bot, target, part, edit))
        except TelegramBadRequest as error:
            log.info("rich message rejected (%s); sending HTML", error.message)
            rest = "\n\n".join(parts[index:])
            html_parts = markdown_to_html_parts(rest, CLASSIC_LIMIT)
            sent.extend(await _send_html_parts(bot, target, html_parts, edit))
            break
    return sent


async def _send_rich(bot: Bot, target: Target, markdown: str, edit: int | None) -> Message | bool:
    rich = InputRichMessage(markdown=markdown)
    if edit is not None:
        return await bot.edit_message_text(
            chat_id=target.chat_id, message_id=edit, rich_message=rich, reply_markup=_NO_KEYBOARD
        )
    return await bot.send_rich_message(
        chat_id=target.chat_id,
        rich_message=rich,
        message_thread_id=target.thread_id,
        reply_parameters=_reply_params(target),
    )


async def _send_html_parts(
    bot: Bot, target: Target, parts: list[str], edit: int | None
) -> list[Message | bool]:
    sent: list[Message | bool] = []
    for index, part in enumerate(parts):
        edit_id = edit if index == 0 else None
        try:
            sent.append(await _send_classic(bot, target, part, ParseMode.HTML, edit_id))
        except TelegramBadRequest as error:
            if _is_not_modified(error):
                continue
            log.warning("HTML part rejected (%s); sending plain text", error.message)
            plain = html.unescape(_TAG.sub("", part))
            for piece_index, piece in enumerate(split_plain(plain, CLASSIC_LIMIT)):
                sent.append(
                    await _send_classic(
                        bot, target, piece, None, edit_id if piece_index == 0 else None
                    )
                )
    return sent


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
