"""A lean HTTP/1.1 client for the bot's hot paths: Telegram's JSON calls and the upstream's
streamed answers.

Parsing is httptools' (llhttp); this package adds the asyncio protocol, keep-alive pooling
and timeouts, and an httpx transport so httpx stays the upstream client's interface. HTTP/1.1
only, no proxies: it is used where the bot talks to one known server per pool.
"""

from services.http1.connection import encode_request_head
from services.http1.errors import (
    ConnectError,
    ConnectTimeout,
    HTTPClientError,
    PoolTimeout,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    WriteError,
    WriteTimeout,
)
from services.http1.httpx_transport import CookielessAsyncClient, Http1Transport
from services.http1.pool import ConnectionPool, Origin, Response, default_ssl_context

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "ConnectionPool",
    "CookielessAsyncClient",
    "HTTPClientError",
    "Http1Transport",
    "Origin",
    "PoolTimeout",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "Response",
    "WriteError",
    "WriteTimeout",
    "default_ssl_context",
    "encode_request_head",
]
