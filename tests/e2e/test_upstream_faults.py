"""A misbehaving upstream, end to end: whatever it sends, the bot's memory stays bounded,
nothing hangs, the user gets the usual error text, and garbage is not paid for three times."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Bench, text_of
from tests.fakes.telegram_server import Call
from tests.fakes.upstream_server import FakeUpstream

USER = 5101
UNAVAILABLE = "temporarily unavailable"
MB = 1024 * 1024
# What a misbehaving answer sends; an unbounded client would hold (at least) all of it.
FLOOD = 48 * MB
# The bot's growth allowed while it reads FLOOD: its buffers, not the flood.
BOUND = 16 * MB


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


@contextlib.contextmanager
def peak_growth() -> Iterator[list[int]]:
    """Yields a list that receives the peak RSS growth (bytes) of this process in the block.

    The kernel's high-water mark is reset first (writing 5 to clear_refs), so the peak is
    this block's, not an earlier test's. The bot, both fakes and the test share the process:
    the fakes write in 64 KB pieces, so the flood never sits in memory on their side.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        base = _status_kb("VmRSS")
    except (OSError, LookupError):
        pytest.skip("needs Linux /proc to measure peak memory")
    result: list[int] = []
    yield result
    result.append((_status_kb("VmHWM") - base) * 1024)


async def _reply(bench: Bench, user: int, text: str, timeout: float = 10) -> Call:  # noqa: ASYNC109
    return await bench.ask(user, text, timeout=timeout)


# --- bounded memory --------------------------------------------------------------------------


async def test_huge_response_headers_are_refused_with_bounded_memory(bench: Bench) -> None:
    # Retried like any broken connection (a protocol error may be transient): each attempt
    # stops reading at the header limit.
    bench.upstream.misbehave_next("huge_headers", size=FLOOD, times=3)
    with peak_growth() as growth:
        final = await _reply(bench, USER, "headers")
    assert UNAVAILABLE in text_of(final)
    assert growth[0] < BOUND, f"grew {growth[0] / MB:.1f} MB"
    requests = bench.upstream.chat_requests()
    assert len(requests) == 3
    assert all(r.bytes_sent < FLOOD for r in requests)  # the bot hung up early


async def test_endless_sse_line_is_a_protocol_error_with_bounded_memory(bench: Bench) -> None:
    bench.upstream.misbehave_next("endless_line", size=FLOOD)
    with peak_growth() as growth:
        final = await _reply(bench, USER, "endless")
    assert UNAVAILABLE in text_of(final)
    assert growth[0] < BOUND, f"grew {growth[0] / MB:.1f} MB"
    [request] = bench.upstream.chat_requests()  # not retried: the request may be paid
    assert request.bytes_sent < FLOOD
    assert request.disconnected


# --- nothing hangs ---------------------------------------------------------------------------


async def test_dripping_stream_is_cut_after_the_gap(bench: Bench) -> None:
    await bench.restart(llm_stream_gap_seconds=0.4)
    # One byte every 0.2 s: no line would be complete for ~20 s (the read timeout never fires).
    bench.upstream.misbehave_next("drip", interval=0.2, size=10_000)
    final = await _reply(bench, USER, "drip", timeout=5)
    assert UNAVAILABLE in text_of(final)
    [request] = bench.upstream.chat_requests()
    await request.disconnected_event.wait()  # the bot closed it
    assert request.bytes_sent < 10


async def test_dripping_non_streamed_answer_hits_the_deadline(bench: Bench) -> None:
    await bench.restart(llm_request_deadline_seconds=0.5)
    bench.upstream.misbehave_next("drip", path="images/generations", interval=0.1, size=10_000)
    bench.telegram.send_message(USER, "/image a slow fox")
    reply = (await bench.telegram.wait_for("sendMessage", timeout=5))[0]
    assert UNAVAILABLE in reply.params["text"]
    assert len(bench.upstream.requests_to("images/generations")) == 1
    assert not bench.telegram.calls_of("sendPhoto")


# --- a 200 that is not an answer is paid once ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<html><body>Please log in</body></html>", "text/html; charset=utf-8"),
        ('{"choices": [{"delta": ', "application/json"),  # invalid JSON
        ("data: {not json\n\n", "text/event-stream"),
    ],
    ids=["html", "invalid-json", "invalid-sse"],
)
async def test_a_200_that_is_not_an_answer_is_requested_once(
    bench: Bench, body: str, content_type: str
) -> None:
    bench.upstream.fail_next(200, body, headers={"Content-Type": content_type}, times=3)
    final = await _reply(bench, USER, "garbage")
    assert UNAVAILABLE in text_of(final)
    assert "Traceback" not in text_of(final)
    assert len(bench.upstream.chat_requests()) == 1


async def test_an_html_page_for_an_image_is_requested_once(bench: Bench) -> None:
    bench.upstream.fail_next(
        200,
        "<html>maintenance</html>",
        headers={"Content-Type": "text/html"},
        times=3,
        path="images/generations",
    )
    bench.telegram.send_message(USER, "/image a fox")
    reply = (await bench.telegram.wait_for("sendMessage", timeout=5))[0]
    assert UNAVAILABLE in reply.params["text"]
    assert len(bench.upstream.requests_to("images/generations")) == 1


# --- redirects on result links ---------------------------------------------------------------


@pytest.fixture
async def cdn() -> AsyncIterator[FakeUpstream]:
    """Another origin (another port) that serves result files, like a CDN."""
    fake = FakeUpstream(api_key="cdn-has-no-key")
    await fake.start()
    yield fake
    await fake.stop()


async def test_image_link_redirecting_elsewhere_is_followed_without_the_key(
    bench: Bench, cdn: FakeUpstream
) -> None:
    bench.upstream.mirror_results_to(cdn, hops=3)  # three redirects, the last to the CDN
    bench.telegram.send_message(USER, "/image a red fox")
    photo = (await bench.telegram.wait_for("sendPhoto", timeout=10))[0]
    assert photo.upload("photo")[1].startswith(b"\x89PNG")
    [fetched] = cdn.requests
    assert "authorization" not in fetched.headers  # the key stays with the upstream
    assert bench.upstream.api_key not in str(fetched.headers)
    own = [r for r in bench.upstream.requests if r.path.startswith("/v1/files/")]
    assert len(own) == 3  # the link and two redirects on the upstream's own origin
    assert all(r.headers.get("authorization") for r in own)  # same origin: sent there


async def test_too_many_redirects_end_with_a_message(bench: Bench, cdn: FakeUpstream) -> None:
    bench.upstream.mirror_results_to(cdn, hops=7)
    bench.telegram.send_message(USER, "/image a lost fox")
    reply = (await bench.telegram.wait_for("sendMessage", timeout=10))[0]
    assert "could not process" in reply.params["text"]
    assert not cdn.requests  # gave up after 5 redirects
    files = [r for r in bench.upstream.requests if r.path.startswith("/v1/files/")]
    assert len(files) == 6  # the link and five redirects, not retried
