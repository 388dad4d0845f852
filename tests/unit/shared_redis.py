"""Redis for the shared-state tests: a unique key prefix per test, its keys deleted after.

Each "replica" gets its own client (its own connection pool), as separate processes would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from services.shared.guard import RedisGuard
from tests.services import redis_url


class Replicas:
    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._clients: list[Redis] = []

    def client(self, name: str | None = None) -> Redis:
        client = Redis.from_url(
            self.url, socket_timeout=2, socket_connect_timeout=1, client_name=name
        )
        self._clients.append(client)
        return client

    def guard(self) -> RedisGuard:
        return RedisGuard(timeout=1.0, retry_after=5.0)

    async def close(self) -> None:
        if self._clients:
            cleaner = self._clients[0]
            keys = [key async for key in cleaner.scan_iter(match=f"{self.prefix}*")]
            if keys:
                await cleaner.delete(*keys)
        for client in self._clients:
            await client.aclose()


@pytest.fixture
async def replicas() -> AsyncIterator[Replicas]:
    shared = Replicas(redis_url(), f"test:{uuid.uuid4().hex[:12]}:")
    yield shared
    await shared.close()
