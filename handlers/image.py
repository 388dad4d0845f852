"""/image <prompt>, with an optional aspect ratio: `/image 16:9 <prompt>`."""

from __future__ import annotations

import contextlib
import html
import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, Message
from aiogram.utils.chat_action import ChatActionSender

from handlers.incoming import thread_of
from handlers.ui.errors import error_text
from handlers.ui.texts import t
from handlers.ui.video_notifier import elapsed_text, show_notice
from services.image_generation import (
    ImageGenerator,
    ImageRequest,
    UnsupportedAspect,
    parse_image_request,
)
from services.llm import ModelUnavailable, ModerationRefused, UpstreamError
from services.users import Profile
from services.video import IMAGE, TooManyVideoJobs, VideoService

log = logging.getLogger(__name__)

CAPTION_LIMIT = 1024


async def image_command(
    message: Message,
    command: CommandObject,
    bot: Bot,
    image_gen: ImageGenerator,
    videos: VideoService,
    profile: Profile,
) -> None:
    try:
        request = parse_image_request(command.args)
    except UnsupportedAspect as error:
        await message.reply(t(profile.lang, "image_bad_aspect", aspect=html.escape(str(error))))
        return
    if request is None:
        await message.reply(t(profile.lang, "image_usage"))
        return
    model = image_gen.model_for(profile.user.image_model)
    if image_gen.made_as_job(model):
        await _submit_job(message, request, model, videos, profile)
        return
    try:
        async with ChatActionSender.upload_photo(
            bot=bot, chat_id=message.chat.id, message_thread_id=thread_of(message)
        ):
            picture = await image_gen.generate(
                request,
                model=profile.user.image_model,
                user_id=profile.user.user_id,
                chat_id=message.chat.id,
            )
    except ModerationRefused:
        await message.reply(t(profile.lang, "image_refused"))
        return
    except ModelUnavailable:
        await message.reply(t(profile.lang, "image_model_off", model=html.escape(model)))
        return
    except UpstreamError as error:
        await message.reply(error_text(error, profile.lang, model=model, is_admin=profile.is_admin))
        return
    caption = request.prompt
    if len(caption) > CAPTION_LIMIT:
        caption = caption[: CAPTION_LIMIT - 1] + "…"
    if not await _deliver_picture(message, picture, caption):
        # Paid for and lost: at least the user knows, and can ask again.
        with contextlib.suppress(TelegramAPIError):
            await message.reply(t(profile.lang, "image_undelivered"))


async def _submit_job(
    message: Message, request: ImageRequest, model: str, videos: VideoService, profile: Profile
) -> None:
    """A task-API picture: a stored job with a progress message, delivered when it is drawn,
    also after a restart (see services/video.py)."""
    progress: Message | None = None
    try:
        progress = await message.reply(t(profile.lang, "image_queued", elapsed=elapsed_text(0)))
    except TelegramAPIError as error:
        log.warning("picture progress not shown in chat %s: %s", message.chat.id, error)
    try:
        await videos.submit(
            user_id=profile.user.user_id,
            chat_id=message.chat.id,
            thread_id=thread_of(message),
            prompt=request.prompt,
            lang=profile.lang,
            model=model,
            progress_message_id=progress.message_id if progress else None,
            aspect_ratio=request.aspect,
            kind=IMAGE,
        )
    except TooManyVideoJobs as error:
        await show_notice(message, progress, t(profile.lang, "image_too_many", limit=error.limit))
    except UpstreamError as error:
        text = error_text(error, profile.lang, model=html.escape(model), is_admin=profile.is_admin)
        await show_notice(message, progress, text)


async def _deliver_picture(message: Message, picture: bytes, caption: str) -> bool:
    """Send the picture as a photo, or as a file when Telegram refuses it as a photo (too
    large, odd proportions); False when it could not be delivered either way."""
    file = BufferedInputFile(picture, filename="image.png")
    try:
        await message.reply_photo(file, caption=caption, parse_mode=None)
        return True
    except TelegramBadRequest as error:
        log.info("picture refused as a photo (%s); sending it as a file", error.message)
    except TelegramAPIError as error:
        log.warning("picture not delivered to chat %s: %s", message.chat.id, error)
        return False
    try:
        await message.reply_document(file, caption=caption, parse_mode=None)
    except TelegramAPIError as error:
        log.warning("picture not delivered to chat %s: %s", message.chat.id, error)
        return False
    return True


def create_router() -> Router:
    router = Router(name=__name__)
    router.message.register(image_command, Command("image", "img"), flags={"spends": "image"})
    return router
