"""The providers' account balances, and each user's own usage per provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from services.access import Standing
from services.llm import Balance, UpstreamError
from services.llm.provider import BalanceSource, Provider, ProviderRegistry, TokenBalance
from services.storage import Storage, UsageSummary
from services.storage.base import ProviderUsage

# The units /usage may show besides tokens, in display order (Provider.units uses these names).
USAGE_UNITS: tuple[str, ...] = ("credits", "energy")


@dataclass(frozen=True, slots=True)
class ProviderBalance:
    """One provider's answer to "what is left on the account": its figures, or why not."""

    name: str
    title: str
    # VseGPT-style credits and subscription, prepaid tokens per model (GigaChat), or the error
    # the provider raised: one failing provider must not hide the others' balances.
    result: Balance | TokenBalance | UpstreamError


@dataclass(frozen=True, slots=True)
class ProviderSpending:
    """A user's usage of one provider, today and in total."""

    name: str  # the provider's name, or the namespace of one no longer configured
    # What users see: Provider.title, the namespace of a provider no longer configured, or ""
    # for bare model ids when no primary provider is configured (the caller names those).
    title: str
    # The units to show besides tokens: the ones the provider bills in (Provider.units) plus
    # any its records carry figures for, in USAGE_UNITS order.
    units: tuple[str, ...]
    today: ProviderUsage
    total: ProviderUsage


@dataclass(frozen=True, slots=True)
class UsageReport:
    today: UsageSummary
    total: UsageSummary
    # Configured providers first (in menu order), then the ones no longer configured.
    by_provider: tuple[ProviderSpending, ...]
    units: tuple[str, ...]  # the units of the overall lines: any provider's units
    # One provider is configured and every record is its own: a breakdown would only repeat
    # the overall lines.
    single_provider: bool
    # The user's daily quota (what is left today); None when no quota source is wired.
    quota: Standing | None = None


def start_of_day(now: float) -> float:
    """Midnight UTC of the day `now` falls in."""
    return now - now % 86400


def summary_of(groups: Iterable[ProviderUsage]) -> UsageSummary:
    """The overall totals of a per-provider breakdown (credits and energy 0.0 when none
    carried any), as ``Storage.usage_summary`` gives them for the same records."""
    groups = tuple(groups)
    return UsageSummary(
        requests=sum(g.requests for g in groups),
        prompt_tokens=sum(g.prompt_tokens for g in groups),
        completion_tokens=sum(g.completion_tokens for g in groups),
        credits=sum((g.credits for g in groups if g.credits is not None), 0.0),
        energy=sum((g.energy for g in groups if g.energy is not None), 0.0),
    )


def units_with_figures(usage: ProviderUsage) -> set[str]:
    figures = {"credits": usage.credits, "energy": usage.energy}
    return {unit for unit, value in figures.items() if value is not None}


async def _balance_or_error(source: BalanceSource) -> Balance | TokenBalance | UpstreamError:
    try:
        return await source.balance()
    except UpstreamError as error:
        return error


class QuotaSource(Protocol):
    """Where /usage reads what is left of the user's daily quota (AccessService)."""

    async def standing(self, user_id: int, *, is_admin: bool) -> Standing: ...


class AccountService:
    def __init__(
        self,
        registry: ProviderRegistry,
        storage: Storage,
        *,
        clock: Callable[[], float] = time.time,
        quota: QuotaSource | None = None,
    ) -> None:
        self._registry = registry
        self._storage = storage
        self._clock = clock
        self._quota = quota

    async def balances(self) -> list[ProviderBalance]:
        """Every provider that offers a balance, in menu order; empty when none does.

        The providers are asked concurrently, so the slowest one sets the wait, not their sum.
        """
        providers = [
            (p, p.balance)
            for p in self._registry.with_capability("balance")
            if p.balance is not None
        ]
        results = await asyncio.gather(*(_balance_or_error(source) for _, source in providers))
        return [
            ProviderBalance(provider.name, provider.title, result)
            for (provider, _), result in zip(providers, results, strict=True)
        ]

    async def usage(self, user_id: int, *, is_admin: bool = False) -> UsageReport:
        today = await self._storage.usage_by_provider(user_id, since=start_of_day(self._clock()))
        total = await self._storage.usage_by_provider(user_id)
        spending = self._spending(today, total)
        configured = self._registry.providers
        declared = {unit for p in configured for unit in p.units}
        units = declared.union(*(s.units for s in spending))
        quota = None
        if self._quota is not None:
            quota = await self._quota.standing(user_id, is_admin=is_admin)
        return UsageReport(
            today=summary_of(today),
            total=summary_of(total),
            by_provider=spending,
            units=tuple(u for u in USAGE_UNITS if u in units),
            single_provider=len(configured) == 1
            and all(s.name == configured[0].name for s in spending),
            quota=quota,
        )

    def _spending(
        self, today: tuple[ProviderUsage, ...], total: tuple[ProviderUsage, ...]
    ) -> tuple[ProviderSpending, ...]:
        today_by_namespace = {g.provider: g for g in today}
        order = {p.name: i for i, p in enumerate(self._registry.providers)}
        spending: list[tuple[tuple[int, int, str], ProviderSpending]] = []
        for group in total:
            provider = self._provider_of(group.provider)
            name = provider.name if provider else group.provider
            title = provider.title if provider else group.provider
            declared = set(provider.units) if provider else set()
            units = declared | units_with_figures(group)
            item = ProviderSpending(
                name=name,
                title=title,
                units=tuple(u for u in USAGE_UNITS if u in units),
                today=today_by_namespace.get(group.provider, _nothing(group.provider)),
                total=group,
            )
            # Configured ones in menu order, then gone ones by name, unnamed bare ids last.
            key = (order[name], 0, "") if provider else (len(order), 0 if name else 1, name)
            spending.append((key, item))
        spending.sort(key=lambda pair: pair[0])
        return tuple(item for _, item in spending)

    def _provider_of(self, namespace: str) -> Provider | None:
        """The configured provider of a namespace ("" = bare ids = the primary one)."""
        if namespace:
            return self._registry.get(namespace)
        return next((p for p in self._registry.providers if p.primary), None)


def _nothing(namespace: str) -> ProviderUsage:
    return ProviderUsage(namespace, 0, 0, 0, None, None)
