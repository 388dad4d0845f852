"""Where the real PostgreSQL and Redis servers of the test machine are, for tests needing them.

Each helper returns the server's URL, or skips the calling test with the reason when nothing
listens there; with ``REQUIRE_SERVICES=1`` (CI) a missing server fails the test instead.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _require(name: str, url: str, default_port: int) -> str:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return url
    except OSError as error:
        reason = f"{name} is not running at {host}:{port} ({error})"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}; REQUIRE_SERVICES=1 requires it", pytrace=False)
        pytest.skip(reason)


def postgres_url() -> str:
    """The test database's URL (database ``test``, user ``postgres``, trust auth)."""
    return _require("PostgreSQL", POSTGRES_URL, 5432)


def redis_url() -> str:
    """The test Redis server's URL; callers use their own key prefix."""
    return _require("Redis", REDIS_URL, 6379)
