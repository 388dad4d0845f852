"""An httpx transport whose connection pool costs O(1) per request.

httpcore's `AsyncConnectionPool` re-examines every pooled connection whenever a request
starts or a response is closed (`_assign_requests_to_connections`): `has_expired()` of each
idle connection polls its socket and, through anyio, calls getpeername(); the surplus-idle
check builds a list of all connections for every idle one. With hundreds of concurrent
streams (the bot holds one per answer being written) that is O(n²) work and syscalls per
request: in the throughput benchmark it was the largest single cost of the whole bot.

`LeanConnectionPool` keeps the same httpcore connection objects, but idle connections wait in
one LIFO stack per origin and only the connection about to be reused is checked. Stale ones
at the bottom of a stack are reaped one per release, so a closed socket does not linger.
In-flight requests are bounded by `max_connections` (FIFO wait, `pool` timeout honoured),
idle ones by `max_keepalive_connections`. HTTP/1.1 only, which is what the bot speaks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio
import httpcore
import httpx

from services.llm.asyncio_backend import AsyncioBackend

__all__ = ["LeanConnectionPool", "lean_transport"]

log = logging.getLogger(__name__)

_Key = tuple[bytes, bytes, int]


def _key(origin: httpcore.Origin) -> _Key:
    return (origin.scheme, origin.host, origin.port)


class LeanConnectionPool:
    """Drop-in for `httpcore.AsyncConnectionPool` inside `httpx.AsyncHTTPTransport`."""

    def __init__(
        self,
        *,
        ssl_context: Any = None,
        max_connections: int | None = 100,
        max_keepalive_connections: int | None = 20,
        keepalive_expiry: float | None = 5.0,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        unlimited = max_keepalive_connections is None
        self._max_idle = 2**31 if unlimited else max_keepalive_connections
        self._network_backend = network_backend
        self._slots = asyncio.Semaphore(max_connections) if max_connections else None
        self._idle: dict[_Key, deque[httpcore.AsyncHTTPConnection]] = {}
        self._idle_count = 0
        self._all: set[httpcore.AsyncHTTPConnection] = set()
        self._closed = False

    # --- what httpx.AsyncHTTPTransport calls ------------------------------------------------

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        timeouts = request.extensions.get("timeout", {})
        await self._acquire_slot(timeouts.get("pool"))
        try:
            key = _key(request.url.origin)
            while True:
                connection, reused = await self._checkout(key, request.url.origin)
                try:
                    response = await connection.handle_async_request(request)
                except httpcore.ConnectionNotAvailable:
                    # A reused connection can turn out to be unusable only once tried; a new
                    # one would fail the same way again, so that is reported.
                    self._all.discard(connection)
                    if not reused:
                        raise
                    continue
                except BaseException:
                    # httpcore closes a connection whose request failed; closing it again
                    # is harmless and keeps this pool's bookkeeping right.
                    await self._discard(connection)
                    raise
                break
        except BaseException:
            self._release_slot()
            raise
        return httpcore.Response(
            status=response.status,
            headers=response.headers,
            content=_PooledStream(response.stream, self, connection, key),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        self._closed = True
        connections, self._all = list(self._all), set()
        self._idle.clear()
        self._idle_count = 0
        for connection in connections:
            await connection.aclose()

    async def __aenter__(self) -> LeanConnectionPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def connections(self) -> list[httpcore.AsyncHTTPConnection]:
        return list(self._all)

    @property
    def idle_connections(self) -> int:
        return self._idle_count

    # --- internals --------------------------------------------------------------------------

    async def _acquire_slot(self, wait: float | None) -> None:
        if self._slots is None:
            return
        if wait is None:
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(wait):
                await self._slots.acquire()
        except TimeoutError:
            raise httpcore.PoolTimeout("timed out waiting for a free connection") from None

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    async def _checkout(
        self, key: _Key, origin: httpcore.Origin
    ) -> tuple[httpcore.AsyncHTTPConnection, bool]:
        stack = self._idle.get(key)
        while stack:
            connection = stack.pop()
            self._idle_count -= 1
            if connection.is_available() and not connection.has_expired():
                return connection, True
            await self._discard(connection)
        connection = httpcore.AsyncHTTPConnection(
            origin=origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            network_backend=self._network_backend,
        )
        self._all.add(connection)
        return connection, False

    async def _checkin(self, connection: httpcore.AsyncHTTPConnection, key: _Key) -> None:
        """After a response was closed: keep the connection for reuse, or close it."""
        self._release_slot()
        if self._closed or not connection.is_idle() or self._idle_count >= self._max_idle:
            await self._discard(connection)
            return
        stack = self._idle.get(key)
        if stack is None:
            stack = self._idle[key] = deque()
        # The oldest idle connection is the likeliest to have expired: reap it, one per
        # release, so stale sockets do not pile up at the bottom of the stack.
        if stack and stack[0].has_expired():
            stale = stack.popleft()
            self._idle_count -= 1
            await self._discard(stale)
        stack.append(connection)
        self._idle_count += 1

    async def _discard(self, connection: httpcore.AsyncHTTPConnection) -> None:
        self._all.discard(connection)
        with anyio.CancelScope(shield=True):
            try:
                await connection.aclose()
            except Exception:  # closing a broken socket must not fail the caller
                log.debug("closing a pooled connection failed", exc_info=True)


class _PooledStream:
    """The response body; closing it hands the connection back to the pool."""

    __slots__ = ("_closed", "_connection", "_key", "_pool", "_stream")

    def __init__(
        self,
        stream: Iterable[bytes] | Any,
        pool: LeanConnectionPool,
        connection: httpcore.AsyncHTTPConnection,
        key: _Key,
    ) -> None:
        self._stream = stream
        self._pool = pool
        self._connection = connection
        self._key = key
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with anyio.CancelScope(shield=True):
                if hasattr(self._stream, "aclose"):
                    await self._stream.aclose()
        finally:
            await self._pool._checkin(self._connection, self._key)


def lean_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """An `httpx.AsyncHTTPTransport` (same request mapping, errors and TLS defaults) running
    on a `LeanConnectionPool` sized by `limits`, with sockets on asyncio directly."""
    ssl_context = httpx.create_ssl_context()
    transport = httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits)
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        # An httpx release that keeps its pool elsewhere: its own pool still works.
        log.warning("httpx internals changed; using httpx's own connection pool")
        return transport
    transport._pool = LeanConnectionPool(  # type: ignore[assignment]
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend(),
    )
    return transport
