"""The upstream account's balance, and each user's own usage."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from services.llm import Balance, MediaClient
from services.storage import Storage, UsageSummary


@dataclass(frozen=True, slots=True)
class UsageReport:
    today: UsageSummary
    total: UsageSummary


def start_of_day(now: float) -> float:
    """Midnight UTC of the day `now` falls in."""
    return now - now % 86400


class AccountService:
    def __init__(
        self, media: MediaClient, storage: Storage, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._media = media
        self._storage = storage
        self._clock = clock

    async def balance(self) -> Balance:
        return await self._media.balance()

    async def usage(self, user_id: int) -> UsageReport:
        today = await self._storage.usage_summary(user_id, since=start_of_day(self._clock()))
        total = await self._storage.usage_summary(user_id)
        return UsageReport(today, total)
