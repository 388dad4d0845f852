"""One keep-alive HTTP/1.1 client connection: an asyncio protocol around httptools' parser.

The event loop hands received bytes straight to httptools (llhttp, the parser Node.js uses),
whose callbacks fill in the response: status, headers, body pieces, completion. The task
that owns the request waits on a single future, woken by those callbacks, so a response
costs a few Python calls per network read instead of a stack of stream and state-machine
layers per chunk.

A connection serves one request at a time; the pool hands it to one task, which sends the
request, reads the response and gives it back. Received bytes are buffered up to
`HIGH_WATER`, then the socket is paused until the reader catches up, so a large body never
piles up in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterable
from typing import cast

import httptools

from services.http1.errors import (
    HTTPClientError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    WriteError,
    WriteTimeout,
)

__all__ = ["Connection", "encode_request_head"]

# Buffered body bytes above which the socket stops being read until the reader drains them.
HIGH_WATER = 256 * 1024
# Bodies below this are sent in one write together with the head (one segment, one syscall).
_JOIN_BELOW = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


def encode_request_head(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]] | tuple[()] = ()
) -> bytes:
    """`METHOD target HTTP/1.1` and the header lines, ending with the blank line.

    CR or LF inside a name, value or target would let one request smuggle another, so they
    are refused here rather than trusted to every caller.
    """
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    if head.count(b"\n") != len(headers) + 2 or head.count(b"\r") != len(headers) + 2:
        raise ValueError("CR or LF inside a request line or header")
    return head


def _expire(
    waiter: asyncio.Future[None], error: type[HTTPClientError], what: str, label: str, after: float
) -> None:
    # The exception (and its message) is made only when a timer fires, not for every wait.
    if not waiter.done():
        waiter.set_exception(error(f"{what} {label} for {after:g} s"))


class Connection(asyncio.Protocol):
    """Created by the pool for `loop.create_connection`; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop, label: str) -> None:
        self._loop = loop
        self.label = label  # "host:port", for error messages (never the request target)
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._error: HTTPClientError | None = None
        self._write_paused = False
        self._read_paused = False
        self._head_only = False
        self._active = False
        self._reset_response()

    def _reset_response(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self._head_done = False
        self._complete = False
        self._until_eof = False
        self._body: list[bytes] = []
        self._buffered = 0

    # --- the request, from the owning task ------------------------------------------------

    @property
    def reusable(self) -> bool:
        """Whether the response was read to its end and the connection may carry another."""
        return self._complete and self.keep_alive and not self.closed and self._error is None

    async def send(
        self,
        head: bytes,
        body: bytes | AsyncIterable[bytes] | None,
        *,
        chunked: bool = False,
        head_only: bool = False,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
    ) -> None:
        """Send a request, then wait until the response's status and headers are in."""
        transport = self._transport
        if transport is None or self.closed:
            raise WriteError(f"connection to {self.label} is closed")
        self._reset_response()
        self._active = True
        self._head_only = head_only
        if body is None or isinstance(body, bytes | bytearray | memoryview):
            if body and len(body) >= _JOIN_BELOW:
                transport.write(head)
                transport.write(body)
            else:
                transport.write(head + body if body else head)
        else:
            transport.write(head)
            async for piece in body:
                if piece:
                    if chunked:
                        transport.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                    else:
                        transport.write(piece)
                    await self._drain(write_timeout)
            if chunked:
                transport.write(b"0\r\n\r\n")
        await self._drain(write_timeout)
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait(read_timeout, ReadTimeout, "no response from")

    async def read_chunk(self, read_timeout: float | None = None) -> bytes:
        """The body bytes received so far (waiting for some if none are); b"" at the end."""
        while True:
            body = self._body
            if body:
                self._body = []
                self._buffered = 0
                if self._read_paused and self._transport is not None and not self.closed:
                    self._read_paused = False
                    self._transport.resume_reading()
                return body[0] if len(body) == 1 else b"".join(body)
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait(read_timeout, ReadTimeout, "nothing more came from")

    def done(self) -> None:
        """The owning task is finished with this request (read to its end or abandoned)."""
        self._active = False
        if not self.reusable:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    async def _drain(self, limit: float | None) -> None:
        while self._write_paused:
            if self._error is not None:
                raise self._error
            if self.closed:
                raise WriteError(f"connection to {self.label} closed while sending")
            await self._wait(limit, WriteTimeout, "the request is not being taken by")

    async def _wait(
        self, limit: float | None, on_timeout: type[HTTPClientError], what: str
    ) -> None:
        # One future and, with a limit, one timer per wait: cheaper than asyncio.timeout().
        waiter = self._loop.create_future()
        self._waiter = waiter
        timer = None
        if limit is not None:
            timer = self._loop.call_later(
                limit, _expire, waiter, on_timeout, what, self.label, limit
            )
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: HTTPClientError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A request is written whole; Nagle's algorithm would only hold its tail back.
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self._active or self._complete:
            # Nothing may follow a response until the next request (a server's goodbye, or
            # garbage): the connection is retired rather than trusted with another request.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(RemoteProtocolError(f"malformed response from {self.label}: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost sorts out what it means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._active and not self._complete:
            if self._head_done and self._until_eof:
                self._complete = True  # a body delimited by the end of the connection
                self._wake()
            elif self._head_done:
                self._fail(ReadError(f"{self.label} closed the connection mid-response"))
            else:
                self._fail(RemoteProtocolError(f"{self.label} disconnected without a response"))
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake()

    # --- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._head_done:
            # A second response to one request, in the same read: stop the parser here (the
            # error surfaces as HttpParserError) so nothing of it is taken for this body.
            raise RemoteProtocolError(f"{self.label} sent more than one response")
        self.headers = []
        self.reason = b""

    def on_status(self, reason: bytes) -> None:
        self.reason += reason  # may come in pieces when a read splits the status line

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head_done:  # a chunked body's trailers are not headers
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            return  # 100 Continue and friends: the real response follows
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        self._head_done = True
        if self._head_only:
            # No body follows a HEAD response whatever its headers say; httptools cannot be
            # told so, so the connection is not used again.
            self.keep_alive = False
            self._complete = True
        elif status not in _NO_BODY_STATUSES:
            framed = False
            for name, value in self.headers:
                lowered = name.lower()
                if lowered == b"content-length" or (
                    lowered == b"transfer-encoding" and b"chunked" in value.lower()
                ):
                    framed = True
                    break
            self._until_eof = not framed
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self._head_done:
            return  # the end of an informational (1xx) response
        self._complete = True
        self._wake()
