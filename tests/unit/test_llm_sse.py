"""The SSE parser on raw bytes: every case is fed whole, byte by byte and in odd pieces."""

from __future__ import annotations

from collections.abc import AsyncIterator

from services.llm.sse import iter_sse_data


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
