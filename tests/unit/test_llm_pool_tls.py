"""The bot's connection pool over TLS, as it talks to the real upstream (HTTPS)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx
import pytest
import trustme
from aiohttp import web

from services.llm.pool import LeanConnectionPool, lean_transport


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_server(ca: trustme.CA) -> AsyncIterator[str]:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(3):
            await response.write(f"data: {i}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_get("/v1/stream", stream)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"https://127.0.0.1:{port}"
    await runner.cleanup()


def client_for(ca: trustme.CA, *, trust: bool) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=5)
    transport = lean_transport(limits)
    assert isinstance(transport._pool, LeanConnectionPool)
    if trust:
        # The pool keeps the context it was given: trust the test CA on that one.
        ca.configure_trust(transport._pool._ssl_context)
    return httpx.AsyncClient(transport=transport, limits=limits)


async def test_streams_over_tls_and_reuses_the_connection(
    https_server: str, ca: trustme.CA
) -> None:
    async with client_for(ca, trust=True) as client:
        for _ in range(3):
            async with client.stream("GET", f"{https_server}/v1/stream") as response:
                lines = [line async for line in response.aiter_lines() if line]
            assert lines[-1] == "data: [DONE]"
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1


async def test_untrusted_certificate_is_rejected(https_server: str, ca: trustme.CA) -> None:
    async with client_for(ca, trust=False) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{https_server}/v1/stream")
