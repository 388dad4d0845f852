"""Photos, albums and image files go to the vision model; voice is transcribed and answered."""

from __future__ import annotations

import html
import logging

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message
from aiogram.utils.chat_action import ChatActionSender

from handlers.filters import Magic
from handlers.incoming import (
    GROUP_TYPES,
    AddressedToBot,
    addressed_question,
    private_caption,
    question_from,
    thread_of,
)
from handlers.respond import respond
from handlers.ui.answer import RenderConfig
from handlers.ui.continuation import Continuation
from handlers.ui.errors import error_text
from handlers.ui.files import FileTooBig, download, image_file, prepared_images
from handlers.ui.texts import t
from services.albums import Albums
from services.audio import AudioError, AudioProblem
from services.llm import UpstreamError
from services.questions import QuestionService
from services.storage import UserRecord
from services.users import Profile
from services.voice import VoiceService

log = logging.getLogger(__name__)

TRANSCRIPT_PREVIEW = 400
AUDIO_PROBLEM_KEYS = {
    AudioProblem.EMPTY: "audio_empty",
    AudioProblem.SILENT: "audio_silent",
    AudioProblem.CORRUPT: "audio_corrupt",
    AudioProblem.TOO_LONG: "audio_too_long",
}
# What the spend guard (bot/spend_guard.py) reads: these handlers pay for a chat answer.
SPENDS_CHAT = {"spends": "chat"}


async def image_question(
    message: Message,
    bot: Bot,
    questions: QuestionService,
    profile: Profile,
    render: RenderConfig,
    albums: Albums[Message],
    chat_settings: UserRecord | None = None,
    continuation: Continuation | None = None,
) -> None:
    messages = [message]
    if message.media_group_id:
        collected = await albums.add(message.media_group_id, message)
        if collected is None:
            return  # another part of this album answers for all of it
        messages = collected
    # The part that carries the question (an album's caption is on one part only); its reply,
    # if any, is what the question refers to.
    asking = message
    question: str | None
    if message.chat.type in GROUP_TYPES:
        # Only one part of a group album carries the caption that mentions the bot.
        me = await bot.me()
        addressed = [(m, q) for m in messages if (q := addressed_question(m, me)) is not None]
        if not addressed:
            return
        asking, question = addressed[0]
    else:
        asking = next((m for m in messages if m.caption), message)
        question = asking.caption or ""
        if question.startswith("/"):
            question = private_caption(question, await bot.me())
            if question is None:
                return  # a command for another bot
    caption = (question or "").strip()
    async with ChatActionSender.typing(
        bot=bot, chat_id=message.chat.id, message_thread_id=thread_of(message)
    ):
        files = [file for part in messages if (file := image_file(part)) is not None]
        images = await prepared_images(bot, message, files, profile.lang)
    if not images:
        return
    implied = (
        ""
        if caption
        else t(profile.lang, "describe_image" if len(images) == 1 else "describe_images")
    )
    await respond(
        bot,
        message,
        question_from(asking, bot, profile, caption, images=images, implied=implied),
        questions=questions,
        profile=profile,
        render=render,
        chat_settings=chat_settings,
        continuation=continuation,
    )


def audio_file(message: Message) -> tuple[str, int | None, str | None] | None:
    """(file id, size, format hint) of a voice note, audio file or video note."""
    if message.voice:
        return message.voice.file_id, message.voice.file_size, "ogg"
    if message.video_note:
        return message.video_note.file_id, message.video_note.file_size, "mp4"
    if message.audio:
        return message.audio.file_id, message.audio.file_size, None
    return None


async def voice_question(
    message: Message,
    bot: Bot,
    questions: QuestionService,
    profile: Profile,
    render: RenderConfig,
    voice: VoiceService,
    max_audio_seconds: float,
    chat_settings: UserRecord | None = None,
    continuation: Continuation | None = None,
) -> None:
    found = audio_file(message)
    if found is None:
        return
    if not voice.can_listen:
        # No configured provider turns speech into text (a GigaChat-only bot).
        await message.reply(t(profile.lang, "voice_needs_provider"))
        return
    file_id, size, hint = found
    sender = message.from_user
    language = (sender.language_code or "").split("-")[0] or None if sender else None
    try:
        async with ChatActionSender.typing(
            bot=bot, chat_id=message.chat.id, message_thread_id=thread_of(message)
        ):
            data = await download(bot, file_id, size)
            transcript = await voice.transcribe(
                data, hint=hint, language=language, user_key=profile.user.user_id
            )
    except FileTooBig:
        await message.reply(t(profile.lang, "file_too_big"))
        return
    except AudioError as error:
        minutes = max(1, round(max_audio_seconds / 60))
        await message.reply(t(profile.lang, AUDIO_PROBLEM_KEYS[error.problem], minutes=minutes))
        return
    except UpstreamError as error:
        model = "speech-to-text"
        await message.reply(error_text(error, profile.lang, model=model, is_admin=profile.is_admin))
        return
    preview = transcript
    if len(preview) > TRANSCRIPT_PREVIEW:
        preview = preview[:TRANSCRIPT_PREVIEW].rstrip() + "…"
    try:
        await message.reply(t(profile.lang, "transcript", text=html.escape(preview)))
    except TelegramAPIError as error:
        # Only a preview of what was heard: the answer must still come.
        log.warning("transcript not shown in chat %s: %s", message.chat.id, error)
    await respond(
        bot,
        message,
        question_from(message, bot, profile, transcript, spoken=True),
        questions=questions,
        profile=profile,
        render=render,
        chat_settings=chat_settings,
        continuation=continuation,
    )


IS_IMAGE = Magic(F.photo | F.document.mime_type.startswith("image/"))
IS_AUDIO = Magic(F.voice | F.audio | F.video_note)
NOT_VIDEO_COMMAND = Magic(~F.caption.startswith("/video"))


def create_router() -> Router:
    router = Router(name=__name__)
    private = Magic(F.chat.type == ChatType.PRIVATE)
    group = Magic(F.chat.type.in_(GROUP_TYPES))
    router.message.register(image_question, private, IS_IMAGE, NOT_VIDEO_COMMAND, flags=SPENDS_CHAT)
    router.message.register(
        image_question, group, IS_IMAGE, NOT_VIDEO_COMMAND, AddressedToBot(), flags=SPENDS_CHAT
    )
    # The other parts of group albums are collected too: the mention is in one part's caption
    # only. They spend nothing by themselves (no flag): an album nobody addressed to the bot
    # is chatter, and the spend guard must neither count it nor answer it with a refusal.
    router.message.register(
        image_question, group, IS_IMAGE, NOT_VIDEO_COMMAND, Magic(F.media_group_id)
    )
    router.message.register(voice_question, private, IS_AUDIO, flags=SPENDS_CHAT)
    router.message.register(voice_question, group, IS_AUDIO, AddressedToBot(), flags=SPENDS_CHAT)
    return router
