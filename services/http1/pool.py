"""Keep-alive connections per origin, and the response a request returns.

Idle connections wait in one LIFO stack per origin: the most recently used one (the one
least likely to have been closed by the server) is reused first, and only that one is
checked. A stale connection at the bottom of a stack is reaped on each release, so sockets
do not linger. Requests in flight are bounded by `max_connections` (FIFO wait, the pool
timeout honoured); idle connections by `max_idle` per origin. All of it is O(1) per request
whatever the number of open streams.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

import aiohappyeyeballs

from services.http1.connection import Connection
from services.http1.errors import ConnectError, ConnectTimeout, PoolTimeout

__all__ = ["ConnectionPool", "Origin", "Response", "default_ssl_context"]

DEFAULT_PORTS = {"http": 80, "https": 443}
# How long one address may try to connect before the next one starts too (RFC 8305).
HAPPY_EYEBALLS_DELAY = 0.25


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> tuple[Origin, bytes]:
        """The origin of an absolute http(s) URL and its request target (path and query)."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("not an absolute http(s) URL")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        port = parts.port or DEFAULT_PORTS[parts.scheme]
        return cls(parts.scheme, parts.hostname, port), target.encode("ascii")

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def host_header(self) -> bytes:
        """The `Host` value: the port only when it is not the scheme's, IPv6 in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != DEFAULT_PORTS[self.scheme]:
            host = f"{host}:{self.port}"
        return host.encode("idna")


def default_ssl_context() -> ssl.SSLContext:
    """Certificate checks against certifi's roots (what httpx and aiogram use), else the
    system's."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with httpx and aiogram
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _numeric_address(origin: Origin) -> list[Any] | None:
    """The address of an IP literal, without the resolver's thread round trip."""
    try:
        ip = ipaddress.ip_address(origin.host)
    except ValueError:
        return None
    if ip.version == 6:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 0, "", (origin.host, origin.port, 0, 0))]
    return [(socket.AF_INET, socket.SOCK_STREAM, 0, "", (origin.host, origin.port))]


