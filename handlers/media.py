"""Photos, albums and image files go to the vision model; voice is transcribed and answered."""

from __future__ import annotations

import html
import logging

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message, PhotoSize
from aiogram.utils.chat_action import ChatActionSender

from handlers.chat import GROUP_TYPES, AddressedToBot, addressed_question, respond, thread_of
from handlers.filters import Magic
from handlers.ui.answer import RenderConfig
from handlers.ui.continuation import Continuation
from handlers.ui.errors import error_text
from handlers.ui.files import FileTooBig, download
from handlers.ui.texts import t
from services.albums import AlbumCollector
from services.audio import AudioError, AudioProblem
from services.chat import ChatInput, ChatService
from services.image_memory import image_placeholder
from services.images import ImageError, ImageProblem, prepare_image_async
from services.llm import UpstreamError
from services.users import Profile
from services.voice import VoiceService

log = logging.getLogger(__name__)

TRANSCRIPT_PREVIEW = 400
# Vision providers downscale anything larger; fetching more only costs time.
VISION_SIDE = 2048
IMAGE_PROBLEM_KEYS = {
    ImageProblem.TOO_BIG: "image_too_big",
    ImageProblem.UNSUPPORTED: "image_unsupported",
    ImageProblem.CORRUPT: "image_corrupt",
}
AUDIO_PROBLEM_KEYS = {
    AudioProblem.EMPTY: "audio_empty",
    AudioProblem.SILENT: "audio_silent",
    AudioProblem.CORRUPT: "audio_corrupt",
    AudioProblem.TOO_LONG: "audio_too_long",
}


def best_photo(sizes: list[PhotoSize]) -> PhotoSize:
    """The largest size within what vision models use, else the smallest available."""
    fitting = [s for s in sizes if max(s.width, s.height) <= VISION_SIDE]
    return max(fitting, key=lambda s: s.width * s.height) if fitting else sizes[0]


def image_file(message: Message) -> tuple[str, int | None] | None:
    if message.photo:
        photo = best_photo(message.photo)
        return photo.file_id, photo.file_size
    document = message.document
    if document and (document.mime_type or "").startswith("image/"):
        return document.file_id, document.file_size
    return None


async def image_question(
    message: Message,
    bot: Bot,
    chat: ChatService,
    profile: Profile,
    render: RenderConfig,
    albums: AlbumCollector[Message],
    voice: VoiceService,
    question: str | None = None,
    continuation: Continuation | None = None,
) -> None:
    messages = [message]
    if message.media_group_id:
        collected = await albums.add(message.media_group_id, message)
        if collected is None:
            return  # another part of this album answers for all of it
        messages = collected
    if message.chat.type in GROUP_TYPES:
        # Only one part of a group album carries the caption that mentions the bot.
        me = await bot.me()
        questions = [q for m in messages if (q := addressed_question(m, me)) is not None]
        if not questions:
            return
        question = questions[0]
    caption = question if question is not None else ""
    if question is None:
        caption = next((m.caption for m in messages if m.caption), "") or ""
    images: list[bytes] = []
    async with ChatActionSender.typing(bot=bot, chat_id=message.chat.id):
        for part in messages:
            found = image_file(part)
            if found is None:
                continue
            try:
                data = await download(bot, *found)
                images.append(await prepare_image_async(data))
            except FileTooBig:
                await message.reply(t(profile.lang, "file_too_big"))
                return
            except ImageError as error:
                await message.reply(t(profile.lang, IMAGE_PROBLEM_KEYS[error.problem]))
                return
    if not images:
        return
    prompt = caption.strip() or t(
        profile.lang, "describe_image" if len(images) == 1 else "describe_images"
    )
    sender = message.from_user
    request = ChatInput(
        chat_id=message.chat.id,
        thread_id=thread_of(message),
        user_id=profile.user.user_id,
        text=prompt,
        speaker=sender.full_name if sender and message.chat.type in GROUP_TYPES else None,
        images=tuple(images),
        stored_text=image_placeholder(len(images), caption.strip()),
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
    chat: ChatService,
    profile: Profile,
    render: RenderConfig,
    voice: VoiceService,
    max_audio_seconds: float,
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
        async with ChatActionSender.typing(bot=bot, chat_id=message.chat.id):
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
    request = ChatInput(
        chat_id=message.chat.id,
        thread_id=thread_of(message),
        user_id=profile.user.user_id,
        text=transcript,
        speaker=sender.full_name if sender and message.chat.type in GROUP_TYPES else None,
    )
    await respond(
        bot,
        message,
        request,
        chat=chat,
        profile=profile,
        render=render,
        voice=voice,
        user_spoke=True,
        continuation=continuation,
    )


IS_IMAGE = Magic(F.photo | F.document.mime_type.startswith("image/"))
IS_AUDIO = Magic(F.voice | F.audio | F.video_note)
NOT_VIDEO_COMMAND = Magic(~F.caption.startswith("/video"))


def create_router() -> Router:
    router = Router(name=__name__)
    private = Magic(F.chat.type == ChatType.PRIVATE)
    group = Magic(F.chat.type.in_(GROUP_TYPES))
    router.message.register(image_question, private, IS_IMAGE, NOT_VIDEO_COMMAND)
    # Group albums are collected first: the mention is in one part's caption only.
    router.message.register(
        image_question, group, IS_IMAGE, NOT_VIDEO_COMMAND, Magic(F.media_group_id)
    )
    router.message.register(image_question, group, IS_IMAGE, NOT_VIDEO_COMMAND, AddressedToBot())
    router.message.register(voice_question, private, IS_AUDIO)
    router.message.register(voice_question, group, IS_AUDIO, AddressedToBot())
    return router
