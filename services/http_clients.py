"""HTTP clients for outbound targets (the upstream today; one per provider later), built
from stock parts only.

httpx stays the API the services speak (requests, streaming, redirects, decoding, its
exceptions); the wire is aiohttp's, through `httpx-aiohttp` (the transport openai-python
ships as `DefaultAioHttpClient`). httpx's own httpcore transport costs about five times
more CPU per streamed answer on the benchmarks (its pool scan), and aiohttp brings what a
home-made client lacked: proxies (HTTP, HTTPS, SOCKS through `aiohttp-socks`), the
environment's HTTPS_PROXY / NO_PROXY, header size limits and a maintained TLS stack.

One `HttpTarget` describes one destination's network needs (proxy, CA bundle, timeouts);
`build_http_client()` turns it into an `httpx.AsyncClient` that the caller owns and closes.
"""

from __future__ import annotations

import os
import ssl
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi
import httpx
from aiohttp_socks import ProxyConnector
from aiohttp_socks import ProxyError as SocksProxyError
from httpx_aiohttp import AiohttpTransport
from python_socks import ProxyError as PythonSocksError

__all__ = [
    "MAX_HEADERS",
    "MAX_HEADER_LINE",
    "CookielessAsyncClient",
    "HttpTarget",
    "build_http_client",
    "proxy_scheme",
    "ssl_context",
]

# Response header limits (aiohttp's parser enforces them while reading): at most this many
# header lines of at most this many bytes each, so a response head costs at most ~1 MB
# whatever the server sends. A larger head is a protocol error, not a memory leak.
MAX_HEADERS = 128
MAX_HEADER_LINE = 8190

_SOCKS_SCHEMES = ("socks5", "socks5h", "socks4", "socks4a")
_HTTP_PROXY_SCHEMES = ("http", "https")


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """How to reach one destination.

    `proxy`: an `http://`, `https://` or `socks5://` URL (optionally `user:password@`);
    None uses the environment's HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as curl would.
    `ca_bundle`: a PEM file of CAs trusted in addition to the system store.
    `verify`: False accepts any certificate (an admin's last resort where a CA bundle for
    the destination cannot be had, such as GigaChat's national root CA).
    """

    proxy: str | None = None
    ca_bundle: str | None = None
    verify: bool = True
    read_timeout: float = 120.0
    connect_timeout: float = 10.0
    # Queueing happens in the services' own limiters, not in the pool: the pool is sized
    # for every answer being streamed at once.
    max_connections: int = 2000
    keepalive_seconds: float = 5.0
    max_redirects: int = 5


def proxy_scheme(url: str) -> str:
    """The proxy URL's scheme, lower case; ValueError when it is not one we can use."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _HTTP_PROXY_SCHEMES + _SOCKS_SCHEMES:
        raise ValueError(f"unsupported proxy scheme {scheme!r}")
    return scheme


def ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """A verifying client context: the system's trust store, plus `ca_bundle` when given.

    The system store honours SSL_CERT_FILE / SSL_CERT_DIR. On a system without one (a slim
    container image) certifi's bundle stands in, as httpx and requests would use.
    """
    context = ssl.create_default_context()
    paths = ssl.get_default_verify_paths()
    if not (paths.cafile or paths.capath):
        context.load_verify_locations(cafile=certifi.where())
    if ca_bundle:
        # Added, not replacing: the extra CAs join those already loaded.
        context.load_verify_locations(cafile=ca_bundle)
    return context


class _Transport(AiohttpTransport):
    """httpx-aiohttp's transport, with every client-side error raised as an httpx one.

    httpx-aiohttp maps the common aiohttp errors; a response head over the limits, a
    malformed status line or a SOCKS proxy's refusal would otherwise escape as aiohttp's
    or aiohttp-socks' own types, which the services (speaking httpx) do not expect.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.HTTPError as exc:
            # httpx-aiohttp reports a refused connection and a dropped keep-alive connection
            # as ConnectTimeout (its map prefers the base class); name them for the logs.
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ServerDisconnectedError):
                raise httpx.RemoteProtocolError(str(exc), request=request) from cause
            if isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(
                cause, aiohttp.ServerTimeoutError
            ):
                raise httpx.ConnectError(str(exc), request=request) from cause
            raise
        except (SocksProxyError, PythonSocksError) as exc:
            raise httpx.ProxyError(f"proxy refused: {exc}", request=request) from exc
        except aiohttp.ClientResponseError as exc:
            # Raised by aiohttp's parser for a bad response head (too large, malformed).
            raise httpx.RemoteProtocolError(
                f"invalid response: {exc.message}", request=request
            ) from exc
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(str(exc) or type(exc).__name__, request=request) from exc


