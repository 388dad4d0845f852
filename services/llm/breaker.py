"""A consecutive-failure circuit breaker for the upstream.

When the upstream is down, sending every user's request into it only lengthens its recovery and
makes each user wait for the retries; an open breaker fails fast instead. After `cooldown` one
probe request is let through: its success closes the breaker, its failure re-opens it.

It judges the service, not one request: callers report each request once (not each attempt),
with the key of whoever sent it. The breaker opens only when the failures since the last
success come from at least `min_keys` different keys, so one user repeating a question the
upstream chokes on (a 5xx on that input only) cannot shut the bot for everyone; any success
resets the count. A failure without a key counts as a key of its own.

Listeners (`add_listener`) hear each transition once: closed → open when it opens, open →
closed when a success closes it. A failed probe re-opening an open breaker is no transition:
whoever listens (the admins' notices) hears of an outage once, not every cooldown.

Shared (`shared`, REDIS_URL): the open/closed state is one for all replicas. A replica's own
transition is reported to `shared`, which decides it atomically on Redis: only the replica
that made it there tells the listeners (one admin notice for all replicas), and the others
`follow` it at once (they stop sending too, or start again), without announcing. Failure
counts and the half-open probe stay per replica (each replica probes once per cooldown).
Redis unreachable: the transition is this replica's alone and announced here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Protocol

from services.llm.errors import CircuitOpen

__all__ = ["BreakerListener", "CircuitBreaker", "SharedBreaker"]

log = logging.getLogger(__name__)

# Called with True when the breaker opens and False when it closes again. Runs inline in the
# request that caused the transition: it must be quick and must not block (schedule work).
BreakerListener = Callable[[bool], None]


class SharedBreaker(Protocol):
    """A breaker's state shared by replicas (services/shared/breaker.py on Redis)."""

    def attach(self, breaker: CircuitBreaker) -> None:
        """Keep `breaker` following the other replicas' transitions."""

    def transition(self, breaker: CircuitBreaker, opened: bool) -> None:
        """`breaker` just opened (closed) here: decide it for all replicas and call
        `breaker.announce(opened)` if this replica made the transition (or alone knows of it)."""


_CLOSED = "closed"
_OPEN = "open"
_HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 8,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        min_keys: int = 2,
        shared: SharedBreaker | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if min_keys < 1:
            raise ValueError("min_keys must be at least 1")
        self._threshold = failure_threshold
        # A threshold below min_keys asks for a breaker that opens sooner: it wins.
        self._min_keys = min(min_keys, failure_threshold)
        # Distinct keys among the failures since the last success; kept only up to min_keys.
        self._keys: set[Hashable] = set()
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None  # None = closed
        self._probe_at: float | None = None  # when the half-open probe was let through
        self._listeners: list[BreakerListener] = []
        self._shared = shared
        if shared is not None:
            shared.attach(self)

    def add_listener(self, listener: BreakerListener) -> None:
        """Call `listener(opened)` on every transition (see the module docstring)."""
        self._listeners.append(listener)

    def announce(self, opened: bool) -> None:
        """Tell the listeners of a transition (the shared state calls it for the winner)."""
        for listener in self._listeners:
            try:
                listener(opened)
            except Exception:
                # A listener's bug must never fail the request that reported the outcome.
                log.exception("circuit breaker listener failed")

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return _CLOSED
        if self._clock() - self._opened_at < self._cooldown:
            return _OPEN
        return _HALF_OPEN

    def before_request(self) -> None:
        """Raise CircuitOpen unless a request may go out now."""
        opened_at = self._opened_at
        if opened_at is None:
            return
        now = self._clock()
        reopen_in = opened_at + self._cooldown - now
        if reopen_in > 0:
            raise CircuitOpen(
                None,
                f"circuit open after {self._failures} consecutive upstream failures",
                retry_after=reopen_in,
            )
        # Half-open. A probe that never reported back (its caller was cancelled, say) must not
        # wedge the breaker: after another cooldown the next caller becomes the probe.
        if self._probe_at is not None and now - self._probe_at < self._cooldown:
            raise CircuitOpen(
                None,
                "circuit half-open: a probe request is in flight",
                retry_after=self._probe_at + self._cooldown - now,
            )
        self._probe_at = now

    def record_success(self, key: Hashable = None) -> None:
        """A request got an answer (any key's success shows the service works)."""
        was_open = self._opened_at is not None
        self._failures = 0
        self._keys.clear()
        self._opened_at = None
        self._probe_at = None
        if was_open:
            self._transition(False)

    def record_failure(self, key: Hashable = None) -> None:
        """Count a request that failed for upstream-health reasons (5xx, 429, timeout,
        network error) after its retries; `key` says whose request it was."""
        self._failures += 1
        if len(self._keys) < self._min_keys:
            self._keys.add(object() if key is None else key)
        if self._opened_at is not None:
            # A failed probe (or a straggler from before opening) restarts the cooldown.
            if self._probe_at is not None:
                self._opened_at = self._clock()
                self._probe_at = None
            return
        if self._failures >= self._threshold and len(self._keys) >= self._min_keys:
            self._opened_at = self._clock()
            self._probe_at = None
            self._transition(True)

    def _transition(self, opened: bool) -> None:
        if self._shared is None:
            self.announce(opened)
        else:
            self._shared.transition(self, opened)

    def follow(self, opened: bool, elapsed: float = 0.0) -> None:
        """Another replica opened (closed) the breaker: do the same here, without telling the
        listeners. `elapsed`: how long ago it opened (the cooldown runs from then)."""
        if not opened:
            self._failures = 0
            self._keys.clear()
            self._opened_at = None
            self._probe_at = None
        elif self._opened_at is None:
            self._opened_at = self._clock() - max(0.0, elapsed)
            self._probe_at = None

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, failures={self._failures})"
