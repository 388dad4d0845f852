"""The upstream's HTTP client builder (services/http_clients.py): proxies from the settings or
the environment, extra CAs on top of the system store, limits, cookies, error types."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from aiohttp import web

from services.http_clients import (
    CookielessAsyncClient,
    HttpTarget,
    build_http_client,
    proxy_scheme,
    ssl_context,
)
from tests.fakes.proxy_server import FakeProxy

Origin = Callable[..., Awaitable[str]]


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    """Starts small aiohttp servers (optionally TLS) answering "ok"; returns their URLs."""
    runners: list[web.AppRunner] = []

    async def start(context: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> str:
        async def hello(request: web.Request) -> web.Response:
            response = web.Response(text="ok")
            response.set_cookie("session", "abc")
            response.headers["X-Saw-Cookie"] = request.headers.get("Cookie", "")
            return response

        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"{'https' if context else 'http'}://{host}:{port}/"

    yield start
    for runner in runners:
        await runner.cleanup()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


async def _get(target: HttpTarget, url: str) -> httpx.Response:
    client = build_http_client(target)
    try:
        return await client.get(url)
    finally:
        await client.aclose()


# --- proxies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_the_configured_proxy_carries_the_traffic(origin: Origin, scheme: str) -> None:
    url = await origin()
    async with FakeProxy(scheme, auth="user:p@ss") as proxy:  # type: ignore[arg-type]
        response = await _get(HttpTarget(proxy=proxy.url), url)
        assert response.text == "ok"
        assert proxy.saw(httpx.URL(url).port or 0)
        assert proxy.users == ["user:p@ss"]  # credentials from the URL, percent-decoded


async def test_socks5h_lets_the_proxy_resolve_names(origin: Origin) -> None:
    url = (await origin()).replace("127.0.0.1", "localhost")
    async with FakeProxy("socks5") as proxy:
        response = await _get(HttpTarget(proxy=proxy.url.replace("socks5", "socks5h")), url)
        assert response.text == "ok"
        assert ("localhost", httpx.URL(url).port) in proxy.targets  # a name, not an address


async def test_the_environments_proxy_is_used_when_none_is_configured(
    origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await origin()
    async with FakeProxy("http") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert (await _get(HttpTarget(), url)).text == "ok"
        assert proxy.connections == 1
        # NO_PROXY exempts a host, as curl and requests do.
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert (await _get(HttpTarget(), url)).text == "ok"
        assert proxy.connections == 1


async def test_no_worker_thread_per_request_when_the_environment_names_no_proxy(
    origin: Origin, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # aiohttp's trust_env looks up the proxy and .netrc in a worker thread on every request;
    # with nothing to find that is two thread hops per upstream call for nothing.
    url = await origin()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "NETRC"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    loop = asyncio.get_running_loop()
    used: list[object] = []
    run_in_executor = loop.run_in_executor

    def recording(executor: Any, fn: Any, *args: Any) -> Any:
        used.append(fn)
        return run_in_executor(executor, fn, *args)

    monkeypatch.setattr(loop, "run_in_executor", recording)
    assert (await _get(HttpTarget(), url)).text == "ok"
    assert used == []


async def test_a_refusing_proxy_is_an_httpx_error(origin: Origin) -> None:
    url = await origin()
    for scheme in ("http", "socks5"):
        async with FakeProxy(scheme, auth="user:secret") as proxy:  # type: ignore[arg-type]
            wrong = proxy.url.replace("secret", "wrong")
            with pytest.raises(httpx.HTTPError):
                response = await _get(HttpTarget(proxy=wrong), url)
                response.raise_for_status()  # an HTTP proxy answers 407


def test_proxy_schemes() -> None:
    for url in ("http://h:1", "https://h:1", "socks5://u:p@h:1", "socks5h://h:1"):
        assert proxy_scheme(url) == url.split(":")[0]
    with pytest.raises(ValueError):
        proxy_scheme("ftp://h:1")
    with pytest.raises(ValueError):
        build_http_client(HttpTarget(proxy="ftp://h:1"))


# --- TLS -------------------------------------------------------------------------------------


async def test_ca_bundle_is_added_to_the_system_store(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private, public = trustme.CA(), trustme.CA()
    # The "system store" of this process: OpenSSL reads SSL_CERT_FILE for its default paths.
    system = tmp_path / "system.pem"
    public.cert_pem.write_to_path(str(system))
    monkeypatch.setenv("SSL_CERT_FILE", str(system))
    bundle = tmp_path / "private-ca.pem"
    private.cert_pem.write_to_path(str(bundle))
    private_url = await origin(_server_context(private), host="localhost")
    public_url = await origin(_server_context(public), host="localhost")

    with_bundle = HttpTarget(ca_bundle=str(bundle))
    assert (await _get(with_bundle, private_url)).text == "ok"
    assert (await _get(with_bundle, public_url)).text == "ok"  # the system store still counts
    with pytest.raises(httpx.ConnectError):
        await _get(HttpTarget(), private_url)  # unknown CA without the bundle
    assert (await _get(HttpTarget(), public_url)).text == "ok"


def test_ssl_context_verifies() -> None:
    context = ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


# --- limits, cookies, errors -----------------------------------------------------------------


async def test_an_oversized_response_head_is_a_protocol_error() -> None:
    sent = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        try:
            while sent < 16 * 1024 * 1024:
                writer.write(b"X-Junk: " + b"j" * 4000 + b"\r\n")
                sent += 4010
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await _get(HttpTarget(), f"http://127.0.0.1:{port}/")
    finally:
        server.close()
    assert sent < 16 * 1024 * 1024  # the client hung up at the limit


async def test_cookies_are_neither_kept_nor_sent_back(origin: Origin) -> None:
    url = await origin()
    client = build_http_client(HttpTarget())
    try:
        for _ in range(2):
            response = await client.get(url)
            assert response.cookies.get("session") == "abc"  # the response still says so
            assert response.headers["X-Saw-Cookie"] == ""
        assert len(client.cookies) == 0
    finally:
        await client.aclose()


def test_cookies_cannot_be_given_or_set() -> None:
    with pytest.raises(TypeError):
        CookielessAsyncClient(cookies={"a": "b"})
    client = CookielessAsyncClient()
    with pytest.raises(TypeError):
        client.cookies = httpx.Cookies({"a": "b"})


async def test_redirects_are_capped(origin: Origin) -> None:
    hops = 0

    async def loop(request: web.Request) -> web.Response:
        nonlocal hops
        hops += 1
        raise web.HTTPFound("/")

    app = web.Application()
    app.router.add_get("/", loop)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    client = build_http_client(HttpTarget())
    try:
        with pytest.raises(httpx.TooManyRedirects):
            await client.get(f"http://127.0.0.1:{runner.addresses[0][1]}/", follow_redirects=True)
    finally:
        await client.aclose()
        await runner.cleanup()
    assert hops == 6  # the first request and five redirects