class Response:
    """Status and headers of a response whose body is read from its connection.

    Read it to the end (`read()`, or iterate until it stops) and close it: the connection
    then goes back to the pool. Closing it early closes the connection instead, which is
    how the server learns that nobody reads any more.
    """

    __slots__ = (
        "_closed",
        "_connection",
        "_origin",
        "_pool",
        "_read_timeout",
        "headers",
        "reason",
        "status",
    )

    def __init__(
        self,
        pool: ConnectionPool,
        origin: Origin,
        connection: Connection,
        read_timeout: float | None,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._connection = connection
        self._read_timeout = read_timeout
        self._closed = False
        self.status = connection.status
        self.reason = connection.reason
        self.headers = connection.headers

    async def read_chunk(self) -> bytes:
        """What has arrived of the body (waiting when nothing has); b"" at its end."""
        if self._closed:
            return b""
        return await self._connection.read_chunk(self._read_timeout)

    async def read(self) -> bytes:
        """The whole body; the response is closed afterwards."""
        try:
            parts = []
            while chunk := await self.read_chunk():
                parts.append(chunk)
        finally:
            self.close()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await self.read_chunk():
            yield chunk

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool._release(self._origin, self._connection)

    async def aclose(self) -> None:
        self.close()


class ConnectionPool:
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = 1000,
        max_idle: int = 100,
        idle_expiry: float = 15.0,
        connect_timeout: float | None = 10.0,
    ) -> None:
        self._ssl_context = ssl_context
        self._slots = asyncio.Semaphore(max_connections) if max_connections else None
        self._max_idle = max_idle
        self._expiry = idle_expiry
        self._connect_timeout = connect_timeout
        self._idle: dict[Origin, deque[Connection]] = {}
        self._all: set[Connection] = set()
        self._closed = False

    @property
    def connections(self) -> int:
        """Open connections, idle or in use."""
        return len(self._all)

    def idle(self, origin: Origin) -> int:
        return len(self._idle.get(origin, ()))

    async def request(
        self,
        origin: Origin,
        head: bytes,
        body: bytes | AsyncIterable[bytes] | None = None,
        *,
        chunked: bool = False,
        head_only: bool = False,
        connect_timeout: float | Literal["default"] | None = "default",
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        pool_timeout: float | None = None,
    ) -> Response:
        """Send `head` (from `encode_request_head`) and `body`; return once the response's
        status and headers are in. Raises an `HTTPClientError` subclass.

        A timeout of None means no limit; `connect_timeout` left at "default" is the pool's.
        """
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        slots = self._slots
        if slots is not None:
            if slots.locked():
                try:
                    async with asyncio.timeout(pool_timeout):
                        await slots.acquire()
                except TimeoutError:
                    raise PoolTimeout(f"no free connection within {pool_timeout:g} s") from None
            else:
                await slots.acquire()  # returns at once: a free slot
            if self._closed:  # closed while this request waited for a slot
                slots.release()
                raise RuntimeError("the connection pool is closed")
        connection: Connection | None = None
        try:
            connection = self._checkout(origin)
            if connection is None:
                connection = await self._connect(origin, connect_timeout)
            await connection.send(
                head,
                body,
                chunked=chunked,
                head_only=head_only,
                read_timeout=read_timeout,
                write_timeout=write_timeout,
            )
        except BaseException:
            if connection is not None:
                connection.close()
                self._all.discard(connection)
            if slots is not None:
                slots.release()
            raise
        return Response(self, origin, connection, read_timeout)

    async def aclose(self) -> None:
        self._closed = True
        connections, self._all = self._all, set()
        self._idle.clear()
        for connection in connections:
            connection.close()
        # Let the transports deliver connection_lost before the loop may close.
        await asyncio.sleep(0)

    # --- internals ---------------------------------------------------------------------------

    def _checkout(self, origin: Origin) -> Connection | None:
        stack = self._idle.get(origin)
        if not stack:
            return None
        oldest = asyncio.get_running_loop().time() - self._expiry
        while stack:
            connection = stack.pop()
            if not connection.closed and connection.idle_since >= oldest:
                return connection
            connection.close()
            self._all.discard(connection)
        return None

    async def _connect(
        self, origin: Origin, limit: float | Literal["default"] | None
    ) -> Connection:
        loop = asyncio.get_running_loop()
        connection = Connection(loop, origin.label)
        secure = origin.scheme == "https"
        context = None
        if secure:
            if self._ssl_context is None:
                self._ssl_context = default_ssl_context()
            context = self._ssl_context
        if limit == "default":
            limit = self._connect_timeout
        try:
            async with asyncio.timeout(limit):
                # Every address the name resolves to, raced 250 ms apart (RFC 8305): on a
                # host whose IPv6 route is broken, IPv4 is tried without waiting out the
                # timeout. uvloop's create_connection cannot do this itself, and the race
                # costs more than the loop's own connect, so one address goes direct.
                addresses = _numeric_address(origin) or await loop.getaddrinfo(
                    origin.host, origin.port, type=socket.SOCK_STREAM
                )
                hostname = origin.host if secure else None
                if len(addresses) == 1:
                    ip, port = addresses[0][4][:2]
                    await loop.create_connection(
                        lambda: connection, ip, port, ssl=context, server_hostname=hostname
                    )
                else:
                    sock = await aiohappyeyeballs.start_connection(
                        addresses, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1
                    )
                    try:
                        await loop.create_connection(
                            lambda: connection, sock=sock, ssl=context, server_hostname=hostname
                        )
                    except BaseException:
                        sock.close()
                        raise
        except TimeoutError:
            raise ConnectTimeout(f"could not connect to {origin.label} in {limit} s") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise ConnectError(f"could not connect to {origin.label}: {exc}") from exc
        self._all.add(connection)
        return connection

    def _release(self, origin: Origin, connection: Connection) -> None:
        if self._slots is not None:
            self._slots.release()
        connection.done()
        if not connection.reusable or self._closed:
            connection.close()
            self._all.discard(connection)
            return
        stack = self._idle.get(origin)
        if stack is None:
            stack = self._idle[origin] = deque()
        if len(stack) >= self._max_idle:
            connection.close()
            self._all.discard(connection)
            return
        now = asyncio.get_running_loop().time()
        connection.idle_since = now
        stack.append(connection)
        bottom = stack[0]
        if bottom is not connection and (bottom.closed or bottom.idle_since < now - self._expiry):
            stack.popleft()
            bottom.close()
            self._all.discard(bottom)
