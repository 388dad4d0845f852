"""The admins' figures: /stats (users, groups, activity, spending, refusals, what this process
is doing now) and /user (one person: settings, usage, quota and standing)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from services.access import Standing, start_of_utc_day
from services.broadcast import BroadcastService
from services.storage import BotStatistics, Broadcast, Storage, UsageSummary, UserRecord
from services.users import UserService, language_for


@dataclass(frozen=True, slots=True)
class StatisticsReport:
    figures: BotStatistics
    uptime: float  # seconds since this process built its services
    broadcast: Broadcast | None  # the one in progress, if any


@dataclass(frozen=True, slots=True)
class UserCard:
    """What /user shows about one person."""

    user: UserRecord
    lang: str  # the interface language they get
    model: str  # the chat model they get: their choice or the bot's default
    default_model: bool  # they chose none
    is_admin: bool
    today: UsageSummary  # since the UTC day began
    total: UsageSummary
    standing: Standing | None  # access and quota; None when no access service is wired


class StandingSource(Protocol):
    """Where a user's access and quota come from (AccessService)."""

    async def standing(self, user_id: int, *, is_admin: bool) -> Standing: ...


class StatisticsService:
    def __init__(
        self,
        storage: Storage,
        broadcasts: BroadcastService,
        *,
        users: UserService | None = None,
        access: StandingSource | None = None,
        default_model: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._broadcasts = broadcasts
        self._users = users
        self._access = access
        self._default_model = default_model
        self._clock = clock
        self._started = clock()

    async def report(self) -> StatisticsReport:
        now = self._clock()
        figures = await self._storage.bot_statistics(now)
        return StatisticsReport(
            figures=figures, uptime=now - self._started, broadcast=self._broadcasts.running
        )

    async def user_card(self, who: int | str) -> UserCard | None:
        """One person by id, or by Telegram username (a str, "@" optional, any case); None
        for nobody the bot knows. A group's settings row (a negative id) is not a person."""
        if isinstance(who, int):
            record = await self._storage.get_user(who) if who > 0 else None
        else:
            record = await self._storage.user_by_username(who.removeprefix("@"))
        if record is None:
            return None
        user_id = record.user_id
        # Through UserService when wired: its cache may be fresher than the row, and it knows
        # the interface language and who is an admin.
        profile = await self._users.get(user_id) if self._users is not None else None
        if profile is not None:
            record, lang, is_admin = profile.user, profile.lang, profile.is_admin
        else:
            lang, is_admin = record.language or language_for(record.language_code), False
        today = await self._storage.usage_summary(user_id, since=start_of_utc_day(self._clock()))
        total = await self._storage.usage_summary(user_id)
        standing = None
        if self._access is not None:
            standing = await self._access.standing(user_id, is_admin=is_admin)
        model = record.model or self._default_model
        return UserCard(record, lang, model, not record.model, is_admin, today, total, standing)
