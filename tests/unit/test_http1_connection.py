"""The lean HTTP/1.1 client on the wire: framing, keep-alive pooling, timeouts and failures.

The wire tests run a raw server (`tests.fakes.raw_http`) on 127.0.0.1 that answers with
hand-written bytes, so each edge of the protocol (split reads, 1xx, close-delimited bodies, a
server that stalls or hangs up) is exercised exactly.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.http1 import (
    ConnectError,
    ConnectionPool,
    ConnectTimeout,
    Origin,
    PoolTimeout,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    WriteTimeout,
    encode_request_head,
)
from services.http1.connection import HIGH_WATER, Connection
from tests.fakes.raw_http import (
    LOCALHOST,
    SAFE,
    Handler,
    Peer,
    RawServer,
    answering,
    answering_once,
    blackhole,
    closed_port,
    eventually,
    fetch,
    ok,
    open_pool,
)


def idle_connections(pool: ConnectionPool, origin: Origin) -> list[Connection]:
    """The pool's idle connections for `origin`, oldest first (an internal, for inspection)."""
    return list(pool._idle.get(origin, ()))


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    async with open_pool() as pool:
        yield pool


# --- Origin and the request head -----------------------------------------------------------


ORIGINS = [
    ("http://example.com", Origin("http", "example.com", 80), b"/"),
    (
        "https://api.telegram.org/bot1:x/getMe",
        Origin("https", "api.telegram.org", 443),
        b"/bot1:x/getMe",
    ),
    (
        "http://127.0.0.1:8080/v1/c?stream=1&q=a%20b",
        Origin("http", LOCALHOST, 8080),
        b"/v1/c?stream=1&q=a%20b",
    ),
    ("HTTPS://Example.COM:8443/a#fragment", Origin("https", "example.com", 8443), b"/a"),
    ("http://[::1]:9000/", Origin("http", "::1", 9000), b"/"),
]


@pytest.mark.parametrize(("url", "origin", "target"), ORIGINS)
def test_origin_of_parses_scheme_host_port_and_target(
    url: str, origin: Origin, target: bytes
) -> None:
    assert Origin.of(url) == (origin, target)


def test_origin_label_is_host_and_port() -> None:
    assert Origin("https", "api.telegram.org", 443).label == "api.telegram.org:443"


def test_origin_host_header_names_the_port_only_when_it_is_not_the_default() -> None:
    assert Origin("https", "api.telegram.org", 443).host_header == b"api.telegram.org"
    assert Origin("http", "127.0.0.1", 8081).host_header == b"127.0.0.1:8081"
    assert Origin("http", "::1", 80).host_header == b"[::1]"
    assert Origin("https", "::1", 8443).host_header == b"[::1]:8443"


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/file", "ws://example.com/", "example.com/path", "/relative", "http://"],
)
def test_origin_of_refuses_what_is_not_an_absolute_http_url(url: str) -> None:
    with pytest.raises(ValueError):
        Origin.of(url)


