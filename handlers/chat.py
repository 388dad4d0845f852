"""Text chat: questions in private chats and, when addressed, in groups; Stop."""

from __future__ import annotations

import contextlib
import html
import logging
from collections.abc import Coroutine
from typing import Any

from aiogram import Bot, F, Router
from aiogram.enums import ChatType, MessageEntityType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Filter, StateFilter
from aiogram.types import CallbackQuery, Message, MessageGenerationStopped, User
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.filters import Magic
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
from handlers.ui.callbacks import StopReply
from handlers.ui.continuation import Continuation
from handlers.ui.texts import t
from services.chat import ChatInput, ChatService, DeliveryResult, Reply, ReplyStatus, StopResult
from services.journal import UpdateDeferred
from services.users import Profile
from services.voice import VoiceService, reply_channels

log = logging.getLogger(__name__)

GROUP_TYPES = {ChatType.GROUP, ChatType.SUPERGROUP}


def thread_of(message: Message) -> int | None:
    """Forum topics have their own history; a reply thread in a plain group does not."""
    return message.message_thread_id if message.is_topic_message else None


def addressed_question(message: Message, me: User) -> str | None:
    """In groups: the question when the message mentions the bot or replies to it, the
    mention removed; None when the message is not for the bot."""
    text = message.text or message.caption or ""
    replied = message.reply_to_message
    is_reply = (
        replied is not None
        and replied.from_user is not None
        and replied.from_user.id == me.id
        # A reply inside a forum topic points at the topic's service message.
        and replied.forum_topic_created is None
    )
    mention = f"@{me.username}".lower() if me.username else None
    mentioned = False
    cleaned = text
    for entity in message.entities or message.caption_entities or ():
        if entity.type == MessageEntityType.MENTION and mention:
            value = entity.extract_from(text)
            if value.lower() == mention:
                mentioned = True
                cleaned = cleaned.replace(value, " ", 1)
        elif (
            entity.type == MessageEntityType.TEXT_MENTION
            and entity.user is not None
            and entity.user.id == me.id
        ):
            mentioned = True
    if not (mentioned or is_reply):
        return None
    return " ".join(cleaned.split())


class AddressedToBot(Filter):
    """Passes group messages meant for the bot; the handler receives `question`."""

    async def __call__(self, message: Message, bot: Bot) -> bool | dict[str, str]:
        question = addressed_question(message, await bot.me())
        return False if question is None else {"question": question}


