from __future__ import annotations

import pytest

from services.llm.breaker import CircuitBreaker
from services.llm.errors import CircuitOpen


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(clock: FakeClock, threshold: int = 3, cooldown: float = 10.0) -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=threshold, cooldown=cooldown, clock=clock)
    for _ in range(threshold):
        breaker.before_request()
        breaker.record_failure()
    assert breaker.state == "open"
    return breaker


def test_opens_after_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.before_request()
    breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as info:
        breaker.before_request()
    assert info.value.retry_after == pytest.approx(10)
    assert info.value.status is None


def test_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10, clock=FakeClock())
    for _ in range(5):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_request()


def test_half_open_lets_one_probe_through_and_success_closes() -> None:
    clock = FakeClock()
    breaker = opened(clock)
    clock.now += 9.9
    with pytest.raises(CircuitOpen):
        breaker.before_request()
    clock.now += 0.1
    assert breaker.state == "half_open"
    breaker.before_request()  # the probe
    with pytest.raises(CircuitOpen):
        breaker.before_request()  # everybody else still fails fast
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_request()
    breaker.before_request()


def test_failed_probe_reopens_for_another_cooldown() -> None:
    clock = FakeClock()
    breaker = opened(clock)
    clock.now += 10
    breaker.before_request()
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 5
    with pytest.raises(CircuitOpen):
        breaker.before_request()
    clock.now += 5
    breaker.before_request()
    breaker.record_success()
    assert breaker.state == "closed"


def test_stragglers_do_not_extend_the_cooldown() -> None:
    clock = FakeClock()
    breaker = opened(clock)
    clock.now += 5
    breaker.record_failure()  # a request sent before the breaker opened
    clock.now += 5
    assert breaker.state == "half_open"


def test_a_probe_that_never_reports_does_not_wedge_the_breaker() -> None:
    clock = FakeClock()
    breaker = opened(clock)
    clock.now += 10
    breaker.before_request()  # the probe's caller is cancelled and never reports
    clock.now += 9
    with pytest.raises(CircuitOpen):
        breaker.before_request()
    clock.now += 1
    breaker.before_request()  # a new probe


def test_rejects_silly_threshold() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
