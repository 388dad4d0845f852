"""The loopback proxy fake (tests/fakes/proxy_server.py) relays and reports what it saw."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp_socks import ProxyConnector, ProxyError

from tests.fakes.proxy_server import FakeProxy


@pytest.fixture
async def origin() -> AsyncIterator[int]:
    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application()
    app.router.add_get("/x", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = runner.addresses[0][1]
    yield port
    await runner.cleanup()


async def _get(proxy_url: str, port: int) -> tuple[int, str]:
    if proxy_url.startswith("socks5"):
        connector = ProxyConnector.from_url(proxy_url)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(f"http://127.0.0.1:{port}/x") as resp,
        ):
            return resp.status, await resp.text()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/x", proxy=proxy_url) as resp,
    ):
        return resp.status, await resp.text()


@pytest.mark.parametrize("scheme", ["http", "socks5"])
@pytest.mark.parametrize("auth", [None, "user:secret"])
async def test_relays_and_records_targets(origin: int, scheme: str, auth: str | None) -> None:
    async with FakeProxy(scheme, auth=auth) as proxy:  # type: ignore[arg-type]
        assert await _get(proxy.url, origin) == (200, "hi")
        assert proxy.saw(origin)
        assert proxy.users == ([auth] if auth else [])


async def test_wrong_password_is_refused_every_time(origin: int) -> None:
    async with FakeProxy("http", auth="user:secret") as proxy:
        assert (await _get(proxy.url, origin))[0] == 200
        # pproxy would otherwise remember the client IP as authenticated.
        bad = proxy.url.replace("secret", "wrong")
        assert (await _get(bad, origin))[0] == 407
        assert proxy.rejected
    async with FakeProxy("socks5", auth="user:secret") as proxy:
        with pytest.raises((aiohttp.ClientError, ProxyError)):
            await _get(proxy.url.replace("secret", "wrong"), origin)
        assert not proxy.saw(origin)
        assert proxy.rejected
