"""httpx on the lean HTTP/1.1 wire: `httpx.AsyncClient(transport=Http1Transport(pool))`.

httpx keeps its API (requests, streaming, multipart, decoding, timeouts, its exceptions);
the adapter must pass requests and timeouts through unchanged and map every pool error to
the matching httpx exception, with `.request` set. A small aiohttp app, the shared fake
upstream and `RawServer`s (see test_http1_connection) are on the other end.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiohttp import BodyPartReader, web

from services.http1 import ConnectionPool, Http1Transport, Origin
from tests.fakes.raw_http import (
    LOCALHOST,
    SAFE,
    Peer,
    RawServer,
    answering,
    answering_once,
    blackhole,
    closed_port,
    eventually,
)
from tests.fakes.upstream_server import FakeUpstream
from tests.unit.conftest import UPSTREAM_KEY

GZIPPED_TEXT = "Привет, gzip! " * 500


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the aiohttp app -------------------------------------------------------------------------


async def echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "path_qs": request.path_qs,
            "host": request.host,
            "content_type": request.content_type,
            "json": await request.json(),
        }
    )


async def upload(request: web.Request) -> web.Response:
    fields: dict[str, str] = {}
    files: dict[str, dict[str, Any]] = {}
    async for part in await request.multipart():
        assert isinstance(part, BodyPartReader) and part.name is not None
        data = await part.read()
        if part.filename is None:
            fields[part.name] = data.decode()
        else:
            content_type = part.headers.get("Content-Type")
            files[part.name] = {
                "filename": part.filename,
                "type": content_type,
                "sha": sha256(data),
            }
    return web.json_response(
        {
            "fields": fields,
            "files": files,
            "content_length": request.headers.get("Content-Length"),
        }
    )


async def measure(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "size": len(body),
            "sha": sha256(body),
            "transfer_encoding": request.headers.get("Transfer-Encoding"),
        }
    )


async def gzipped(request: web.Request) -> web.Response:
    return web.Response(
        body=gzip.compress(GZIPPED_TEXT.encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
    )


async def big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * 100_000)


@pytest.fixture(scope="module")
async def app_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/upload", upload)
    app.router.add_post("/measure", measure)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/big", big)  # and HEAD /big
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, LOCALHOST, 0)
    await site.start()
    yield f"http://{LOCALHOST}:{runner.addresses[0][1]}"
    await runner.cleanup()


# --- clients -------------------------------------------------------------------------------


@asynccontextmanager
async def http1_client(
    **pool_options: Any,
) -> AsyncIterator[tuple[httpx.AsyncClient, ConnectionPool]]:
    pool = ConnectionPool(**pool_options)
    async with httpx.AsyncClient(transport=Http1Transport(pool), timeout=SAFE) as client:
        yield client, pool


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool()
    yield pool
    await pool.aclose()


@pytest.fixture
async def client(pool: ConnectionPool) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=Http1Transport(pool), timeout=SAFE) as client:
        yield client


# --- requests and responses ----------------------------------------------------------------


async def test_json_post_round_trip(client: httpx.AsyncClient, app_url: str) -> None:
    response = await client.post(f"{app_url}/echo?x=1&y=2", json={"text": "привет", "n": [1, 2]})
    assert response.status_code == 200
    assert (response.http_version, response.reason_phrase) == ("HTTP/1.1", "OK")
    assert response.json() == {
        "method": "POST",
        "path_qs": "/echo?x=1&y=2",
        "host": app_url.removeprefix("http://"),
        "content_type": "application/json",
        "json": {"text": "привет", "n": [1, 2]},
    }


async def test_requests_share_one_keep_alive_connection(
    client: httpx.AsyncClient, pool: ConnectionPool, app_url: str
) -> None:
    for number in range(3):
        response = await client.post(f"{app_url}/echo", json=number)
        assert response.json()["json"] == number
    assert pool.connections == 1


async def test_request_head_is_written_as_httpx_built_it(client: httpx.AsyncClient) -> None:
    async with RawServer(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as server:
        await client.get(f"http://{server.label}/a%20b/c?q=1&r=%D0%B9", headers={"X-Trace": "7"})
    head = server.requests[0].head
    assert head.startswith(b"GET /a%20b/c?q=1&r=%D0%B9 HTTP/1.1\r\n")
    assert f"\r\nHost: {server.label}\r\n".encode() in head
    assert b"\r\nX-Trace: 7\r\n" in head


async def test_status_reason_and_repeated_headers_come_through(
    client: httpx.AsyncClient,
) -> None:
    answer = (
        b"HTTP/1.1 299 Fine By Me\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        b"Content-Length: 2\r\n\r\nok"
    )
    async with RawServer(answering(answer)) as server:
        response = await client.get(f"http://{server.label}/")
    assert (response.status_code, response.reason_phrase) == (299, "Fine By Me")
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.content == b"ok"


def chat_request(question: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A streamed chat request for the fake upstream: (JSON body, headers)."""
    payload = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 50,
        "stream": True,
    }
    return payload, {"Authorization": f"Bearer {UPSTREAM_KEY}"}


