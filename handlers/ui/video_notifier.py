"""The Telegram side of media jobs (/video, and /image on a task-API provider): one progress
message that updates, then the video or the picture.

VideoService calls this from its background pollers, also after a restart, so
everything it needs is in the stored job (chat, message id, language).
"""

from __future__ import annotations

import html
import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import BufferedInputFile, Message

from handlers.ui.texts import t
from services.storage import VideoJob
from services.video import IMAGE, VIDEO

log = logging.getLogger(__name__)

QUEUED_STATES = frozenset({"submitting", "IN_QUEUE"})


def elapsed_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class TelegramVideoNotifier:
    def __init__(self, bot: Bot) -> None:
        self._bot = bot

    async def _edit(self, job: VideoJob, text: str) -> bool:
        if job.progress_message_id is None:
            return False
        try:
            await self._bot.edit_message_text(
                text=text, chat_id=job.chat_id, message_id=job.progress_message_id
            )
        except TelegramBadRequest as error:
            return "not modified" in error.message
        except TelegramAPIError as error:
            log.debug("video progress not shown: %s", error)
            return False
        return True

    async def progress(self, job: VideoJob, elapsed: float) -> None:
        key = _key(job, "queued" if job.state in QUEUED_STATES else "in_progress")
        await self._edit(job, t(job.lang, key, elapsed=elapsed_text(elapsed)))

    async def completed(self, job: VideoJob, video: bytes | None) -> None:
        if job.kind == IMAGE:
            await self._picture(job, video)
            return
        try:
            if video is not None:
                media: BufferedInputFile | str = BufferedInputFile(video, filename="video.mp4")
            elif job.url:
                media = job.url  # Telegram fetches it itself
            else:
                raise ValueError("no video and no URL")
            await self._bot.send_video(
                job.chat_id,
                media,
                caption=_caption(job.prompt),
                parse_mode=None,
                message_thread_id=job.thread_id,
                supports_streaming=True,
            )
            await self._edit(job, t(job.lang, "video_done"))
        except (TelegramAPIError, ValueError) as error:
            log.warning("video %s not uploaded to chat %s: %s", job.id, job.chat_id, error)
            # A link still delivers the video; without one the user at least knows.
            if job.url:
                text = t(job.lang, "video_link", url=html.escape(job.url))
            else:
                text = t(job.lang, "video_undelivered")
            await self._tell(job, text)

    async def _picture(self, job: VideoJob, picture: bytes | None) -> None:
        caption = _caption(job.prompt)
        sent = False
        if picture is not None:
            file = BufferedInputFile(picture, filename="image.png")
            for send in (self._bot.send_photo, self._bot.send_document):
                try:
                    await send(
                        job.chat_id,
                        file,
                        caption=caption,
                        parse_mode=None,
                        message_thread_id=job.thread_id,
                    )
                except TelegramAPIError as error:
                    # Refused as a photo (size, proportions): as a file it usually goes.
                    log.info("picture %s not sent by %s: %s", job.id, send.__name__, error)
                    continue
                sent = True
                break
        if sent:
            await self._edit(job, t(job.lang, "image_done"))
        elif job.url:
            await self._tell(job, t(job.lang, "image_link", url=html.escape(job.url)))
        else:
            await self._tell(job, t(job.lang, "image_undelivered"))

    async def _tell(self, job: VideoJob, text: str) -> None:
        """In the progress message, or as a message of its own when that cannot be edited."""
        if await self._edit(job, text):
            return
        try:
            await self._bot.send_message(job.chat_id, text, message_thread_id=job.thread_id)
        except TelegramAPIError as error:
            log.warning("video %s: the user could not be told (%s)", job.id, error)

    async def failed(self, job: VideoJob) -> None:
        if job.state == "TIMEOUT":
            text = t(job.lang, _key(job, "timeout"))
        elif job.state == "FAILED" and job.reason:
            # The upstream's own reason for a failed generation is meant for the user.
            text = t(job.lang, _key(job, "failed"), reason=html.escape(job.reason[:500]))
        else:
            # Other errors carry internal or account details: keep them out of the chat.
            text = t(job.lang, _key(job, "failed"), reason=t(job.lang, "unknown_reason"))
        await self._tell(job, text)


async def show_notice(message: Message, progress: Message | None, text: str) -> None:
    """A job's notice at submission (refused, too many): in its progress message, or as a
    reply to the command when there is none."""
    try:
        if progress is not None:
            await progress.edit_text(text)
        else:
            await message.reply(text)
    except TelegramAPIError as error:
        log.warning("job notice not shown in chat %s: %s", message.chat.id, error)


def _key(job: VideoJob, what: str) -> str:
    """The text key of `what` for the job's kind: "video_failed", "image_failed"..."""
    return f"{IMAGE if job.kind == IMAGE else VIDEO}_{what}"


def _caption(prompt: str) -> str:
    return prompt if len(prompt) <= 1024 else prompt[:1023] + "…"