async def respond(
    bot: Bot,
    message: Message,
    request: ChatInput,
    *,
    chat: ChatService,
    profile: Profile,
    render: RenderConfig,
    voice: VoiceService | None = None,
    user_spoke: bool = False,
    continuation: Continuation | None = None,
) -> None:
    """Answer one question: live drafts (private) or edits (groups), then the final
    message and, when the user's reply mode asks for it, a voice note.

    The answer starts here, in the update's order; drawing and delivering it goes on in
    `continuation` when there is one (see handlers/ui/continuation.py).
    """
    reply = chat.start(request, profile.user)
    work = _deliver(bot, message, request, reply, chat, profile, render, voice, user_spoke)
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
    request: ChatInput,
    reply: Reply,
    chat: ChatService,
    profile: Profile,
    render: RenderConfig,
    voice: VoiceService | None,
    user_spoke: bool,
) -> None:
    private = message.chat.type == ChatType.PRIVATE
    target = Target(
        message.chat.id, request.thread_id, reply_to=None if private else message.message_id
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
    want_text, want_voice = reply_channels(profile.user.reply_mode, user_spoke=user_spoke)
    if want_voice and (voice is None or not voice.can_speak):
        want_text, want_voice = True, False  # no provider speaks here: the text it is
    speakable = outcome.status is ReplyStatus.COMPLETE and bool(outcome.text.strip())
    spoken = False
    if want_voice and speakable and voice is not None:
        spoken = await send_voice_answer(bot, target, outcome.text, voice, profile)
        if spoken:
            if placeholder_id is not None:
                await drop_placeholder(bot, target, placeholder_id)
                placeholder_id = None  # gone: the text answer, if wanted, is a new message
            if not want_text:
                return
        else:
            # The text answer follows instead.
            await tell(bot, target, t(profile.lang, "voice_failed"))
    delivery = await send_final(bot, target, kind, text, edit_message_id=placeholder_id)
    if delivery.failed:
        # Said even when the voice note arrived: the text is what the user asked to read.
        key = "answer_undelivered" if not delivery.sent else "answer_partly_delivered"
        await tell(bot, target, t(profile.lang, key))
    # History says what the user received: the whole answer when it was spoken.
    await chat.record_delivery(reply, DeliveryResult.FULL if spoken else delivery.result)


async def private_question(
    message: Message,
    bot: Bot,
    chat: ChatService,
    profile: Profile,
    render: RenderConfig,
    voice: VoiceService,
    continuation: Continuation | None = None,
) -> None:
    request = ChatInput(
        chat_id=message.chat.id,
        thread_id=thread_of(message),
        user_id=profile.user.user_id,
        text=message.text or "",
    )
    await respond(
        bot,
        message,
        request,
        chat=chat,
        profile=profile,
        render=render,
        voice=voice,
        continuation=continuation,
    )


async def group_question(
    message: Message,
    bot: Bot,
    chat: ChatService,
    profile: Profile,
    render: RenderConfig,
    voice: VoiceService,
    question: str,
    continuation: Continuation | None = None,
) -> None:
    if not question:
        return
    sender = message.from_user
    request = ChatInput(
        chat_id=message.chat.id,
        thread_id=thread_of(message),
        user_id=profile.user.user_id,
        text=question,
        speaker=sender.full_name if sender else None,
    )
    await respond(
        bot,
        message,
        request,
        chat=chat,
        profile=profile,
        render=render,
        voice=voice,
        continuation=continuation,
    )


async def draft_stopped(event: MessageGenerationStopped, chat: ChatService) -> None:
    # The draft's Stop button: Telegram only hid the draft; the reply task must end.
    chat.stop(event.chat.id, event.draft_id)


async def stop_pressed(
    query: CallbackQuery,
    callback_data: StopReply,
    callback_answer: CallbackAnswer,
    chat: ChatService,
    profile: Profile,
) -> None:
    chat_id = query.message.chat.id if query.message else query.from_user.id
    result = chat.stop(
        chat_id, callback_data.reply_id, user_id=query.from_user.id, force=profile.is_admin
    )
    # NOT_FOUND: a finished answer loses its button, so this one is stale or forged.
    key = {
        StopResult.STOPPED: "stop_ok",
        StopResult.NOT_FOUND: "button_expired",
        StopResult.NOT_ALLOWED: "stop_not_yours",
    }[result]
    callback_answer.text = t(profile.lang, key)
    callback_answer.show_alert = result is StopResult.NOT_ALLOWED


async def private_unknown_command(message: Message, profile: Profile) -> None:
    await message.answer(t(profile.lang, "unknown_command"))


async def private_unsupported(message: Message, profile: Profile) -> None:
    await message.answer(t(profile.lang, "not_text"))


def create_router() -> Router:
    """Questions and Stop. First in line: nearly every update is one of these, and each
    router an update passes costs it middleware wrapping and filter checks. A chat in the
    middle of a form (no default state) is left to the routers behind."""
    router = Router(name=__name__)
    router.message.register(
        private_question,
        Magic(F.chat.type == ChatType.PRIVATE),
        Magic(F.text),
        Magic(~F.text.startswith("/")),
        StateFilter(None),
    )
    router.message.register(
        group_question,
        Magic(F.chat.type.in_(GROUP_TYPES)),
        Magic(F.text),
        Magic(~F.text.startswith("/")),
        StateFilter(None),
        AddressedToBot(),
    )
    router.stopped_message_generation.register(draft_stopped)
    router.callback_query.register(stop_pressed, StopReply.filter())
    return router


def create_fallback_router() -> Router:
    """Private messages nothing else took: unknown commands and unsupported content."""
    router = Router(name=f"{__name__}.fallback")
    router.message.register(
        private_unknown_command,
        Magic(F.chat.type == ChatType.PRIVATE),
        Magic(F.text.startswith("/")),
    )
    router.message.register(
        private_unsupported, Magic(F.chat.type == ChatType.PRIVATE), Magic(~F.text)
    )
    return router
