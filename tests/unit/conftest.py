"""Fixtures shared by the unit tests that talk to the fake upstream over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.upstream_server import FakeUpstream

UPSTREAM_KEY = "test-key"


@pytest.fixture(scope="session")
async def _upstream_server() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream(api_key=UPSTREAM_KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def upstream(_upstream_server: FakeUpstream) -> FakeUpstream:
    """The shared fake upstream, reset to its defaults for each test."""
    _upstream_server.reset()
    return _upstream_server
