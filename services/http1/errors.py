"""What can go wrong on the wire, in one small hierarchy.

Callers map these to their own vocabulary: the httpx transport to httpx's exceptions, the
Telegram session to aiogram's `TelegramNetworkError`. Messages name the host and port at
most, never the request target: a Bot API path carries the bot's token.
"""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "HTTPClientError",
    "PoolTimeout",
    "ReadError",
    "ReadTimeout",
    "RemoteProtocolError",
    "WriteError",
    "WriteTimeout",
]


class HTTPClientError(Exception):
    """Any failure of a request: nothing usable came back."""


class ConnectError(HTTPClientError):
    """The connection (TCP or TLS) could not be made."""


class ConnectTimeout(ConnectError):
    """The connection was not made in time."""


class PoolTimeout(HTTPClientError):
    """Every connection stayed busy for longer than the pool timeout."""


class ReadTimeout(HTTPClientError):
    """The server sent nothing for longer than the read timeout."""


class WriteTimeout(HTTPClientError):
    """The server took nothing for longer than the write timeout."""


class ReadError(HTTPClientError):
    """The connection broke while the response was being read."""


class WriteError(HTTPClientError):
    """The connection broke while the request was being sent."""


class RemoteProtocolError(HTTPClientError):
    """The server answered something that is not HTTP/1.1, or closed without answering."""
