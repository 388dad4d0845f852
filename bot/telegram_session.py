"""How every call reaches Telegram: a leaner aiohttp session, and flood control.

`TelegramSession` sends the calls (see its docstring). `FloodControl` is the one place
for Telegram's flood control on every outgoing call: messages are paced (about 30/s
overall, about 1/s per chat with short bursts, 20/min in groups) so 429s stay rare, and
a 429 that still comes back is honoured by waiting `retry_after` and sending again.
Drafts are not retried: by the time the wait is over a newer draft has replaced them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

from services.pacing import KeyedPacer

log = logging.getLogger(__name__)

# Calls that put a new message into a chat and count against Telegram's limits.
PACED_METHODS = frozenset(
    {
        "sendMessage",
        "sendRichMessage",
        "sendPhoto",
        "sendVoice",
        "sendAudio",
        "sendVideo",
        "sendDocument",
        "sendAnimation",
        "sendVideoNote",
        "sendMediaGroup",
        "sendSticker",
        "copyMessage",
        "forwardMessage",
    }
)
NOT_RETRIED = frozenset({"sendMessageDraft", "sendRichMessageDraft", "sendChatAction"})


class TelegramSession(AiohttpSession):
    """aiogram's aiohttp session, made cheaper per call.

    Calls without files go out as one JSON body. The stock session builds a form for every
    call: each field JSON-encoded on its own, then URL-encoded, with a multipart writer (and
    a random boundary) made on the way. The Bot API takes `application/json` just as well;
    one `json.dumps` of the whole call is several times cheaper. Uploads stay multipart.

    The `Response[T]` classes each answer is validated with are kept alive. aiogram writes
    `Response[method.__returning__]` for every call, and pydantic caches such parametrised
    models only weakly: after a garbage collection the next call built the class again
    from its schema (a few per cent of the bot's CPU under load). One reference per result
    type, a few dozen at most, keeps pydantic's cache warm.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._json_headers = {"Content-Type": "application/json"}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._response_types: dict[Any, type[Response[Any]]] = {}

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 (aiogram's signature)
    ) -> TelegramType:
        files: dict[str, Any] = {}
        payload: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared:  # what the stock form leaves out (None, False, 0, "") stays out
                payload[key] = prepared
        if files:  # rare (uploads): the stock form, which prepares the values again
            return await super().make_request(bot, method, timeout)
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        try:
            async with session.post(
                url,
                data=self.json_dumps(payload),
                headers=self._json_headers,
                timeout=self._timeout(self.timeout if timeout is None else timeout),
            ) as resp:
                raw_result = await resp.text()
        except TimeoutError as error:
            raise TelegramNetworkError(method=method, message="Request timeout error") from error
        except aiohttp.ClientError as error:
            message = f"{type(error).__name__}: {error}"
            raise TelegramNetworkError(method=method, message=message) from error
        response = self.check_response(
            bot=bot, method=method, status_code=resp.status, content=raw_result
        )
        return cast(TelegramType, response.result)

    def check_response(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        status_code: int,
        content: str,
    ) -> Response[TelegramType]:
        returning = method.__returning__
        if returning not in self._response_types:
            self._response_types[returning] = Response[returning]  # type: ignore[valid-type]
        return super().check_response(bot, method, status_code, content)

    @property
    def kept_response_types(self) -> int:
        return len(self._response_types)

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        # aiohttp turns a bare number into a new ClientTimeout on every request.
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout


class FloodControl(BaseRequestMiddleware):
    def __init__(self, pacer: KeyedPacer, *, max_retries: int = 3, max_wait: float = 60.0) -> None:
        self._pacer = pacer
        self._max_retries = max_retries
        self._max_wait = max_wait

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        if name in PACED_METHODS:
            chat_id: Any = getattr(method, "chat_id", None)
            group = isinstance(chat_id, int) and chat_id < 0
            await self._pacer.wait(chat_id, group=group)
        attempt = 0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                attempt += 1
                if (
                    name in NOT_RETRIED
                    or attempt > self._max_retries
                    or error.retry_after > self._max_wait
                ):
                    raise
                log.warning("Telegram asked to wait %ss before %s", error.retry_after, name)
                await asyncio.sleep(error.retry_after)
