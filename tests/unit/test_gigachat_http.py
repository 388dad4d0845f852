"""HttpTarget.verify: an admin may switch certificate checks off for a host whose CA cannot
be had (GigaChat's national root CA); by default they stay on."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx
import pytest
import trustme
from aiohttp import web

from services.http_clients import HttpTarget, build_http_client


@pytest.fixture
async def unknown_ca_url() -> AsyncIterator[str]:
    """An HTTPS server whose certificate chains to a CA nobody trusts."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost", "127.0.0.1").configure_cert(context)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    yield f"https://127.0.0.1:{port}/"
    await runner.cleanup()


async def get(target: HttpTarget, url: str) -> httpx.Response:
    client = build_http_client(target)
    try:
        return await client.get(url)
    finally:
        await client.aclose()


async def test_verify_off_accepts_an_unknown_ca(unknown_ca_url: str) -> None:
    assert (await get(HttpTarget(verify=False), unknown_ca_url)).text == "ok"


async def test_verify_is_on_by_default(unknown_ca_url: str) -> None:
    with pytest.raises(httpx.ConnectError):
        await get(HttpTarget(), unknown_ca_url)
