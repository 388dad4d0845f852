"""One rate limit, as the shared (GCRA) limiter and the local pacer both describe it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Rate"]


@dataclass(frozen=True, slots=True)
class Rate:
    """`per_second` starts under `key`, `burst` of them back to back after a pause."""

    key: str
    per_second: float
    burst: float = 1.0

    @property
    def interval(self) -> float:
        return 1.0 / self.per_second

    @property
    def tolerance(self) -> float:
        """How far ahead of its even spacing a start may be (GCRA's burst tolerance)."""
        return (max(self.burst, 1.0) - 1.0) / self.per_second
