"""Answering a question in Telegram: start it through the question service, then draw it
(drafts or group edits, the final message, a voice note) and report what was delivered."""

from __future__ import annotations

import contextlib
import html
import logging
from collections.abc import Coroutine
from typing import Any

from aiogram import Bot
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message

from handlers.ui.answer import (
    RenderConfig,
    Target,
    compose_final,
    drop_placeholder,
    send_final,
    send_voice_answer,
    stream_group,
    tell,
)
from handlers.ui.answer import stream_private as stream_draft
from handlers.ui.continuation import Continuation
from handlers.ui.texts import t
from services.chat import ReplyStatus
from services.journal import UpdateDeferred
from services.questions import Answer, Question, QuestionService
from services.storage import UserRecord
from services.users import Profile

log = logging.getLogger(__name__)


async def respond(
    bot: Bot,
    message: Message,
    question: Question,
    *,
    questions: QuestionService,
    profile: Profile,
    render: RenderConfig,
    chat_settings: UserRecord | None = None,
    continuation: Continuation | None = None,
) -> None:
    """Answer one question: live drafts (private) or edits (groups), then the final
    message and, when the asker's reply mode asks for it, a voice note.

    The answer starts here, in the update's order; drawing and delivering it goes on in
    `continuation` when there is one (see handlers/ui/continuation.py). The chat's settings
    (`chat_settings`: a group's own) choose the model and persona; without them, the asker's.
    """
    answer = questions.ask(question, chat_settings or profile.user, profile.user.reply_mode)
    work = _deliver(bot, message, answer, questions, profile, render)
    if continuation is None:
        await work
    else:
        continuation.start(_guarded(work, message, profile))


async def _guarded(work: Coroutine[Any, Any, None], message: Message, profile: Profile) -> None:
    """Handed-over work fails as a handler would: logged, and the user told briefly (aiogram's
    errors handler no longer sees it). A deferral goes on to the update journal."""
    try:
        await work
    except UpdateDeferred:
        raise
    except Exception:
        log.exception("answer in chat %s failed", message.chat.id)
        with contextlib.suppress(TelegramAPIError):
            await message.answer(t(profile.lang, "err_unexpected"))


async def _deliver(
    bot: Bot,
    message: Message,
    answer: Answer,
    questions: QuestionService,
    profile: Profile,
    render: RenderConfig,
) -> None:
    reply = answer.reply
    private = message.chat.type == ChatType.PRIVATE
    target = Target(
        message.chat.id, reply.request.thread_id, reply_to=None if private else message.message_id
    )
    if reply.replaced_model is not None:
        model = html.escape(reply.replaced_model)
        await tell(bot, target, t(profile.lang, "model_replaced", model=model))
    placeholder_id: int | None = None
    if private:
        outcome = await stream_draft(bot, reply, target, profile.lang, render)
    else:
        outcome, placeholder_id = await stream_group(bot, reply, target, profile.lang, render)
    if outcome.status is ReplyStatus.DEFERRED:
        # Put off by a shutdown before it began: nothing is shown now; the journal keeps the
        # question and it is answered after the restart.
        if placeholder_id is not None:
            await drop_placeholder(bot, target, placeholder_id)
        raise UpdateDeferred
    if outcome.temperature_dropped:
        await tell(bot, target, t(profile.lang, "temperature_dropped"))
    kind, text = compose_final(outcome, profile.lang, is_admin=profile.is_admin)
    speakable = outcome.status is ReplyStatus.COMPLETE and bool(outcome.text.strip())
    spoken = False
    if answer.voice and speakable:
        spoken = await send_voice_answer(bot, target, outcome.text, questions.voice, profile)
        if spoken:
            if placeholder_id is not None:
                await drop_placeholder(bot, target, placeholder_id)
                placeholder_id = None  # gone: the text answer, if wanted, is a new message
            if not answer.text:
                return  # the voice note was the whole answer: nothing to mark in history
        else:
            # The text answer follows instead.
            await tell(bot, target, t(profile.lang, "voice_failed"))
    delivery = await send_final(bot, target, kind, text, edit_message_id=placeholder_id)
    if delivery.failed:
        # Said even when the voice note arrived: the text is what the user asked to read.
        key = "answer_undelivered" if not delivery.sent else "answer_partly_delivered"
        await tell(bot, target, t(profile.lang, key))
    await questions.delivered(answer, delivery.result, spoken=spoken)