def test_encode_request_head_produces_the_exact_bytes() -> None:
    head = encode_request_head(
        b"POST", b"/v1/x?y=1", [(b"Host", b"h:81"), (b"Content-Length", b"2")]
    )
    assert head == b"POST /v1/x?y=1 HTTP/1.1\r\nHost: h:81\r\nContent-Length: 2\r\n\r\n"
    assert encode_request_head(b"GET", b"/") == b"GET / HTTP/1.1\r\n\r\n"


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        (b"GET", b"/a\r\nX-Injected: 1", []),
        (b"GET", b"/a\nb", []),
        (b"GET\r\n", b"/", []),
        (b"GET", b"/", [(b"X-A\r\nX-Injected", b"1")]),
        (b"GET", b"/", [(b"X-A", b"1\r\nX-Injected: 1")]),
        (b"GET", b"/", [(b"X-A", b"1\r")]),
        (b"GET", b"/", [(b"X-A", b"1\n")]),
        (b"GET", b"/", [(b"Host", b"h"), (b"X-A", b"\r\n\r\nGET /smuggled HTTP/1.1")]),
    ],
)
def test_encode_request_head_refuses_cr_or_lf(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    with pytest.raises(ValueError):
        encode_request_head(method, target, headers)


# --- what the server receives --------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 9, 100 * 1024], ids=["no-body", "small", "large"])
async def test_request_head_and_body_reach_the_server_exactly(
    pool: ConnectionPool, size: int
) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    async with RawServer(answering(ok())) as server:
        head = server.head(
            b"/v1/upload?x=1",
            method=b"POST",
            headers=((b"Content-Length", b"%d" % size), (b"X-Custom", b"a b")),
        )
        response = await pool.request(server.origin, head, body or None, read_timeout=SAFE)
        assert await response.read() == b"ok"
    [received] = server.requests
    assert (received.method, received.target) == (b"POST", b"/v1/upload?x=1")
    assert received.head == head
    assert received.body == body


async def test_chunked_request_body_from_an_async_iterator(pool: ConnectionPool) -> None:
    big = b"0123456789" * 7000  # 70000 bytes: a five-digit hex size

    async def pieces() -> AsyncIterator[bytes]:
        yield b"hello"
        yield b""  # an empty piece must not end the body early
        yield big
        yield b"!"

    async with RawServer(answering(ok())) as server:
        head = server.head(method=b"POST", headers=((b"Transfer-Encoding", b"chunked"),))
        response = await pool.request(
            server.origin, head, pieces(), chunked=True, read_timeout=SAFE
        )
        assert await response.read() == b"ok"
    [received] = server.requests
    assert received.head == head
    assert received.body == (
        b"5\r\nhello\r\n" + b"11170\r\n" + big + b"\r\n" + b"1\r\n!\r\n" + b"0\r\n\r\n"
    )


async def test_unchunked_request_body_from_an_async_iterator_is_sent_as_is(
    pool: ConnectionPool,
) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        yield b'{"a": '
        yield b"1}"

    async with RawServer(answering(ok())) as server:
        head = server.head(method=b"POST", headers=((b"Content-Length", b"8"),))
        response = await pool.request(server.origin, head, pieces(), read_timeout=SAFE)
        assert await response.read() == b"ok"
    assert server.requests[0].body == b'{"a": 1}'


# --- response framing ----------------------------------------------------------------------


async def test_content_length_body_with_status_reason_and_repeated_headers(
    pool: ConnectionPool,
) -> None:
    answer = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello"
    async with RawServer(answering(answer)) as server:
        response, body = await fetch(pool, server)
    assert (response.status, response.reason, body) == (201, b"Created", b"hello")
    assert response.headers == [(b"Content-Length", b"5"), (b"X-A", b"1"), (b"X-A", b"2")]


async def test_chunked_body_split_across_writes_and_mid_chunk_header(
    pool: ConnectionPool,
) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n1",  # the next chunk's size line is cut: "1" + "0" is 0x10
        b"0\r\n0123456789abcdef\r\n",
        b"3\r\nxyz\r\n0\r\n",
        b"\r\n",
    )
    async with RawServer(answering(*answer)) as server:
        _, first = await fetch(pool, server)
        _, second = await fetch(pool, server)
    assert first == second == b"hello0123456789abcdefxyz"
    assert server.connections == 1  # the chunked body was read to its end: reused


async def test_trailers_of_a_chunked_body_are_not_taken_for_headers(pool: ConnectionPool) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
        b"2\r\nok\r\n0\r\nX-Checksum: 1234\r\n\r\n",
    )
    async with RawServer(answering(*answer)) as server:
        response, body = await fetch(pool, server)
        _, again = await fetch(pool, server)
    assert body == again == b"ok"
    assert [name for name, _ in response.headers] == [b"Transfer-Encoding", b"Trailer"]
    assert server.connections == 1


async def test_response_iterates_over_body_chunks_as_they_arrive(pool: ConnectionPool) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"6\r\ndata: \r\n",
        b"3\r\none\r\n",
        b"3\r\ntwo\r\n0\r\n\r\n",
    )
    async with RawServer(answering(*answer)) as server:
        response = await pool.request(server.origin, server.head(), read_timeout=SAFE)
        chunks = [chunk async for chunk in response]
        response.close()
        assert pool.idle(server.origin) == 1
    assert chunks == [b"data: ", b"one", b"two"]


