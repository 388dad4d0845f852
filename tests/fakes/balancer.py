"""A loopback load balancer for tests: round-robin over backends, like nginx's default.

Real Telegram knows one webhook URL; in front of replicas a reverse proxy alternates the
deliveries between them. This models that proxy (not Telegram): every request, whatever its
path, goes to the next backend in turn. A backend that refuses the connection (a killed
replica) is skipped for that request and the next one is tried, as nginx's
`proxy_next_upstream error` does; any other failure after the request went out is answered 502
and not re-sent (a POST is not idempotent), so the fake Telegram delivers the update again.

`routes` records where each request went (backend index, path, status, the update id of a
webhook body), so a test can tell which replica received which update.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web

__all__ = ["Balancer", "Routed"]

# Headers that describe one hop, not the request (RFC 9110 7.6.1), plus what aiohttp recomputes.
_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass(slots=True)
class Routed:
    backend: int | None  # None: no backend took it (all refused)
    path: str
    status: int
    update_id: int | None


class Balancer:
    """Round-robin reverse proxy on 127.0.0.1 with a random free port."""

    def __init__(self, backends: Sequence[str], *, timeout: float = 10.0) -> None:
        if not backends:
            raise ValueError("a balancer needs at least one backend")
        self.backends = list(backends)
        self.routes: list[Routed] = []
        self._timeout = timeout
        self._turn = 0  # requests taken so far: the next one goes to backend _turn % n
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._port: int | None = None

    async def start(self) -> None:
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout), auto_decompress=False
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> Balancer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("Balancer is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def next_backend(self) -> int:
        """The backend the next request goes to (if it is up)."""
        return self._turn % len(self.backends)

    def routed_to(self, backend: int) -> list[Routed]:
        return [r for r in self.routes if r.backend == backend]

    def backend_of(self, update_id: int) -> int | None:
        """The backend that answered the last delivery of this update with a 2xx."""
        for routed in reversed(self.routes):
            if routed.update_id == update_id and 200 <= routed.status < 300:
                return routed.backend
        return None

    async def _proxy(self, request: web.Request) -> web.Response:
        assert self._client is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        first, self._turn = self._turn, self._turn + 1
        for attempt in range(len(self.backends)):
            index = (first + attempt) % len(self.backends)
            url = self.backends[index] + request.path_qs
            try:
                async with self._client.request(
                    request.method, url, data=body, headers=headers, allow_redirects=False
                ) as upstream:
                    content = await upstream.read()
                    status = upstream.status
                    reply_headers = {
                        k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS
                    }
            except aiohttp.ClientConnectorError:
                continue  # nothing was sent: the next backend may take it
            except (aiohttp.ClientError, TimeoutError):
                self._record(index, request.path, 502, body)
                return web.Response(status=502, text="bad gateway")
            self._record(index, request.path, status, body)
            return web.Response(status=status, body=content, headers=reply_headers)
        self._record(None, request.path, 502, body)
        return web.Response(status=502, text="no backend is up")

    def _record(self, backend: int | None, path: str, status: int, body: bytes) -> None:
        self.routes.append(Routed(backend, path, status, _update_id(body)))


def _update_id(body: bytes) -> int | None:
    if not body.startswith(b"{"):
        return None
    try:
        value = json.loads(body).get("update_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None