def _session_factory(target: HttpTarget, context: ssl.SSLContext) -> Callable[[], Any]:
    """aiohttp wants a running loop for its session; httpx-aiohttp calls this on first use."""

    def make() -> aiohttp.ClientSession:
        connector_args: dict[str, Any] = {
            "ssl": context,
            "limit": target.max_connections,
            "limit_per_host": 0,
            "keepalive_timeout": target.keepalive_seconds,
        }
        session_args: dict[str, Any] = {
            "max_line_size": MAX_HEADER_LINE,
            "max_field_size": MAX_HEADER_LINE,
            "max_headers": MAX_HEADERS,
            # httpx keeps (no) cookies and decodes bodies itself.
            "cookie_jar": aiohttp.DummyCookieJar(),
            "auto_decompress": False,
        }
        proxy = target.proxy
        connector: aiohttp.TCPConnector
        if proxy is None:
            connector = aiohttp.TCPConnector(**connector_args)
            # HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment, per request URL.
            # Only when the environment has something to say: with `trust_env` aiohttp
            # looks for a proxy and for .netrc credentials in a worker thread on every
            # request (two thread hops per upstream call, each reading ~/.netrc).
            session_args["trust_env"] = _environment_may_apply()
        elif proxy_scheme(proxy) in _SOCKS_SCHEMES:
            scheme = proxy_scheme(proxy)
            # "socks5h"/"socks4a": the proxy resolves host names (python-socks' rdns).
            rdns = scheme.endswith(("h", "a"))
            url = proxy.replace(scheme, scheme.rstrip("ha"), 1) if rdns else proxy
            connector = ProxyConnector.from_url(url, rdns=rdns or None, **connector_args)
        else:
            connector = aiohttp.TCPConnector(**connector_args)
            # Credentials in the URL become Proxy-Authorization (aiohttp reads them).
            session_args["proxy"] = proxy
        return aiohttp.ClientSession(connector=connector, **session_args)

    return make


def _environment_may_apply() -> bool:
    """Whether aiohttp's `trust_env` could find anything: a proxy variable (what urllib's
    `getproxies()` reads) or a netrc file (where aiohttp looks for one)."""
    if urllib.request.getproxies():
        return True
    netrc = os.environ.get("NETRC")
    if netrc is not None:
        return True  # named explicitly: aiohttp reads it (or warns that it cannot)
    try:
        home = Path.home()
    except RuntimeError:
        return False
    return (home / ".netrc").exists() or (home / "_netrc").exists()


class _KeepNoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessAsyncClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` that keeps no cookies.

    An API authenticated by key has no use for them, and httpx otherwise wraps every
    response and its request in urllib objects (parsing the URL again) just to look for
    Set-Cookie: a few per cent of the bot's CPU per streamed answer.
    """

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("cookies"):
            raise TypeError("CookielessAsyncClient keeps no cookies")
        super().__init__(**kwargs)
        self._no_cookies = _KeepNoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("CookielessAsyncClient keeps no cookies")


def build_http_client(target: HttpTarget) -> httpx.AsyncClient:
    """An httpx client for `target` on aiohttp's wire; the caller closes it (`aclose()`)."""
    if target.proxy is not None:
        proxy_scheme(target.proxy)  # fail now, not on the first request
    context = ssl_context(target.ca_bundle)
    if not target.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    transport = _Transport(client=_session_factory(target, context))
    return CookielessAsyncClient(
        transport=transport,
        timeout=httpx.Timeout(target.read_timeout, connect=target.connect_timeout, pool=None),
        max_redirects=target.max_redirects,
        # The environment's proxies are aiohttp's business (trust_env above); httpx would
        # only look at them for transports of its own.
        trust_env=False,
    )
