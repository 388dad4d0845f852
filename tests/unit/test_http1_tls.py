"""TLS on the lean HTTP/1.1 client: certificates are checked, connections are kept alive.

The servers are `RawServer`s (see test_http1_connection) with a certificate from a private
`trustme` CA. A pool trusting that CA gets through; any other trust, a certificate for a
different host or a plain-text server all end in `services.http1.ConnectError`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest
import trustme

from services.http1 import ConnectError, ConnectionPool, ConnectTimeout
from tests.fakes.raw_http import (
    LOCALHOST,
    SAFE,
    Peer,
    RawServer,
    answering,
    answering_once,
    fetch,
    ok,
    open_pool,
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *identities: str) -> ssl.SSLContext:
    """A server context with a certificate from `ca` for `identities`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*identities).configure_cert(context)
    return context


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts `ca` (and checks host names, as the default does)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
async def trusting_pool(ca: trustme.CA) -> AsyncIterator[ConnectionPool]:
    async with open_pool(ssl_context=trusting(ca)) as pool:
        yield pool


async def test_trusted_certificate_serves_requests_on_one_reused_connection(
    ca: trustme.CA, trusting_pool: ConnectionPool
) -> None:
    async with RawServer(
        answering(ok(b"secret")), ssl_context=server_context(ca, LOCALHOST)
    ) as server:
        assert server.origin.scheme == "https"
        for _ in range(3):
            response, body = await fetch(trusting_pool, server)
            assert (response.status, body) == (200, b"secret")
        assert trusting_pool.connections == 1
        assert trusting_pool.idle(server.origin) == 1
    assert (server.connections, len(server.requests)) == (1, 3)


async def test_certificate_from_an_unknown_ca_raises_connect_error(ca: trustme.CA) -> None:
    async with (
        RawServer(answering(ok()), ssl_context=server_context(ca, LOCALHOST)) as server,
        open_pool(ssl_context=trusting(trustme.CA())) as pool,
    ):
        with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await fetch(pool, server)
        assert pool.connections == 0
    assert server.requests == []


async def test_default_context_does_not_trust_a_private_ca(ca: trustme.CA) -> None:
    async with (
        RawServer(answering(ok()), ssl_context=server_context(ca, LOCALHOST)) as server,
        open_pool() as pool,  # certifi's roots
    ):
        with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await fetch(pool, server)
    assert server.requests == []


async def test_certificate_for_another_host_raises_connect_error(
    ca: trustme.CA, trusting_pool: ConnectionPool
) -> None:
    async with RawServer(answering(ok()), ssl_context=server_context(ca, "example.org")) as server:
        with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await fetch(trusting_pool, server)
    assert server.requests == []


async def test_plain_http_server_on_an_https_origin_raises_connect_error(
    trusting_pool: ConnectionPool,
) -> None:
    async def answer_in_plain_text(peer: Peer) -> None:
        await peer.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    async with RawServer(answer_in_plain_text) as server:
        origin = server.origin._replace(scheme="https")
        with pytest.raises(ConnectError) as caught:
            await trusting_pool.request(origin, server.head(), connect_timeout=SAFE)
        assert not isinstance(caught.value, ConnectTimeout)  # the handshake failed at once
        assert trusting_pool.connections == 0


async def test_large_body_over_tls_pauses_and_resumes_reading(
    ca: trustme.CA, trusting_pool: ConnectionPool
) -> None:
    body = bytes(range(256)) * (8 * 1024)  # 2 MiB, eight times HIGH_WATER
    async with RawServer(answering(ok(body)), ssl_context=server_context(ca, LOCALHOST)) as server:
        response = await trusting_pool.request(server.origin, server.head(), read_timeout=SAFE)
        await asyncio.sleep(0.1)
        first = await response.read_chunk()
        assert len(first) < len(body)  # the socket was paused, not drained into memory
        assert first + await response.read() == body
        _, again = await fetch(trusting_pool, server)
    assert again == body
    assert server.connections == 1


async def test_close_delimited_body_over_tls_is_read_to_the_end(
    ca: trustme.CA, trusting_pool: ConnectionPool
) -> None:
    answer = (b"HTTP/1.1 200 OK\r\n\r\n", b"until ", b"the end")
    handler = answering_once(*answer, then_close=True)
    async with RawServer(handler, ssl_context=server_context(ca, LOCALHOST)) as server:
        _, body = await fetch(trusting_pool, server)
        assert trusting_pool.connections == 0
    assert body == b"until the end"
