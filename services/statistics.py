"""The admins' /stats: users, activity and spending, plus what this process is doing now."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from services.broadcast import BroadcastService
from services.storage import BotStatistics, Broadcast, Storage


@dataclass(frozen=True, slots=True)
class StatisticsReport:
    figures: BotStatistics
    uptime: float  # seconds since this process built its services
    broadcast: Broadcast | None  # the one in progress, if any


class StatisticsService:
    def __init__(
        self,
        storage: Storage,
        broadcasts: BroadcastService,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._broadcasts = broadcasts
        self._clock = clock
        self._started = clock()

    async def report(self) -> StatisticsReport:
        now = self._clock()
        figures = await self._storage.bot_statistics(now)
        return StatisticsReport(
            figures=figures, uptime=now - self._started, broadcast=self._broadcasts.running
        )