async def test_close_delimited_body_is_read_to_the_end_and_not_reused(
    pool: ConnectionPool,
) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n\r\n",
        b"part one, ",
        b"part two",
    )
    async with RawServer(answering_once(*answer, then_close=True)) as server:
        _, body = await fetch(pool, server)
        assert body == b"part one, part two"
        assert pool.connections == 0
        _, again = await fetch(pool, server)
    assert again == body
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_connection_the_server_will_not_keep_is_closed_not_reused(
    pool: ConnectionPool, answer: bytes
) -> None:
    async with RawServer(answering_once(answer, then_close=False)) as server:
        _, body = await fetch(pool, server)
        assert body == b"ok"
        assert pool.connections == 0
        await eventually(lambda: server.eofs == 1)  # the client closed it
        _, again = await fetch(pool, server)
    assert again == b"ok"
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 10\r\n\r\n',
    ],
    ids=["204", "304"],
)
async def test_statuses_without_a_body_complete_at_once_and_are_reused(
    pool: ConnectionPool, answer: bytes
) -> None:
    async with RawServer(answering(answer)) as server:
        first, body = await fetch(pool, server)
        _, again = await fetch(pool, server)
    assert first.status in (204, 304)
    assert body == again == b""
    assert server.connections == 1


@pytest.mark.parametrize("split", [True, False], ids=["separate-reads", "one-read"])
async def test_100_continue_is_skipped_for_the_real_response(
    pool: ConnectionPool, split: bool
) -> None:
    interim = b"HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
    final = b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone"
    answer = (interim, final) if split else (interim + final,)
    async with RawServer(answering(*answer)) as server:
        response, body = await fetch(pool, server)
        _, again = await fetch(pool, server)
    assert (response.status, response.reason, body) == (201, b"Created", b"done")
    assert response.headers == [(b"Content-Length", b"4")]
    assert again == b"done"
    assert server.connections == 1


async def test_status_line_and_header_split_across_reads_are_assembled(
    pool: ConnectionPool,
) -> None:
    answer = (
        b"HTTP/1.1 200 Very",
        b" Good Indeed\r\nX-Lo",
        b"ng-Name: a va",
        b"lue\r\nContent-Length: 2\r\n\r\nok",
    )
    async with RawServer(answering(*answer)) as server:
        response, body = await fetch(pool, server)
    assert response.reason == b"Very Good Indeed"
    assert (b"X-Long-Name", b"a value") in response.headers
    assert body == b"ok"


async def test_body_above_high_water_pauses_reading_and_arrives_intact(
    pool: ConnectionPool,
) -> None:
    body = bytes(range(256)) * (8 * 1024)  # 2 MiB
    async with RawServer(answering(ok(body))) as server:
        response = await pool.request(server.origin, server.head(), read_timeout=SAFE)
        await asyncio.sleep(0.1)  # loopback could deliver all of it meanwhile
        first = await response.read_chunk()
        # Reading stopped once HIGH_WATER was buffered (plus what the last read brought).
        assert len(first) <= 2 * HIGH_WATER
        rest = await response.read()  # and resumed as the body was drained
        assert first + rest == body
        _, again = await fetch(pool, server)
    assert again == body
    assert server.connections == 1


async def test_head_response_does_not_wait_for_the_announced_body(pool: ConnectionPool) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    async with RawServer(answering(answer)) as server:
        response = await pool.request(
            server.origin, server.head(method=b"HEAD"), head_only=True, read_timeout=SAFE
        )
        assert response.status == 200
        assert await response.read() == b""
        assert pool.connections == 0  # httptools would expect the body: not reused


async def test_a_second_response_in_the_same_read_is_not_taken_for_the_body(
    pool: ConnectionPool,
) -> None:
    async with RawServer(answering(ok(b"first") + ok(b"second"))) as server:
        _, body = await fetch(pool, server)
        assert body == b"first"
        assert pool.connections == 0  # a server answering twice is not trusted again
        _, again = await fetch(pool, server)
    assert again == b"first"
    assert server.connections == 2


async def test_bytes_after_a_complete_response_retire_the_connection(
    pool: ConnectionPool,
) -> None:
    unsolicited = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra"

    async def answer_twice(peer: Peer) -> None:
        await peer.request()
        await peer.send(ok(b"first"), unsolicited)  # the second while the first is held
        await peer.wait_for_eof()

    async with RawServer(answer_twice) as server:
        response = await pool.request(server.origin, server.head(), read_timeout=SAFE)
        await eventually(lambda: server.eofs == 1)  # closed while the response was held
        assert await response.read() == b"first"
        assert pool.connections == 0