async def test_sse_lines_stream_as_the_upstream_sends_them(
    client: httpx.AsyncClient, pool: ConnectionPool, upstream: FakeUpstream
) -> None:
    upstream.reply = lambda payload: "one two three four five"
    upstream.chunk_delay = 0.03
    payload, headers = chat_request("hi")
    events: list[str] = []
    completed_at_first_event: bool | None = None
    url = f"{upstream.url}/chat/completions"
    async with client.stream("POST", url, json=payload, headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line:
                assert line.startswith("data: ")
                if completed_at_first_event is None:
                    completed_at_first_event = upstream.requests[-1].completed
                events.append(line.removeprefix("data: "))
    assert completed_at_first_event is False  # lines arrive as sent, not all at the end
    assert events[-1] == "[DONE]"
    text = "".join(
        choice["delta"].get("content", "")
        for event in events[:-1]
        for choice in json.loads(event)["choices"]
    )
    assert text == "one two three four five"
    assert pool.connections == 1  # the chunked stream was read to its end: kept


async def test_leaving_a_stream_early_disconnects_from_the_upstream(
    client: httpx.AsyncClient, pool: ConnectionPool, upstream: FakeUpstream
) -> None:
    upstream.chunk_delay = 0.05
    payload, headers = chat_request("a long answer, please")
    url = f"{upstream.url}/chat/completions"
    async with client.stream("POST", url, json=payload, headers=headers) as response:
        async for line in response.aiter_lines():
            if line:
                break  # the user pressed Stop
    record = upstream.requests[-1]
    await asyncio.wait_for(record.disconnected_event.wait(), SAFE)
    assert not record.completed
    assert pool.connections == 0


async def test_multipart_upload_arrives_intact(client: httpx.AsyncClient, app_url: str) -> None:
    voice = bytes(range(256)) * 800  # 200 KiB of every byte value
    picture = b"\x89PNG\r\n\x1a\n" + b"\r\n--not-a-boundary\r\n" * 10
    response = await client.post(
        f"{app_url}/upload",
        data={"model": "stt-openai/whisper-1", "language": "ru"},
        files={"file": ("voice.ogg", voice, "audio/ogg"), "image": ("a.png", picture, "image/png")},
    )
    assert response.status_code == 200
    assert response.json() == {
        "fields": {"model": "stt-openai/whisper-1", "language": "ru"},
        "files": {
            "file": {"filename": "voice.ogg", "type": "audio/ogg", "sha": sha256(voice)},
            "image": {"filename": "a.png", "type": "image/png", "sha": sha256(picture)},
        },
        "content_length": response.request.headers["Content-Length"],
    }


async def test_body_of_unknown_length_is_sent_chunked(
    client: httpx.AsyncClient, app_url: str
) -> None:
    pieces = [b"first;", b"", b"x" * 70_000, b";last"]

    async def content() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    response = await client.post(f"{app_url}/measure", content=content())
    body = b"".join(pieces)
    assert response.json() == {
        "size": len(body),
        "sha": sha256(body),
        "transfer_encoding": "chunked",
    }


async def test_gzip_response_is_decoded_by_httpx(client: httpx.AsyncClient, app_url: str) -> None:
    response = await client.get(f"{app_url}/gzip")
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) < len(GZIPPED_TEXT.encode()) // 10
    assert response.text == GZIPPED_TEXT


async def test_head_request_returns_headers_without_waiting_for_a_body(
    client: httpx.AsyncClient, pool: ConnectionPool, app_url: str
) -> None:
    response = await client.head(f"{app_url}/big")
    assert response.status_code == 200
    assert response.headers["content-length"] == "100000"
    assert response.content == b""
    assert pool.connections == 0  # not reused after a HEAD


