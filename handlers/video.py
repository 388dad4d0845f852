"""/video <prompt>, or a photo captioned `/video <prompt>` (image to video)."""

from __future__ import annotations

import html
import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from handlers.incoming import thread_of
from handlers.ui.errors import error_text
from handlers.ui.files import image_file, prepared_images
from handlers.ui.texts import t
from handlers.ui.video_notifier import elapsed_text, show_notice
from services.llm import UpstreamError
from services.users import Profile
from services.video import TooManyVideoJobs, VideoService

log = logging.getLogger(__name__)


async def video_command(
    message: Message,
    bot: Bot,
    command: CommandObject,
    videos: VideoService,
    profile: Profile,
) -> None:
    prompt = (command.args or "").strip()
    image: bytes | None = None
    found = image_file(message)
    if found is not None:
        images = await prepared_images(bot, message, [found], profile.lang)
        if images is None:
            return  # the user was told why
        image = images[0]
    if not prompt:
        await message.reply(t(profile.lang, "video_usage"))
        return
    progress: Message | None = None
    try:
        progress = await message.reply(t(profile.lang, "video_queued", elapsed=elapsed_text(0)))
    except TelegramAPIError as error:
        # The progress view is a nicety: the video is still made, and the result (or the
        # failure) then comes as a message of its own.
        log.warning("video progress not shown in chat %s: %s", message.chat.id, error)
    try:
        await videos.submit(
            user_id=profile.user.user_id,
            chat_id=message.chat.id,
            thread_id=thread_of(message),
            prompt=prompt,
            lang=profile.lang,
            image=image,
            progress_message_id=progress.message_id if progress else None,
        )
    except TooManyVideoJobs as error:
        await show_notice(message, progress, t(profile.lang, "video_too_many", limit=error.limit))
    except UpstreamError as error:
        model = html.escape(videos.default_model)
        text = error_text(error, profile.lang, model=model, is_admin=profile.is_admin)
        await show_notice(message, progress, text)


def create_router() -> Router:
    router = Router(name=__name__)
    # Also a photo captioned `/video ...`: aiogram's Command filter reads captions too.
    router.message.register(video_command, Command("video"), flags={"spends": "video"})
    return router
