from __future__ import annotations

from collections.abc import AsyncIterator

from services.llm.sse import iter_sse_data


async def lines_of(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def collect(*lines: str, stop_at_done: bool = True) -> list[str]:
    return [data async for data in iter_sse_data(lines_of(*lines), stop_at_done=stop_at_done)]


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
