"""The O(1) connection pool behind the upstream client: reuse, limits, broken connections."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest

from services.llm.pool import LeanConnectionPool, lean_transport
from tests.fakes.upstream_server import FakeUpstream
from tests.unit.conftest import UPSTREAM_KEY

KEY = UPSTREAM_KEY
HEADERS = {"Authorization": f"Bearer {KEY}"}


def make_client(
    *, max_connections: int = 50, max_keepalive: int = 20, pool_timeout: float | None = None
) -> tuple[httpx.AsyncClient, LeanConnectionPool]:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive)
    transport = lean_transport(limits)
    pool = transport._pool
    assert isinstance(pool, LeanConnectionPool)
    client = httpx.AsyncClient(
        transport=transport,
        headers=HEADERS,
        timeout=httpx.Timeout(5.0, pool=pool_timeout),
    )
    return client, pool


def chat(text: str = "hello") -> dict[str, Any]:
    return {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 100,
        "stream": True,
    }


async def read_stream(client: httpx.AsyncClient, url: str, text: str = "hello") -> str:
    async with client.stream("POST", f"{url}/chat/completions", json=chat(text)) as response:
        assert response.status_code == 200
        return "".join([line async for line in response.aiter_lines()])


async def test_sequential_requests_reuse_one_connection(upstream: FakeUpstream) -> None:
    client, pool = make_client()
    async with client:
        for _ in range(5):
            response = await client.get(f"{upstream.url}/models")
            assert response.status_code == 200
        assert len(pool.connections) == 1
        assert pool.idle_connections == 1


async def test_concurrent_streams_each_get_a_connection_then_are_kept(
    upstream: FakeUpstream,
) -> None:
    upstream.chunk_delay = 0.02
    client, pool = make_client(max_keepalive=20)
    async with client:
        bodies = await asyncio.gather(*(read_stream(client, upstream.url) for _ in range(12)))
        assert all("[DONE]" in body for body in bodies)
        assert pool.idle_connections == 12
        # The next round reuses them instead of connecting again.
        await asyncio.gather(*(read_stream(client, upstream.url) for _ in range(12)))
        assert len(pool.connections) == 12


async def test_idle_connections_beyond_the_keepalive_limit_are_closed(
    upstream: FakeUpstream,
) -> None:
    upstream.chunk_delay = 0.02
    client, pool = make_client(max_keepalive=3)
    async with client:
        await asyncio.gather(*(read_stream(client, upstream.url) for _ in range(10)))
        assert pool.idle_connections == 3
        assert len(pool.connections) == 3


async def test_requests_beyond_max_connections_wait_their_turn(upstream: FakeUpstream) -> None:
    upstream.chunk_delay = 0.05
    client, _ = make_client(max_connections=2)
    async with client:
        tasks = [asyncio.create_task(read_stream(client, upstream.url)) for _ in range(3)]
        await upstream.wait_for_requests(2, path="/v1/chat/completions")
        await asyncio.sleep(0.1)
        # Two streams are running; the third has not reached the server yet.
        assert len(upstream.chat_requests()) == 2
        await asyncio.gather(*tasks)
        assert len(upstream.chat_requests()) == 3


async def test_pool_timeout_is_honoured(upstream: FakeUpstream) -> None:
    upstream.first_token_delay = 1.0
    client, _ = make_client(max_connections=1, pool_timeout=0.1)
    async with client:
        holder = asyncio.create_task(read_stream(client, upstream.url))
        await upstream.wait_for_requests(1, path="/v1/chat/completions")
        with pytest.raises(httpx.PoolTimeout):
            await client.get(f"{upstream.url}/models")
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holder


async def test_a_stream_closed_early_disconnects_and_is_not_reused(
    upstream: FakeUpstream,
) -> None:
    upstream.chunks = 10
    upstream.chunk_delay = 0.1
    client, pool = make_client()
    async with client:
        async with client.stream(
            "POST", f"{upstream.url}/chat/completions", json=chat()
        ) as response:
            async for _ in response.aiter_lines():
                break  # leave after the first line: the rest is never read
        request = upstream.chat_requests()[0]
        await asyncio.wait_for(request.disconnected_event.wait(), 2)
        assert pool.idle_connections == 0
        assert pool.connections == []
        assert "[DONE]" in await read_stream(client, upstream.url)


async def test_a_cancelled_request_gives_its_slot_back(upstream: FakeUpstream) -> None:
    upstream.first_token_delay = 5.0
    client, _ = make_client(max_connections=1)
    async with client:
        task = asyncio.create_task(read_stream(client, upstream.url))
        await upstream.wait_for_requests(1, path="/v1/chat/completions")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        upstream.first_token_delay = 0.0
        assert "[DONE]" in await asyncio.wait_for(read_stream(client, upstream.url), 2)


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    accepted = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        # Keep-alive was promised, but the server drops the connection soon after.
        await asyncio.sleep(0.05)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client, pool = make_client()
    try:
        async with client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
            await asyncio.sleep(0.2)
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
            assert accepted == 2
            assert len(pool.connections) == 1
    finally:
        server.close()
        await server.wait_closed()


async def test_closing_the_client_closes_every_connection(upstream: FakeUpstream) -> None:
    client, pool = make_client()
    async with client:
        await asyncio.gather(*(client.get(f"{upstream.url}/models") for _ in range(4)))
        assert pool.connections
    assert pool.connections == []
    with pytest.raises(RuntimeError):
        await client.get(f"{upstream.url}/models")
