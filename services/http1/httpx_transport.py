"""The pool as an httpx transport: httpx stays the upstream client's API (requests, headers,
timeouts, decoding, its exceptions), the wire is ours.

httpx's default transport runs on httpcore and h11, pure-Python state machines that cost
more per streamed chunk than everything the bot does with the chunk. This transport
writes httpx's request as it is (httpx has already added Host, Content-Length or chunked
framing) and hands back the response body as the connection receives it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from services.http1.connection import encode_request_head
from services.http1.errors import (
    ConnectError,
    ConnectTimeout,
    HTTPClientError,
    PoolTimeout,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    WriteError,
    WriteTimeout,
)
from services.http1.pool import DEFAULT_PORTS, ConnectionPool, Origin, Response

__all__ = ["CookielessAsyncClient", "Http1Transport"]

_HTTPX_ERRORS: dict[type[HTTPClientError], type[httpx.TransportError]] = {
    ConnectTimeout: httpx.ConnectTimeout,
    ConnectError: httpx.ConnectError,
    PoolTimeout: httpx.PoolTimeout,
    ReadTimeout: httpx.ReadTimeout,
    WriteTimeout: httpx.WriteTimeout,
    ReadError: httpx.ReadError,
    WriteError: httpx.WriteError,
    RemoteProtocolError: httpx.RemoteProtocolError,
}


def _httpx_error(exc: HTTPClientError, request: httpx.Request) -> httpx.TransportError:
    kind = _HTTPX_ERRORS.get(type(exc), httpx.TransportError)
    return kind(str(exc), request=request)


class _Body(httpx.AsyncByteStream):
    __slots__ = ("_request", "_response")

    def __init__(self, response: Response, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        read = self._response.read_chunk
        while True:
            try:
                chunk = await read()
            except HTTPClientError as exc:
                raise _httpx_error(exc, self._request) from exc
            if not chunk:
                return
            yield chunk

    async def aclose(self) -> None:
        self._response.close()


class Http1Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over `ConnectionPool`; the pool is owned (and closed) by the transport."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        origin = Origin(scheme, url.raw_host.decode("ascii"), url.port or DEFAULT_PORTS[scheme])
        headers = request.headers.raw
        head = encode_request_head(request.method.encode("ascii"), url.raw_path, headers)
        stream = request.stream
        if isinstance(stream, httpx.ByteStream):
            body: bytes | httpx.AsyncByteStream = request.content  # already in memory
            chunked = False
        else:
            body = stream  # type: ignore[assignment]  # multipart and other generated bodies
            chunked = any(
                name.lower() == b"transfer-encoding" and b"chunked" in value.lower()
                for name, value in headers
            )
        timeouts = request.extensions.get("timeout", {})
        try:
            response = await self.pool.request(
                origin,
                head,
                body,
                chunked=chunked,
                head_only=request.method == "HEAD",
                connect_timeout=timeouts.get("connect"),
                read_timeout=timeouts.get("read"),
                write_timeout=timeouts.get("write"),
                pool_timeout=timeouts.get("pool"),
            )
        except HTTPClientError as exc:
            raise _httpx_error(exc, request) from exc
        return httpx.Response(
            response.status,
            headers=response.headers,
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason},
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


class _KeepNoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessAsyncClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` that keeps no cookies.

    An API authenticated by key has no use for them, and httpx otherwise wraps every
    response and its request in urllib objects (parsing the URL again) just to look for
    Set-Cookie: a few per cent of the bot's CPU per streamed answer.
    """

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("cookies"):
            raise TypeError("CookielessAsyncClient keeps no cookies")
        super().__init__(**kwargs)
        self._no_cookies = _KeepNoCookies()

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("CookielessAsyncClient keeps no cookies")
