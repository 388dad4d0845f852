"""How every call reaches Telegram: aiogram's own aiohttp session, a proxy, flood control.

`TelegramSession` is aiogram's `AiohttpSession` (see its docstring for what it changes).
`FloodControl` is the one place for Telegram's flood control on every outgoing call:
messages are paced (about 30/s overall, about 1/s per chat with short bursts, 20/min in
groups) so 429s stay rare, and a 429 that still comes back is honoured by waiting
`retry_after` and sending again. Drafts are not retried: by the time the wait is over a
newer draft has replaced them. Transport failures and 5xx are `bot.telegram_retry`'s.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiohttp import ClientError, ClientTimeout
from yarl import URL

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
# What aiohttp-socks (under aiogram's own `proxy=`) connects through; http(s) proxies go
# through aiohttp's own proxy support, which also speaks TLS to an https:// proxy.
SOCKS_SCHEMES = ("socks4://", "socks5://", "socks5h://")
_JSON_HEADERS = {"Content-Type": "application/json"}


def resolve_proxy(configured: str | None, api_url: str) -> str | None:
    """The proxy for Telegram: `TELEGRAM_PROXY` when set, else what the standard
    environment variables (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY) say for the API
    host, read the way urllib and aiohttp's `trust_env` read them."""
    if configured:
        return configured
    url = URL(api_url)
    if url.host is None or urllib.request.proxy_bypass(url.host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(url.scheme) or proxies.get("all") or None


class TelegramSession(AiohttpSession):
    """aiogram's session, sending the calls that carry no file as one JSON body.

    Every call goes through the stock session's own aiohttp `ClientSession` (from the
    public `create_session()`), so uploads, downloads and calls share one pool of `limit`
    connections and one lifetime. The stock `make_request` builds a form for every call,
    each nested field JSON-encoded on its own and then URL-encoded; the Bot API takes
    `application/json` just as well, in one `json.dumps`. Uploads stay multipart.

    The `Response[T]` classes each answer is validated with are kept alive. aiogram writes
    `Response[method.__returning__]` for every call, and pydantic caches such parametrised
    models only weakly: after a garbage collection the next call built the class again
    from its schema (about a tenth of the bot's CPU under load). One reference per result
    type, a few dozen at most, keeps pydantic's cache warm.

    `proxy`: a socks4/socks5 URL goes to aiogram's own `proxy=` (an aiohttp-socks
    connector); an http:// or https:// URL is given to aiohttp per request (a CONNECT
    tunnel for https targets), its credentials sent as Proxy-Authorization.
    """

    def __init__(self, *, proxy: str | None = None, limit: int = 100, **kwargs: Any) -> None:
        socks = proxy if proxy is not None and proxy.startswith(SOCKS_SCHEMES) else None
        if socks is not None and socks.startswith("socks5h://"):
            # aiogram always resolves names through a socks proxy (rdns), which is what
            # socks5h asks for; python-socks knows the scheme only as socks5.
            socks = "socks5://" + socks.removeprefix("socks5h://")
        super().__init__(proxy=socks, limit=limit, **kwargs)
        self._request_proxy: dict[str, Any] = {}
        if proxy is not None and socks is None:
            self._request_proxy = _http_proxy_options(proxy)
        self._response_types: dict[Any, type[Response[Any]]] = {}
        self._timeouts: dict[float, ClientTimeout] = {}
        # Calls beyond the pool's connections wait here, as a coroutine, instead of inside
        # aiohttp with a whole request object built (headers, body, URL, timers) each.
        self._in_flight = asyncio.Semaphore(limit)

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109 (aiogram's signature)
    ) -> TelegramType:
        files: dict[str, Any] = {}
        # The whole call as one JSON document: prepare_value resolves the bot's defaults,
        # dates and enums, drops None and turns files into attach:// references.
        body = self.prepare_value(method.model_dump(warnings=False), bot=bot, files=files)
        data: Any
        headers: dict[str, str] | None
        if files:  # rare (uploads): the stock multipart form, which prepares values again
            data, headers = self.build_form_data(bot=bot, method=method), None
        else:
            data, headers = body.encode(), _JSON_HEADERS
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        try:
            async with (
                self._in_flight,
                session.post(
                    url,
                    data=data,
                    headers=headers,
                    timeout=self._timeout(self.timeout if timeout is None else timeout),
                    **self._request_proxy,
                ) as response,
            ):
                content = await response.text()
        except TimeoutError as error:
            raise TelegramNetworkError(method=method, message="Request timeout error") from error
        except ClientError as error:
            message = safe_description(error, bot.token)
            raise TelegramNetworkError(method=method, message=message) from error
        result = self.check_response(
            bot=bot, method=method, status_code=response.status, content=content
        )
        return cast(TelegramType, result.result)

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,  # noqa: ASYNC109 (aiogram's signature)
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        # The stock download, through the same proxy as every call.
        session = await self.create_session()
        async with session.get(
            url,
            timeout=self._timeout(timeout),
            headers=headers or {},
            raise_for_status=raise_for_status,
            **self._request_proxy,
        ) as response:
            async for chunk in response.content.iter_chunked(chunk_size):
                yield chunk

    def _timeout(self, seconds: float) -> ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = ClientTimeout(total=seconds)
        return timeout

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
        try:
            return super().check_response(bot, method, status_code, content)
        except ClientDecodeError as error:
            # A proxy or load balancer in front of the Bot API answers a 502/503 with an
            # HTML page: it is the same server failure as Telegram's own JSON 5xx.
            if status_code >= 500:
                message = f"HTTP {status_code} without a Bot API answer"
                raise TelegramServerError(method=method, message=message) from error
            raise

    @property
    def kept_response_types(self) -> int:
        return len(self._response_types)


def _http_proxy_options(proxy: str) -> dict[str, Any]:
    # Credentials stay in the URL: aiohttp turns them into the Proxy-Authorization header,
    # on the CONNECT for an https target and on the request itself for an http one.
    return {"proxy": URL(proxy)}


def safe_description(error: BaseException, token: str) -> str:
    """`Kind: message` of a transport error, fit for a log line: aiogram's URLs carry the
    bot's token (`/bot<token>/method`), and some aiohttp errors quote the URL."""
    text = f"{type(error).__name__}: {error}"
    return text.replace(token, "<token>") if token else text


class FloodControl(BaseRequestMiddleware):
    def __init__(
        self,
        pacer: KeyedPacer,
        *,
        max_retries: int = 3,
        max_wait: float = 60.0,
        on_retry_after: Callable[[], None] | None = None,
    ) -> None:
        self._pacer = pacer
        self._max_retries = max_retries
        self._max_wait = max_wait
        # Told about every 429 Telegram answers (the bot's metrics).
        self._on_retry_after = on_retry_after

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
                if self._on_retry_after is not None:
                    self._on_retry_after()
                attempt += 1
                if (
                    name in NOT_RETRIED
                    or attempt > self._max_retries
                    or error.retry_after > self._max_wait
                ):
                    raise
                log.warning("Telegram asked to wait %ss before %s", error.retry_after, name)
                await asyncio.sleep(error.retry_after)
