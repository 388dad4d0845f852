"""httpcore's network backend on asyncio: data, EOF, timeouts and errors as httpcore expects."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpcore
import pytest

from services.llm.asyncio_backend import AsyncioBackend


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """Echoes what it reads; the test can reach the server side of each connection."""
    peers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)
        while data := await reader.read(1024):
            if data == b"quiet":
                continue
            writer.write(data)
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield port, peers
    finally:
        srv.close()
        for peer in peers:
            peer.close()


async def test_round_trip_and_addresses(server: tuple[int, list[asyncio.StreamWriter]]) -> None:
    port, _ = server
    nodelay = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = await AsyncioBackend().connect_tcp(
        "127.0.0.1", port, timeout=5, socket_options=[nodelay]
    )
    await stream.write(b"ping", timeout=5)
    assert await stream.read(1024, timeout=5) == b"ping"
    assert stream.get_extra_info("server_addr")[1] == port
    assert stream.get_extra_info("client_addr")[0] == "127.0.0.1"
    assert stream.get_extra_info("ssl_object") is None
    assert stream.get_extra_info("is_readable") is False
    await stream.aclose()


async def test_server_close_is_readable_then_eof(
    server: tuple[int, list[asyncio.StreamWriter]],
) -> None:
    port, peers = server
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", port)
    await stream.write(b"hello")
    assert await stream.read(1024) == b"hello"
    peers[0].close()  # the server drops an idle keep-alive connection
    for _ in range(100):
        if stream.get_extra_info("is_readable"):
            break
        await asyncio.sleep(0.01)
    # The pool must see the idle connection as unusable, and a read returns EOF.
    assert stream.get_extra_info("is_readable") is True
    assert await stream.read(1024) == b""
    await stream.aclose()


async def test_read_timeout_is_httpcore_read_timeout(
    server: tuple[int, list[asyncio.StreamWriter]],
) -> None:
    port, _ = server
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", port)
    await stream.write(b"quiet")
    with pytest.raises(httpcore.ReadTimeout):
        await stream.read(1024, timeout=0.05)
    await stream.aclose()


async def test_write_after_close_is_httpcore_write_error(
    server: tuple[int, list[asyncio.StreamWriter]],
) -> None:
    port, _ = server
    stream = await AsyncioBackend().connect_tcp("127.0.0.1", port)
    await stream.aclose()
    with pytest.raises(httpcore.WriteError):
        await stream.write(b"late")


async def test_refused_connection_is_httpcore_connect_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpcore.ConnectError):
        await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)


async def test_connect_timeout_is_httpcore_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never_connects(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(3600)

    # An unanswered SYN, without depending on how this machine's network treats one.
    monkeypatch.setattr(asyncio, "open_connection", never_connects)
    with pytest.raises(httpcore.ConnectTimeout):
        await AsyncioBackend().connect_tcp("192.0.2.1", 80, timeout=0.05)