# --- broken responses ----------------------------------------------------------------------


async def test_malformed_response_raises_remote_protocol_error(pool: ConnectionPool) -> None:
    async with RawServer(answering(b"HELLO THERE\r\n\r\n")) as server:
        with pytest.raises(RemoteProtocolError, match=re.escape(server.label)):
            await pool.request(server.origin, server.head(), read_timeout=SAFE)
        assert pool.connections == 0


async def test_malformed_chunk_raises_remote_protocol_error_while_reading(
    pool: ConnectionPool,
) -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nwhat\r\n"
    async with RawServer(answering(answer)) as server:
        response = await pool.request(server.origin, server.head(), read_timeout=SAFE)
        with pytest.raises(RemoteProtocolError):
            await response.read()
        assert pool.connections == 0


async def test_server_closing_before_responding_raises_remote_protocol_error(
    pool: ConnectionPool,
) -> None:
    async def read_and_hang_up(peer: Peer) -> None:
        await peer.request()

    async with RawServer(read_and_hang_up) as server:
        with pytest.raises(RemoteProtocolError, match=re.escape(server.label)):
            await pool.request(server.origin, server.head(), read_timeout=SAFE)
        assert pool.connections == 0


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_server_closing_mid_body_raises_read_error(
    pool: ConnectionPool, partial: bytes
) -> None:
    async with RawServer(answering_once(partial, then_close=True)) as server:
        response = await pool.request(server.origin, server.head(), read_timeout=SAFE)
        with pytest.raises(ReadError, match=re.escape(server.label)):
            await response.read()
        assert pool.connections == 0


# --- timeouts and connection failures ------------------------------------------------------


async def test_read_timeout_when_the_server_never_answers_names_host_and_port(
    pool: ConnectionPool,
) -> None:
    async def never_answer(peer: Peer) -> None:
        await peer.request()
        await peer.wait_for_eof()

    async with RawServer(never_answer) as server:
        started = time.monotonic()
        async with asyncio.timeout(SAFE):
            with pytest.raises(ReadTimeout) as caught:
                await pool.request(
                    server.origin, server.head(b"/bot42:SECRET/getMe"), read_timeout=0.1
                )
        assert time.monotonic() - started < 1.0
        message = str(caught.value)
        assert server.label in message and "0.1 s" in message
        assert "SECRET" not in message  # the target (a Bot API token) is never in a message
        await eventually(lambda: server.eofs == 1)  # the timed-out connection was closed
        assert pool.connections == 0


async def test_read_timeout_when_the_body_stalls(pool: ConnectionPool) -> None:
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    async with RawServer(answering_once(partial, then_close=False)) as server:
        response = await pool.request(server.origin, server.head(), read_timeout=0.1)
        assert await response.read_chunk() == b"abc"
        async with asyncio.timeout(SAFE):
            with pytest.raises(ReadTimeout, match=re.escape(server.label)):
                await response.read()
        await eventually(lambda: server.eofs == 1)
        assert pool.connections == 0


async def test_write_timeout_when_the_server_takes_nothing(pool: ConnectionPool) -> None:
    async def read_head_only(peer: Peer) -> None:
        await peer.reader.readuntil(b"\r\n\r\n")
        await asyncio.Event().wait()  # never reads the body; cancelled at the end

    body = bytes(32 * 1024 * 1024)  # far more than the socket buffers hold
    async with RawServer(read_head_only) as server:
        head = server.head(method=b"POST", headers=((b"Content-Length", b"%d" % len(body)),))
        async with asyncio.timeout(SAFE):
            with pytest.raises(WriteTimeout, match=re.escape(server.label)):
                await pool.request(server.origin, head, body, write_timeout=0.1, read_timeout=SAFE)
        assert pool.connections == 0


async def test_connect_to_a_closed_port_raises_connect_error(pool: ConnectionPool) -> None:
    origin = Origin("http", LOCALHOST, closed_port())
    with pytest.raises(ConnectError, match=re.escape(origin.label)):
        await pool.request(origin, b"GET / HTTP/1.1\r\n\r\n")
    assert pool.connections == 0


async def test_connect_timeout_is_a_connect_error_naming_host_and_port(
    pool: ConnectionPool,
) -> None:
    with blackhole() as port:
        origin = Origin("http", LOCALHOST, port)
        async with asyncio.timeout(SAFE):
            with pytest.raises(ConnectTimeout, match=re.escape(f"{origin.label} in 0.05 s")):
                await pool.request(origin, b"GET / HTTP/1.1\r\n\r\n", connect_timeout=0.05)
    assert pool.connections == 0


