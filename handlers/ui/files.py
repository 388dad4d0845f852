"""Users' files from Telegram: downloading within the Bot API's 20 MB limit, and pictures
prepared for a vision model, with the user told plainly when one cannot be used."""

from __future__ import annotations

import io
from collections.abc import Iterable

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Message, PhotoSize

from handlers.ui.texts import t
from services.images import MAX_DOWNLOAD, ImageError, ImageProblem, prepare_image_async

# Vision providers downscale anything larger; fetching more only costs time.
VISION_SIDE = 2048
IMAGE_PROBLEM_KEYS = {
    ImageProblem.TOO_BIG: "image_too_big",
    ImageProblem.UNSUPPORTED: "image_unsupported",
    ImageProblem.CORRUPT: "image_corrupt",
}

# A Telegram file: its id and its size when Telegram said it.
FileRef = tuple[str, int | None]


class FileTooBig(Exception):
    pass


async def download(bot: Bot, file_id: str, size: int | None) -> bytes:
    if size is not None and size > MAX_DOWNLOAD:
        raise FileTooBig
    try:
        buffer = await bot.download(file_id)
    except TelegramBadRequest as error:
        if "too big" in error.message:
            raise FileTooBig from error
        raise
    if not isinstance(buffer, io.BytesIO):  # only when a destination is given
        return b""
    return buffer.getvalue()


def best_photo(sizes: list[PhotoSize]) -> PhotoSize:
    """The largest size within what vision models use, else the smallest available."""
    fitting = [s for s in sizes if max(s.width, s.height) <= VISION_SIDE]
    return max(fitting, key=lambda s: s.width * s.height) if fitting else sizes[0]


def image_file(message: Message) -> FileRef | None:
    """The picture a message carries: a photo, or a file that says it is an image."""
    if message.photo:
        photo = best_photo(message.photo)
        return photo.file_id, photo.file_size
    document = message.document
    if document and (document.mime_type or "").startswith("image/"):
        return document.file_id, document.file_size
    return None


async def prepared_images(
    bot: Bot, message: Message, files: Iterable[FileRef], lang: str
) -> tuple[bytes, ...] | None:
    """Download the files and prepare each as a JPEG a vision model takes (one at a time: a
    10-photo album never holds ten originals at once). On a file too big or not a usable
    image the user is told, in a reply to `message`, and None is returned."""
    images: list[bytes] = []
    try:
        for file_id, size in files:
            images.append(await prepare_image_async(await download(bot, file_id, size)))
    except FileTooBig:
        await message.reply(t(lang, "file_too_big"))
        return None
    except ImageError as error:
        await message.reply(t(lang, IMAGE_PROBLEM_KEYS[error.problem]))
        return None
    return tuple(images)
