"""httpcore's network backend on asyncio streams, without anyio in between.

httpcore's default backend goes through anyio: every socket read and write enters a cancel
scope and a `fail_after` context manager, and every new connection a task group. With an
answer streamed in many small chunks and hundreds of connections opened at once, that was a
visible share of the bot's CPU. This backend calls asyncio directly (and so uvloop, when it
runs the loop), with the same timeouts and the same httpcore exceptions.
"""

# ruff: noqa: ASYNC109  (the `timeout` parameters are httpcore's interface)

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpcore

__all__ = ["AsyncioBackend"]

SocketOption = tuple[int, int, int | bytes] | tuple[int, int, None, int]


@contextlib.asynccontextmanager
async def _deadline(
    seconds: float | None, on_timeout: type[Exception], on_error: type[Exception]
) -> AsyncIterator[None]:
    try:
        if seconds is None:
            yield
        else:
            async with asyncio.timeout(seconds):
                yield
    except TimeoutError as error:  # before OSError: TimeoutError is one
        raise on_timeout(str(error) or "timed out") from error
    except OSError as error:  # includes ssl.SSLError
        raise on_error(str(error) or type(error).__name__) from error


class _Stream(httpcore.AsyncNetworkStream):
    __slots__ = ("_reader", "_writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    # read() and write() are the hot path (every chunk of every answer): their error
    # mapping is written out rather than going through `_deadline`, an async context
    # manager per call costing about what this backend saves.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as error:
            raise httpcore.ReadTimeout(str(error) or "read timed out") from error
        except OSError as error:
            raise httpcore.ReadError(str(error) or type(error).__name__) from error

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            if self._writer.is_closing():
                raise ConnectionResetError("the connection is closed")
            self._writer.write(buffer)
            if timeout is None:
                await self._writer.drain()
                return
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as error:
            raise httpcore.WriteTimeout(str(error) or "write timed out") from error
        except OSError as error:
            raise httpcore.WriteError(str(error) or type(error).__name__) from error

    async def aclose(self) -> None:
        # Not waiting for the close: a TLS peer that never answers close_notify must not
        # hold the caller. The transport flushes what is buffered, then closes.
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        async with _deadline(timeout, httpcore.ConnectTimeout, httpcore.ConnectError):
            await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # An idle HTTP/1.1 connection with anything to read was closed by the server.
            return self._reader.at_eof() or self._writer.is_closing()
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info in ("ssl_object", "socket"):
            return self._writer.get_extra_info(info)
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        async with _deadline(timeout, httpcore.ConnectTimeout, httpcore.ConnectError):
            reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        _apply(writer, socket_options)
        return _Stream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        async with _deadline(timeout, httpcore.ConnectTimeout, httpcore.ConnectError):
            reader, writer = await asyncio.open_unix_connection(path)
        _apply(writer, socket_options)
        return _Stream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _apply(writer: asyncio.StreamWriter, options: Iterable[SocketOption] | None) -> None:
    if not options:
        return
    sock: socket.socket = writer.get_extra_info("socket")
    for option in options:
        sock.setsockopt(*option)  # type: ignore[arg-type]
