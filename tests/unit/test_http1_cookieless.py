"""The upstream's httpx client keeps no cookies (an API authenticated by key needs none)."""

from __future__ import annotations

import httpx
import pytest
from aiohttp import web

from services.http1 import ConnectionPool, CookielessAsyncClient, Http1Transport


async def test_set_cookie_is_not_kept_and_not_sent_back() -> None:
    seen: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.Response(text="ok")
        response.set_cookie("session", "abc")
        return response

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with CookielessAsyncClient(transport=Http1Transport(ConnectionPool())) as client:
            for _ in range(2):
                response = await client.get(f"http://127.0.0.1:{port}/")
                assert response.status_code == 200
                assert response.cookies.get("session") == "abc"  # the response still says so
            assert len(client.cookies) == 0
    finally:
        await runner.cleanup()
    assert seen == [None, None]


def test_cookies_cannot_be_given_or_set() -> None:
    with pytest.raises(TypeError):
        CookielessAsyncClient(cookies={"a": "b"})
    client = CookielessAsyncClient()
    with pytest.raises(TypeError):
        client.cookies = httpx.Cookies({"a": "b"})
