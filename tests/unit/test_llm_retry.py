from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from services.llm.retry import RetryPolicy, parse_retry_after, retry_delay, should_retry


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, True),
        (408, True),
        (409, True),
        (429, True),
        (500, True),
        (502, True),
        (504, True),
        (400, False),
        (401, False),
        (402, False),
        (403, False),
        (404, False),
        (422, False),
    ],
)
def test_should_retry(status: int | None, expected: bool) -> None:
    assert should_retry(status) is expected


def test_retry_after_ms_wins() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5


def test_retry_after_seconds() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after": " 0.25 "}) == 0.25
    assert parse_retry_after(httpx.Headers({"RETRY-AFTER": "7"})) == 7.0


def test_retry_after_http_date() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after({"retry-after": later}, now=now.timestamp()) == pytest.approx(30)
    earlier = format_datetime(datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC), usegmt=True)
    assert parse_retry_after({"retry-after": earlier}, now=now.timestamp()) == 0.0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"retry-after": "soon"},
        {"retry-after": "-3"},
        {"retry-after": "nan"},
        {"retry-after-ms": "abc"},
        {"x-other": "1"},
    ],
)
def test_retry_after_absent_or_unparseable(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers) is None


def test_bad_ms_falls_back_to_seconds() -> None:
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "3"}) == 3.0


def test_delay_honours_retry_after() -> None:
    policy = RetryPolicy()
    assert retry_delay(0, {"retry-after": "3"}, policy) == 3.0
    assert retry_delay(5, {"retry-after": "120"}, policy) == 120.0


def test_delay_gives_up_when_retry_after_is_too_long() -> None:
    assert retry_delay(0, {"retry-after": "121"}, RetryPolicy()) is None
    assert retry_delay(0, {"retry-after": "10"}, RetryPolicy(max_retry_after=5)) is None


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    no_jitter = [retry_delay(n, None, policy, rand=lambda: 0.0) for n in range(7)]
    assert no_jitter == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_stays_within_three_quarters_and_one() -> None:
    policy = RetryPolicy()
    assert retry_delay(1, {}, policy, rand=lambda: 1.0) == pytest.approx(0.75)
    assert retry_delay(1, {}, policy, rand=lambda: 0.0) == pytest.approx(1.0)
    for _ in range(200):
        assert 0.75 <= retry_delay(1, None, policy) <= 1.0


def test_unparseable_retry_after_falls_back_to_backoff() -> None:
    assert retry_delay(0, {"retry-after": "later"}, RetryPolicy(), rand=lambda: 0.0) == 0.5
