"""Retry policy as small pure functions (modelled on the official OpenAI client).

Retry 408, 409, 429, >=500 and network/timeout errors; nothing else. The delay honours the
upstream's `retry-after-ms` / `Retry-After` up to `max_retry_after` (anything longer means
"give up now": holding a user's request for minutes is worse than an error), else an
exponential backoff with jitter so that many clients failing together do not retry in lockstep.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "parse_retry_after", "retry_delay", "should_retry"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 120.0


def should_retry(status: int | None) -> bool:
    """None stands for a network or timeout error (no HTTP status at all)."""
    if status is None:
        return True
    return status in (408, 409, 429) or status >= 500


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # Plain dicts are case-sensitive, httpx.Headers is not: fall back to a scan (few headers).
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def _non_negative(value: float) -> float | None:
    if math.isnan(value) or math.isinf(value) or value < 0:
        return None
    return value


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait as the server asked, or None when absent or unparseable.

    `now` (unix time) only matters for the HTTP-date form; it defaults to the current time.
    """
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        try:
            ms = _non_negative(float(raw_ms.strip()))
        except ValueError:
            ms = None
        if ms is not None:
            return ms / 1000.0
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return _non_negative(float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses naive; HTTP dates are GMT anyway
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def retry_delay(
    attempt: int,
    headers: Mapping[str, str] | None,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Delay before retry number `attempt` (0-based), or None to give up.

    Only the upstream's Retry-After can make this None (when it asks for longer than
    `policy.max_retry_after`); counting attempts is the caller's job.
    """
    if headers:
        asked = parse_retry_after(headers)
        if asked is not None:
            return asked if asked <= policy.max_retry_after else None
    backoff = min(policy.base_delay * 2.0 ** max(0, attempt), policy.max_delay)
    jitter = 1.0 - 0.25 * rand()
    return backoff * jitter
