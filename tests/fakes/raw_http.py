"""A raw HTTP/1.1 server for the client's tests: it answers with hand-written bytes.

Each edge of the protocol (split reads, 1xx, close-delimited bodies, a server that stalls or
hangs up) can be played exactly: a handler gets the accepted connection as a `Peer`, reads
requests with `Peer.request()` and writes whatever bytes the test needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from services.http1 import ConnectionPool, Origin, Response, encode_request_head

LOCALHOST = "127.0.0.1"
# The limit on waits that must not happen: a broken client fails fast instead of hanging.
# Tests of timeouts also run under asyncio.timeout(SAFE): a lost timeout fails, not hangs.
SAFE = 2.0
# Between two writes that must reach the client as two separate reads.
SPLIT_PAUSE = 0.01


# --- the raw server ------------------------------------------------------------------------


@dataclass
class Request:
    """One request as the raw server read it."""

    method: bytes
    target: bytes
    head: bytes  # request line and headers, up to and including the blank line
    body: bytes  # as it came over the wire (chunked framing included)


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request off `reader`; None when the client closed the connection instead."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    lines = head.split(b"\r\n")
    method, target, _ = lines[0].split(b" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            body += size_line + await reader.readexactly(size + 2)
            if size == 0:  # the last chunk (no trailers): "0\r\n" and the closing "\r\n"
                break
    elif length := int(headers.get(b"content-length", b"0")):
        body = await reader.readexactly(length)
    return Request(method, target, head, body)


@dataclass
class Peer:
    """One accepted connection, as a handler sees it."""

    server: RawServer
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    index: int  # 1 for the server's first connection

    async def request(self) -> Request | None:
        """The next request on this connection (recorded); None at the client's EOF."""
        request = await read_request(self.reader)
        if request is None:
            self.server.eofs += 1
        else:
            self.server.requests.append(request)
        return request

    async def send(self, *pieces: bytes) -> None:
        """Write `pieces`, pausing between them so the client reads each one separately."""
        for number, piece in enumerate(pieces):
            if number:
                await asyncio.sleep(SPLIT_PAUSE)
            self.writer.write(piece)
            await self.writer.drain()

    async def wait_for_eof(self) -> None:
        """Until the client closes the connection (whatever it sends meanwhile is dropped)."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass
        self.server.eofs += 1


Handler = Callable[[Peer], Awaitable[None]]


class RawServer:
    """A TCP (or TLS) server on 127.0.0.1, a free port, running `handler` per connection.

    It counts the connections it accepted and the client EOFs its handlers saw, and keeps
    every request read through `Peer.request`. The server side closes a connection when its
    handler returns.
    """

    def __init__(self, handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._ssl = ssl_context
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0
        self.connections = 0
        self.eofs = 0
        self.requests: list[Request] = []

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._accept, LOCALHOST, 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        # The handler runs in a task of its own: cancelling asyncio's callback task itself
        # would be logged as an error by asyncio.start_server.
        task = asyncio.create_task(self._handler(Peer(self, reader, writer, self.connections)))
        self._tasks.add(task)
        try:
            await task
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    @property
    def origin(self) -> Origin:
        return Origin("https" if self._ssl else "http", LOCALHOST, self.port)

    @property
    def label(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def head(
        self,
        target: bytes = b"/",
        *,
        method: bytes = b"GET",
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> bytes:
        """A request head for this server: `Host` first, then `headers`."""
        return encode_request_head(method, target, [(b"Host", self.label.encode()), *headers])


def answering(*pieces: bytes) -> Handler:
    """Answer every request on a connection with `pieces` (separate reads), keeping it open."""

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(*pieces)

    return handler


def answering_once(*pieces: bytes, then_close: bool) -> Handler:
    """Answer one request; then close the connection, or wait for the client to close it."""

    async def handler(peer: Peer) -> None:
        if await peer.request() is not None:
            await peer.send(*pieces)
            if not then_close:
                await peer.wait_for_eof()

    return handler


def ok(body: bytes = b"ok", *headers: bytes) -> bytes:
    """A complete `200 OK` response with a Content-Length body."""
    lines = [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body), *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port on 127.0.0.1 whose connects hang: its accept queue is full and nobody accepts,
    so the kernel drops every further SYN (the client would retransmit for seconds)."""
    listener = socket.socket()
    listener.bind((LOCALHOST, 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((LOCALHOST, port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


async def eventually(condition: Callable[[], bool], timeout: float = SAFE) -> None:  # noqa: ASYNC109
    """Wait until `condition()` holds; fail the test when it does not within `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition did not come true in time")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def open_pool(**options: Any) -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(**options)
    try:
        yield pool
    finally:
        await pool.aclose()


async def fetch(
    pool: ConnectionPool, server: RawServer, target: bytes = b"/", **options: Any
) -> tuple[Response, bytes]:
    """GET `target` from `server` and read the whole body."""
    options.setdefault("read_timeout", SAFE)
    response = await pool.request(server.origin, server.head(target), **options)
    return response, await response.read()