async def test_an_address_that_hangs_does_not_hold_up_the_next_one(
    pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name with two addresses, the first unreachable (say, a broken IPv6 route): the
    # second is tried after HAPPY_EYEBALLS_DELAY, well within the connect timeout.
    loop = asyncio.get_running_loop()
    with blackhole() as dead:
        async with RawServer(answering(ok())) as server:

            async def two_addresses(host: str, port: int, **kwargs: Any) -> list[Any]:
                stream = socket.SOCK_STREAM
                return [
                    (socket.AF_INET, stream, 6, "", (LOCALHOST, dead)),
                    (socket.AF_INET, stream, 6, "", (LOCALHOST, server.port)),
                ]

            monkeypatch.setattr(loop, "getaddrinfo", two_addresses)
            started = time.monotonic()
            response = await pool.request(
                Origin("http", "dual-stack.test", server.port),
                server.head(),
                connect_timeout=SAFE,
                read_timeout=SAFE,
            )
            assert await response.read() == b"ok"
    assert time.monotonic() - started < SAFE / 2


async def test_failed_connects_give_their_slot_back() -> None:
    origin = Origin("http", LOCALHOST, closed_port())
    async with open_pool(max_connections=1) as pool:
        for _ in range(3):  # a leaked slot would make the second one a PoolTimeout
            with pytest.raises(ConnectError):
                await pool.request(origin, b"GET / HTTP/1.1\r\n\r\n", pool_timeout=0.1)


# --- the pool ------------------------------------------------------------------------------


def routed(hold: Handler) -> Handler:
    """`/hold` runs `hold` (after the request was read); anything else is answered `ok()`."""

    async def handler(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            if request.target == b"/hold":
                await hold(peer)
                return
            await peer.send(ok())

    return handler


async def start_body_then_wait(peer: Peer) -> None:
    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    await peer.wait_for_eof()


async def test_sequential_requests_reuse_one_keep_alive_connection(
    pool: ConnectionPool,
) -> None:
    async with RawServer(answering(ok(b"one"))) as server:
        for _ in range(3):
            _, body = await fetch(pool, server)
            assert body == b"one"
        assert pool.connections == 1
        assert pool.idle(server.origin) == 1
    assert (server.connections, len(server.requests)) == (1, 3)


async def test_most_recently_released_connection_is_reused_first(pool: ConnectionPool) -> None:
    async def name_the_connection(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(ok(b"%d" % peer.index))

    async with RawServer(name_the_connection) as server:
        first, second = await asyncio.gather(
            *(pool.request(server.origin, server.head(), read_timeout=SAFE) for _ in range(2))
        )
        await first.read()
        last_released = await second.read()
        _, body = await fetch(pool, server)
    assert body == last_released
    assert server.connections == 2


async def test_pool_timeout_while_the_only_connection_is_busy() -> None:
    async with (
        RawServer(routed(start_body_then_wait)) as server,
        open_pool(max_connections=1) as pool,
    ):
        held = await pool.request(server.origin, server.head(b"/hold"), read_timeout=SAFE)
        async with asyncio.timeout(SAFE):
            with pytest.raises(PoolTimeout, match=re.escape("0.1 s")):
                await pool.request(server.origin, server.head(), pool_timeout=0.1)
        held.close()
        _, body = await fetch(pool, server, pool_timeout=0.1)  # the slot is free again
    assert body == b"ok"


async def test_closing_a_response_early_closes_its_connection_and_frees_the_slot() -> None:
    async with (
        RawServer(routed(start_body_then_wait)) as server,
        open_pool(max_connections=1) as pool,
    ):
        response = await pool.request(server.origin, server.head(b"/hold"), read_timeout=SAFE)
        assert await response.read_chunk() == b"x" * 10
        response.close()
        assert await response.read_chunk() == b""
        await eventually(lambda: server.eofs == 1)  # how Stop reaches the upstream
        assert pool.connections == 0
        _, body = await fetch(pool, server, pool_timeout=0.1)
    assert body == b"ok"


async def test_cancelled_request_closes_its_connection_and_frees_the_slot() -> None:
    async with RawServer(routed(Peer.wait_for_eof)) as server, open_pool(max_connections=1) as pool:
        waiting = asyncio.create_task(pool.request(server.origin, server.head(b"/hold")))
        await eventually(lambda: len(server.requests) == 1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await eventually(lambda: server.eofs == 1)
        assert pool.connections == 0
        _, body = await fetch(pool, server, pool_timeout=0.1)
    assert body == b"ok"


async def test_idle_connection_closed_by_the_server_is_not_reused(pool: ConnectionPool) -> None:
    async with RawServer(answering_once(ok(b"first"), then_close=True)) as server:
        await fetch(pool, server)
        [idle] = idle_connections(pool, server.origin)
        await eventually(lambda: idle.closed)
        _, body = await fetch(pool, server)
        assert body == b"first"
        assert pool.connections == 1
    assert server.connections == 2


async def test_idle_connection_receiving_bytes_is_retired(pool: ConnectionPool) -> None:
    goodbye = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

    async def answer_then_say_goodbye(peer: Peer) -> None:
        await peer.request()
        await peer.send(ok())
        await asyncio.sleep(0.05)  # the client has put the connection back by now
        await peer.send(goodbye)
        await peer.wait_for_eof()

    async with RawServer(answer_then_say_goodbye) as server:
        await fetch(pool, server)
        await eventually(lambda: server.eofs == 1)  # the client closed it on the goodbye
        _, body = await fetch(pool, server)
    assert body == b"ok"
    assert server.connections == 2


async def test_connection_idle_longer_than_the_expiry_is_not_reused() -> None:
    async with RawServer(answering(ok())) as server, open_pool(idle_expiry=0.05) as pool:
        await fetch(pool, server)
        await asyncio.sleep(0.1)
        await fetch(pool, server)
        assert pool.connections == 1
        await eventually(lambda: server.eofs == 1)  # the expired one was closed
    assert server.connections == 2


async def test_expired_connection_at_the_bottom_is_reaped_on_release() -> None:
    async with RawServer(answering(ok())) as server, open_pool(idle_expiry=0.05) as pool:
        first, second = await asyncio.gather(
            *(pool.request(server.origin, server.head(), read_timeout=SAFE) for _ in range(2))
        )
        await first.read()
        await asyncio.sleep(0.1)
        await second.read()  # released on top of the expired first one, which goes
        assert pool.idle(server.origin) == 1
        assert pool.connections == 1
        await eventually(lambda: server.eofs == 1)


async def test_max_idle_bounds_the_connections_kept() -> None:
    async with RawServer(answering(ok())) as server, open_pool(max_idle=2) as pool:
        responses = await asyncio.gather(
            *(pool.request(server.origin, server.head(), read_timeout=SAFE) for _ in range(5))
        )
        for response in responses:
            assert await response.read() == b"ok"
        assert pool.idle(server.origin) == 2
        assert pool.connections == 2
        await eventually(lambda: server.eofs == 3)
    assert server.connections == 5


async def test_aclose_closes_every_connection_and_refuses_further_requests() -> None:
    async with RawServer(routed(start_body_then_wait)) as server:
        pool = ConnectionPool()
        held = await pool.request(server.origin, server.head(b"/hold"), read_timeout=SAFE)
        await fetch(pool, server)  # on a second connection, now idle
        assert pool.connections == 2
        await pool.aclose()
        assert pool.connections == 0
        await eventually(lambda: server.eofs == 2)
        with pytest.raises(ReadError):
            await held.read()
        with pytest.raises(RuntimeError):
            await pool.request(server.origin, server.head())


async def test_request_waiting_for_a_slot_is_refused_once_the_pool_is_closed() -> None:
    async with RawServer(routed(start_body_then_wait)) as server:
        pool = ConnectionPool(max_connections=1)
        held = await pool.request(server.origin, server.head(b"/hold"), read_timeout=SAFE)
        queued = asyncio.create_task(pool.request(server.origin, server.head(), read_timeout=SAFE))
        await asyncio.sleep(0.01)  # waiting for the slot
        await pool.aclose()
        with pytest.raises(ReadError):
            await held.read()  # gives the slot back
        try:
            with pytest.raises(RuntimeError):
                await queued
        finally:
            if not queued.cancelled() and queued.exception() is None:
                queued.result().close()
        assert server.connections == 1
