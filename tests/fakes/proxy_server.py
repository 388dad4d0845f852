"""A real forward proxy (pproxy from PyPI) on loopback, for tests that prove traffic
goes through a configured proxy.

    async with FakeProxy("socks5", auth="user:secret") as proxy:
        ...  # point the client at proxy.url
        assert proxy.targets  # ("127.0.0.1", 8443), ... what the proxy connected to

pproxy runs in-process on the test's event loop; it speaks HTTP (CONNECT and absolute
URIs) and SOCKS5, with optional user:password. We observe it through its own hooks:
`verbose` (one line per accepted connection, naming the target) and `modstat`
(per-connection statistics, naming the authenticated user). Rejected credentials are
reported through `verbose` as well and collected in `.rejected`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import pproxy

Scheme = Literal["http", "socks5"]

# pproxy logs an accepted connection as "<proto> <client ip:port> -> <host>:<port>".
_ACCEPTED = re.compile(r"^(?P<proto>\S+) \S+ -> (?P<host>.+):(?P<port>\d+)$")


@dataclass
class FakeProxy:
    """A forward proxy on 127.0.0.1 on a free port; `scheme` is "http" or "socks5"."""

    scheme: Scheme = "http"
    auth: str | None = None  # "user:password", required of clients when set
    targets: list[tuple[str, int]] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        """The proxy URL a client is given, credentials (percent-encoded) included when set."""
        creds = ""
        if self.auth:
            user, _, password = self.auth.partition(":")
            creds = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"{self.scheme}://{creds}127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """Connections the proxy accepted and forwarded."""
        return len(self.targets)

    def saw(self, port: int) -> bool:
        """Whether the proxy forwarded at least one connection to 127.0.0.1:`port`."""
        return any(p == port for _, p in self.targets)

    def reset(self) -> None:
        self.targets.clear()
        self.users.clear()
        self.rejected.clear()

    def _verbose(self, line: str) -> None:
        match = _ACCEPTED.match(line)
        if match:
            self.targets.append((match["host"], int(match["port"])))
        elif "Unauthorized" in line:
            self.rejected.append(line)

    def _modstat(self, user: bytes | None, _remote_ip: str, _host: str) -> Any:
        if isinstance(user, bytes):
            self.users.append(user.decode())
        return lambda _kind: lambda _n: None

    async def start(self) -> FakeProxy:
        # pproxy's "http" listener also serves CONNECT; "socks5" only SOCKS5.
        uri = f"{self.scheme}://127.0.0.1:0"
        if self.auth:
            uri += f"#{self.auth}"
        server_option = pproxy.Server(uri)
        args: dict[str, Any] = {
            "rserver": [],  # no upstream proxy: connect directly
            "verbose": self._verbose,
            "modstat": self._modstat,
            # pproxy remembers an authenticated client IP in a class-level table for
            # 30 days by default; every connection must authenticate here, or a test
            # with the wrong password would pass because an earlier one logged in.
            "authtime": -1,
            "salgorithm": "fa",
            "block": None,
            "debug": 0,
        }
        self._server = await server_option.start_server(args)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # Connections relayed by pproxy are its own tasks; closing the listener
            # stops new ones, and the relays end when either side closes.
            self._server = None

    async def __aenter__(self) -> FakeProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
