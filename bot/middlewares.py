"""Update middlewares: who is writing, in which language, with which settings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Chat, TelegramObject, User

from handlers.ui.continuation import CONTINUATION_KEY, Continuation
from services.users import Profile, UserService

# Chats whose settings are their own, not the sender's.
GROUP_CHATS = frozenset({"group", "supergroup"})


class ProfileMiddleware(BaseMiddleware):
    """Puts `profile` (settings, language, admin flag) and `chat_settings` into handler data.

    `chat_settings` is the record whose model, persona, temperature and vision model apply
    in the event's chat: in a group, the group's own row (see `UserService.chat_settings`);
    in a private chat, the sender's own record, the very object in `profile` (no query: a
    private question is the hot path).

    Events without a sender (a draft's Stop) fall back to the private chat's owner.
    """

    def __init__(self, users: UserService) -> None:
        self._users = users

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        chat: Chat | None = data.get("event_chat")
        profile: Profile | None = None
        if user is not None and not user.is_bot:
            profile = await self._users.touch(
                user.id,
                username=user.username,
                first_name=user.first_name,
                language_code=user.language_code,
            )
            data["profile"] = profile
        elif chat is not None and chat.type == "private":
            profile = await self._users.get(chat.id)
            if profile is not None:
                data["profile"] = profile
        if chat is not None and chat.type in GROUP_CHATS:
            data["chat_settings"] = await self._users.chat_settings(chat.id, chat.title)
        elif profile is not None:
            data["chat_settings"] = profile.user
        return await handler(event, data)


class InFlight(BaseMiddleware):
    """Counts updates being handled, so shutdown can let them finish first.

    An update is handled until its handler returns, or until the work the handler handed
    over (`Continuation`, put in the data here) ends.

    Polling stops taking new updates before shutdown, but handlers already running
    (an answer being streamed, a voice note being transcribed) would otherwise meet
    a closed database or HTTP client halfway through.
    """

    def __init__(self) -> None:
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        self._active += 1
        self._idle.clear()
        continuation = Continuation()
        data[CONTINUATION_KEY] = continuation
        try:
            return await handler(event, data)
        finally:
            task = continuation.task
            if task is None:
                self._leave()
            else:
                # The handler handed its answer over: the update is in flight until it ends.
                task.add_done_callback(self._left)

    def _leave(self) -> None:
        self._active -= 1
        if self._active == 0:
            self._idle.set()

    def _left(self, _: asyncio.Task[None]) -> None:
        self._leave()

    @property
    def active(self) -> int:
        return self._active

    async def drain(self, seconds: float) -> bool:
        """Wait until no update is being handled; False if `seconds` ran out first."""
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
