"""Fair failure handling and what operators see, end to end: the breaker judges the service,
not one user's request, and every upstream failure leaves exactly one log line."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.e2e.conftest import Bench, text_of

ALICE, BOB, CAROL, DAVE = 5201, 5202, 5203, 5204
UNAVAILABLE = "temporarily unavailable"
FAST_RETRY = {"retry-after-ms": "10"}
LOGGER = "services.llm.transport"


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The failure lines of chat requests (the model list, refreshed meanwhile, has its own)."""
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    return [line for line in lines if "model=openai/gpt-4o-mini" in line]


async def test_one_users_failing_questions_do_not_open_the_breaker(bench: Bench) -> None:
    await bench.restart(breaker_failures=3, breaker_cooldown_seconds=60)
    # Alice's questions fail on every attempt (say the upstream chokes on her input).
    for n in range(4):
        bench.upstream.fail_next(500, headers=FAST_RETRY, times=3)
        assert UNAVAILABLE in text_of(await bench.ask(ALICE, f"poison {n}"))
    assert len(bench.upstream.chat_requests()) == 12  # each question tried 3 times
    # Bob is still served: four failed requests of one user are not an outage.
    assert text_of(await bench.ask(BOB, "hello")) == "Echo: hello"


async def test_failures_of_several_users_open_the_breaker_then_it_recovers(
    bench: Bench,
) -> None:
    await bench.restart(breaker_failures=3, breaker_cooldown_seconds=1)
    for user in (ALICE, BOB, CAROL):
        bench.upstream.fail_next(502, headers=FAST_RETRY, times=3)
        assert UNAVAILABLE in text_of(await bench.ask(user, "anyone?"))
    sent = len(bench.upstream.chat_requests())
    assert sent == 9
    # Open: Dave's question fails fast without reaching the upstream.
    assert UNAVAILABLE in text_of(await bench.ask(DAVE, "me too"))
    assert len(bench.upstream.chat_requests()) == sent
    await asyncio.sleep(1.1)
    assert text_of(await bench.ask(DAVE, "now?")) == "Echo: now?"


async def test_a_rejected_key_leaves_one_line_without_the_key(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = bench.upstream.api_key
    bench.upstream.fail_next(
        401,
        {"error": {"message": f"Incorrect API key provided: {key}. hello from my prompt"}},
        headers={"x-request-id": "req-abc123"},
    )
    await bench.ask(ALICE, "hello from my prompt")
    [line] = failure_lines(caplog)
    for part in (
        "provider=127.0.0.1:",
        "model=openai/gpt-4o-mini",
        "status=401",
        "kind=AuthFailed",
        "attempt=1",
        "retry=no",
        "request_id=req-abc123",
    ):
        assert part in line
    assert key not in caplog.text
    assert "hello from my prompt" not in line  # never the user's (or upstream's) text


async def test_each_failed_attempt_of_a_5xx_leaves_one_line(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bench.upstream.fail_next(503, headers={**FAST_RETRY, "x-request-id": "r-503"}, times=3)
    await bench.ask(ALICE, "a question")
    lines = failure_lines(caplog)
    assert len(lines) == 3
    for attempt, line in enumerate(lines, 1):
        assert f"attempt={attempt}" in line
        assert "status=503 kind=ServiceUnavailable" in line
        assert "request_id=r-503" in line
        assert ("retry=no" if attempt == 3 else "retry=yes") in line
    assert bench.upstream.api_key not in caplog.text


async def test_a_refused_connection_and_a_dropped_stream_are_logged(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bench.upstream.break_stream_after(2)
    await bench.ask(ALICE, "one two three four five six seven")
    [dropped] = failure_lines(caplog)
    assert "upstream stream failed" in dropped
    assert "status=- kind=ServiceUnavailable" in dropped
    caplog.clear()
    # Nothing listens on the port any more: every attempt is refused.
    await bench.restart(llm_base_url="http://127.0.0.1:9/v1")
    caplog.clear()
    caplog.set_level(logging.INFO)
    await bench.ask(BOB, "anyone there?", timeout=15)
    lines = failure_lines(caplog)
    assert len(lines) == 3
    assert all("status=- kind=ServiceUnavailable cause=ConnectError" in line for line in lines)
