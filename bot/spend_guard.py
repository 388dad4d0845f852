"""The spend guard: one middleware in front of every handler that spends the providers' money.

Handlers that cost money are registered with the flag `spends` ("chat", "image", "video").
An inner message middleware runs after the filters matched, so a message no handler takes
(group chatter) is never checked nor counted. It asks `AccessService.check` — ban, access
list, flood, quota — and on a refusal replies with the reason, in the asker's language (or
stays silent when the verdict says so) and does not call the handler; nothing is sent
upstream.

A passing verdict may hold a reservation against the user's daily quota: it is released when
the answer ends — when the handler returns, or, for an answer the handler handed over
(`Continuation`), when that work ends, after its usage record was stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message, TelegramObject

from handlers.access import refusal_text
from handlers.ui.continuation import CONTINUATION_KEY, Continuation
from services.access import AccessService, Verdict
from services.users import Profile

log = logging.getLogger(__name__)

SPENDS_FLAG = "spends"


class SpendGuard(BaseMiddleware):
    def __init__(self, access: AccessService, *, clock: Callable[[], float] = time.time) -> None:
        self._access = access
        self._clock = clock

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        kind = get_flag(data, SPENDS_FLAG)
        profile = data.get("profile")
        if kind is None or not isinstance(event, Message) or not isinstance(profile, Profile):
            # Free, or nobody to count it against (the handler has no asker either).
            return await handler(event, data)
        user_id = profile.user.user_id
        album = event.media_group_id
        verdict = await self._access.check(
            user_id=user_id,
            chat_id=event.chat.id,
            is_admin=profile.is_admin,
            kind=str(kind),
            # The parts of one album arrive as separate messages: they count once.
            burst_key=f"album:{album}" if album else None,
        )
        if verdict.refusal is not None:
            if verdict.notify:
                await self._tell(event, verdict, profile)
            return None
        if not verdict.reserved:
            return await handler(event, data)
        try:
            result = await handler(event, data)
        except BaseException:
            self._access.release(user_id, verdict.hold)
            raise
        continuation = data.get(CONTINUATION_KEY)
        task = continuation.task if isinstance(continuation, Continuation) else None
        if task is None:
            self._access.release(user_id, verdict.hold)
        else:
            # Ends after the answer (and its usage record) is stored, also when cancelled.
            task.add_done_callback(lambda _: self._access.release(user_id, verdict.hold))
        return result

    async def _tell(self, message: Message, verdict: Verdict, profile: Profile) -> None:
        requests, tokens = self._access.limits(profile.user.user_id)
        text = refusal_text(
            verdict, profile.lang, self._clock(), requests_limit=requests, tokens_limit=tokens
        )
        try:
            if message.chat.type == ChatType.PRIVATE:
                await message.answer(text)
            else:
                # In a group, under the asker's own message: it is theirs, not the group's.
                await message.reply(text)
        except TelegramAPIError as error:
            log.warning("refusal not shown in chat %s: %s", message.chat.id, error)
