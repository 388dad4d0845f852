"""A fresh PostgreSQL schema per test, so tests never collide and can run repeatedly."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from tests.services import postgres_url


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """Create ``t_<random>`` in the test database and yield a DATABASE_URL whose connections
    use it (``?search_path=``, sent by asyncpg as a server setting); dropped afterwards.
    Skips (or fails under REQUIRE_SERVICES=1) when PostgreSQL is not running."""
    base = postgres_url()
    schema = f"t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(base)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
    finally:
        await admin.close()
    try:
        yield f"{base}?search_path={schema}"
    finally:
        admin = await asyncpg.connect(base)
        try:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            await admin.close()