async def test_closing_the_client_closes_its_pool(app_url: str) -> None:
    async with http1_client() as (client, pool):
        await client.post(f"{app_url}/echo", json=1)
        assert pool.connections == 1
    assert pool.connections == 0
    with pytest.raises(RuntimeError):
        await pool.request(Origin("http", LOCALHOST, 9), b"GET / HTTP/1.1\r\n\r\n")


# --- errors --------------------------------------------------------------------------------


async def never_answer(peer: Peer) -> None:
    await peer.request()
    await peer.wait_for_eof()


async def test_read_timeout_from_httpx_timeout_reaches_the_pool(
    client: httpx.AsyncClient,
) -> None:
    async with RawServer(never_answer) as server:
        url = f"http://{server.label}/slow"
        started = time.monotonic()
        async with asyncio.timeout(SAFE):
            with pytest.raises(httpx.ReadTimeout) as caught:
                await client.get(url, timeout=httpx.Timeout(SAFE, read=0.1))
        assert time.monotonic() - started < 1.0
    assert "0.1 s" in str(caught.value)
    assert caught.value.request.url == url


async def test_read_timeout_while_streaming_the_body(client: httpx.AsyncClient) -> None:
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    async with RawServer(answering_once(partial, then_close=False)) as server:
        url = f"http://{server.label}/"
        async with client.stream("GET", url, timeout=httpx.Timeout(SAFE, read=0.1)) as response:
            async with asyncio.timeout(SAFE):
                with pytest.raises(httpx.ReadTimeout) as caught:
                    await response.aread()
    assert caught.value.request.url == url


async def test_write_timeout_from_httpx_timeout_reaches_the_pool(
    client: httpx.AsyncClient,
) -> None:
    async def read_head_only(peer: Peer) -> None:
        await peer.reader.readuntil(b"\r\n\r\n")
        await asyncio.Event().wait()

    async with RawServer(read_head_only) as server:
        async with asyncio.timeout(SAFE):
            with pytest.raises(httpx.WriteTimeout) as caught:
                await client.post(
                    f"http://{server.label}/",
                    content=bytes(32 * 1024 * 1024),
                    timeout=httpx.Timeout(SAFE, write=0.1),
                )
    assert "0.1 s" in str(caught.value)
    assert caught.value.request.method == "POST"


async def test_pool_timeout_from_httpx_timeout_reaches_the_pool() -> None:
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    async with (
        RawServer(answering_once(partial, then_close=False)) as server,
        http1_client(max_connections=1) as (client, _),
    ):
        url = f"http://{server.label}/"
        async with client.stream("GET", url):
            async with asyncio.timeout(SAFE):
                with pytest.raises(httpx.PoolTimeout) as caught:
                    await client.get(url, timeout=httpx.Timeout(SAFE, pool=0.1))
    assert caught.value.request.url == url


async def test_connect_timeout_from_httpx_timeout_reaches_the_pool(
    client: httpx.AsyncClient,
) -> None:
    with blackhole() as port:
        url = f"http://{LOCALHOST}:{port}/"
        async with asyncio.timeout(SAFE):
            with pytest.raises(httpx.ConnectTimeout) as caught:
                await client.get(url, timeout=httpx.Timeout(SAFE, connect=0.05))
    assert "0.05 s" in str(caught.value)
    assert caught.value.request.url == url


async def test_connection_refused_raises_httpx_connect_error(client: httpx.AsyncClient) -> None:
    url = f"http://{LOCALHOST}:{closed_port()}/v1/models"
    with pytest.raises(httpx.ConnectError) as caught:
        await client.get(url)
    assert caught.value.request.url == url


async def test_non_http_scheme_raises_unsupported_protocol(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.UnsupportedProtocol) as caught:
        await client.get("ftp://127.0.0.1/file.txt")
    assert caught.value.request.url == "ftp://127.0.0.1/file.txt"


async def test_server_hanging_up_without_a_response_raises_remote_protocol_error(
    client: httpx.AsyncClient,
) -> None:
    async def read_and_hang_up(peer: Peer) -> None:
        await peer.request()

    async with RawServer(read_and_hang_up) as server:
        url = f"http://{server.label}/"
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await client.get(url)
    assert caught.value.request.url == url


async def test_server_hanging_up_mid_body_raises_read_error(
    client: httpx.AsyncClient, pool: ConnectionPool
) -> None:
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
    async with RawServer(answering_once(partial, then_close=True)) as server:
        url = f"http://{server.label}/"
        with pytest.raises(httpx.ReadError) as caught:
            await client.get(url)
    assert caught.value.request.url == url
    await eventually(lambda: pool.connections == 0)
