"""The SSE parser on raw bytes: every case is fed whole, byte by byte and in odd pieces."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from services.llm.sse import SSELineTooLong, SSEStalled, iter_sse_data


async def pieces_of(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def parse(body: bytes, size: int, *, stop_at_done: bool = True) -> list[str]:
    chunks = pieces_of(body, size)
    return [data async for data in iter_sse_data(chunks, stop_at_done=stop_at_done)]


async def collect_body(body: bytes, *, stop_at_done: bool = True) -> list[str]:
    """What the parser yields for `body`; the same however the body is split into reads."""
    whole = await parse(body, max(1, len(body)), stop_at_done=stop_at_done)
    for size in (1, 3):
        assert await parse(body, size, stop_at_done=stop_at_done) == whole, size
    return whole


async def collect(*lines: str, stop_at_done: bool = True) -> list[str]:
    return await collect_body("\n".join(lines).encode(), stop_at_done=stop_at_done)


async def test_single_line_events() -> None:
    assert await collect('data: {"a":1}', "", 'data: {"b":2}', "") == ['{"a":1}', '{"b":2}']


async def test_multi_line_data_is_joined() -> None:
    assert await collect("data: one", "data: two", "data:three", "") == ["one\ntwo\nthree"]


async def test_comments_and_other_fields_are_ignored() -> None:
    got = await collect(": keep-alive", "", "event: message", "id: 7", "retry: 10", "data: x", "")
    assert got == ["x"]


async def test_only_one_leading_space_is_removed() -> None:
    assert await collect("data:  two spaces", "") == [" two spaces"]
    assert await collect("data", "") == [""]


async def test_stops_at_done() -> None:
    assert await collect("data: a", "", "data: [DONE]", "", "data: b", "") == ["a"]


async def test_done_is_yielded_when_asked() -> None:
    got = await collect("data: a", "", "data: [DONE]", "", stop_at_done=False)
    assert got == ["a", "[DONE]"]


async def test_trailing_event_without_blank_line() -> None:
    assert await collect("data: a", "", "data: b") == ["a", "b"]
    assert await collect("data: [DONE]") == []


async def test_blank_lines_without_data_yield_nothing() -> None:
    assert await collect("", "", ": ping", "") == []


async def test_crlf_and_lone_cr_end_lines_too() -> None:
    body = b'data: {"a":1}\r\n\r\ndata: {"b":2}\r\rdata: c\n\n'
    assert await collect_body(body) == ['{"a":1}', '{"b":2}', "c"]


async def test_utf8_split_between_reads_is_decoded_whole() -> None:
    body = 'data: {"content": "Привет, мир 🌍"}\n\n'.encode()
    assert await collect_body(body) == ['{"content": "Привет, мир 🌍"}']


async def test_an_empty_body_yields_nothing() -> None:
    assert await collect_body(b"") == []


# --- bounds ------------------------------------------------------------------------------------


async def test_a_line_longer_than_the_limit_is_a_protocol_error() -> None:
    read = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal read
        yield b"data: "
        while True:
            read += 4096
            yield b"a" * 4096

    with pytest.raises(SSELineTooLong):
        async for _ in iter_sse_data(endless(), max_line=64 * 1024):
            pass
    assert read <= 64 * 1024 + 4096  # stopped at the limit, not at the end of the world


async def test_the_limit_holds_for_a_line_in_one_read_and_across_reads() -> None:
    long_line = b"data: " + b"x" * 2000 + b"\n\n"
    for size in (len(long_line), 100, 1):
        with pytest.raises(SSELineTooLong):
            await parse_limited(long_line, size, max_line=1000)
    # At the limit exactly is fine.
    ok = b"data: " + b"x" * 994 + b"\n\n"
    assert await parse_limited(ok, 7, max_line=1000) == ["x" * 994]


async def parse_limited(body: bytes, size: int, *, max_line: int) -> list[str]:
    return [d async for d in iter_sse_data(pieces_of(body, size), max_line=max_line)]


async def test_a_long_line_costs_linear_time() -> None:
    # 4 MB in 1-byte-per-read pieces of 64 bytes: joined once, not re-copied per read.
    body = b"data: " + b"y" * (4 * 1024 * 1024) + b"\n\n"
    started = time.perf_counter()
    [payload] = await parse_limited(body, 64, max_line=8 * 1024 * 1024)
    assert len(payload) == 4 * 1024 * 1024
    assert time.perf_counter() - started < 5  # quadratic copying takes minutes


async def test_a_stream_that_stalls_between_lines_ends() -> None:
    async def drip() -> AsyncIterator[bytes]:
        yield b"data: first\n\n"
        for byte in b"data: never finished":
            await asyncio.sleep(0.02)
            yield bytes((byte,))

    got: list[str] = []
    with pytest.raises(SSEStalled):
        async for data in iter_sse_data(drip(), gap=0.1):
            got.append(data)
    assert got == ["first"]


async def test_keep_alive_comments_and_slow_consumers_do_not_count_as_a_stall() -> None:
    async def slow_but_alive() -> AsyncIterator[bytes]:
        for _ in range(4):
            await asyncio.sleep(0.03)
            yield b": keep-alive\n"
        yield b"data: done\n\n"
        yield b"data: after\n\n"

    got = []
    async for data in iter_sse_data(slow_but_alive(), gap=0.08):
        got.append(data)
        await asyncio.sleep(0.15)  # the consumer's time is its own
    assert got == ["done", "after"]
