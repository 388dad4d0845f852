"""Downloading a user's file from Telegram, within the Bot API's 20 MB limit."""

from __future__ import annotations

import io

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest

from services.images import MAX_DOWNLOAD


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
