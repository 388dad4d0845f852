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

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

from services.http1 import (
    ConnectionPool,
    ConnectTimeout,
    HTTPClientError,
    Origin,
    PoolTimeout,
    ReadTimeout,
    WriteTimeout,
    encode_request_head,
)
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
# Drafts and chat actions are stale by the time a wait is over. copyMessage carries
# broadcasts, whose own scheduler must hear of a 429 at once to pause every send, not
# have one call sleep while the others keep coming.
NOT_RETRIED = frozenset(
    {"sendMessageDraft", "sendRichMessageDraft", "sendChatAction", "copyMessage"}
)


class TelegramSession(AiohttpSession):
    """aiogram's session, with the calls that carry no file sent over a lean HTTP/1.1 pool.

    Those calls (nearly all of them: drafts, messages, edits, chat actions, getUpdates) go
    out as one JSON body on `services.http1`'s keep-alive connections. aiohttp's request
    machinery (a request object, timers, tracing and cookie hooks, header multidicts) cost
    more per call than the rest of a call together; the stock session also built a form for
    every call, each field JSON-encoded on its own, then URL-encoded. The Bot API takes
    `application/json` just as well. Uploads and file downloads stay on aiohttp: they are
    rare and multipart.

    The `Response[T]` classes each answer is validated with are kept alive. aiogram writes
    `Response[method.__returning__]` for every call, and pydantic caches such parametrised
    models only weakly: after a garbage collection the next call built the class again
    from its schema (a few per cent of the bot's CPU under load). One reference per result
    type, a few dozen at most, keeps pydantic's cache warm.
    """

    def __init__(self, *, limit: int = 100, **kwargs: Any) -> None:
        if kwargs.get("proxy") is not None:
            # The pool connects directly; a proxy would be silently bypassed.
            raise ValueError("TelegramSession does not support proxies")
        super().__init__(limit=limit, **kwargs)
        self._max_connections = limit
        self._pool = self._new_pool()
        # Per (token, method): where the call goes and its request head up to the length.
        self._targets: dict[tuple[str, str], tuple[Origin, bytes]] = {}
        self._response_types: dict[Any, type[Response[Any]]] = {}

    def _new_pool(self) -> ConnectionPool:
        # TLS against certifi's roots, as aiogram's own aiohttp connector does.
        return ConnectionPool(max_connections=self._max_connections)

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
            # What the stock form leaves out stays out: None and "". It JSON-encodes first,
            # so False, 0 and [] go out ("false", "0", "[]") and must here too.
            if prepared is not None and prepared != "":
                payload[key] = prepared
        if files:  # rare (uploads): the stock form, which prepares the values again
            return await super().make_request(bot, method, timeout)
        origin, head = self._target(bot.token, method.__api_method__)
        body = self.json_dumps(payload).encode()
        seconds = self.timeout if timeout is None else timeout
        try:
            response = await self._pool.request(
                origin,
                b"%b%d\r\n\r\n" % (head, len(body)),
                body,
                read_timeout=seconds,
                write_timeout=seconds,
                pool_timeout=seconds,
            )
            content = await response.read()
        except (ConnectTimeout, PoolTimeout, ReadTimeout, WriteTimeout) as error:
            raise TelegramNetworkError(method=method, message="Request timeout error") from error
        except HTTPClientError as error:
            message = f"{type(error).__name__}: {error}"
            raise TelegramNetworkError(method=method, message=message) from error
        result = self.check_response(
            bot=bot,
            method=method,
            status_code=response.status,
            content=content.decode("utf-8", "replace"),
        )
        return cast(TelegramType, result.result)

    def _target(self, token: str, name: str) -> tuple[Origin, bytes]:
        target = self._targets.get((token, name))
        if target is None:
            origin, path = Origin.of(self.api.api_url(token=token, method=name))
            headers = [
                (b"Host", origin.host_header),
                (b"Content-Type", b"application/json"),
                (b"Content-Length", b""),
            ]
            # The head ends "Content-Length: "; each call appends its length and the blank line.
            head = encode_request_head(b"POST", path, headers)[: -len(b"\r\n\r\n")]
            target = self._targets[(token, name)] = (origin, head)
        return target

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

    @property
    def pool(self) -> ConnectionPool:
        return self._pool

    async def close(self) -> None:
        # Like aiogram's own session, a closed one may be used again (a bot restarted in the
        # same process): the next call opens new connections.
        await super().close()
        pool, self._pool = self._pool, self._new_pool()
        await pool.aclose()


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
