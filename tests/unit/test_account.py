"""/balance and /usage: AccountService over stub providers, and the texts it renders into."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from handlers.account import (
    balance_command,
    render_balance,
    render_balances,
    render_usage,
    usage_command,
)
from services.account import (
    AccountService,
    ProviderBalance,
    ProviderSpending,
    UsageReport,
    start_of_day,
)
from services.llm import (
    AuthFailed,
    Balance,
    BalanceUnavailable,
    ModelUnavailable,
    ServiceUnavailable,
    UpstreamError,
)
from services.llm.provider import Provider, ProviderRegistry, TokenBalance
from services.storage import SQLiteStorage, UsageRecord, UsageSummary, UserRecord
from services.storage.base import ProviderUsage
from services.users import Profile
from tests.fakes.clock import FakeClock

NOW = 1_700_006_400.0 + 3600  # one hour into a UTC day
VSEGPT_BALANCE = Balance(10.75, "ok", "2026-12-31", 0, "All good")


class StubBalance:
    """A BalanceSource that answers (or raises) `result`, optionally after `gate` opens."""

    def __init__(self, result: Balance | TokenBalance | Exception) -> None:
        self.result = result
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def balance(self) -> Balance | TokenBalance:
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def provider(
    name: str,
    title: str,
    *,
    primary: bool = False,
    balance: StubBalance | None = None,
    units: tuple[str, ...] = (),
) -> Provider:
    # Chat, catalog and breaker are never touched by the account service.
    unused = cast(Any, None)
    return Provider(
        name=name,
        title=title,
        chat=unused,
        catalog=unused,
        breaker=unused,
        primary=primary,
        balance=balance,
        units=units,
    )


def vsegpt(balance: StubBalance | None = None) -> Provider:
    return provider("openai", "VseGPT", primary=True, balance=balance, units=("credits",))


def gigachat(balance: StubBalance | None = None) -> Provider:
    return provider("gigachat", "GigaChat", balance=balance)


def mashagpt(balance: StubBalance | None = None) -> Provider:
    return provider("mashagpt", "MashaGPT", balance=balance, units=("energy",))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def storage(clock: FakeClock) -> AsyncIterator[SQLiteStorage]:
    store = SQLiteStorage(":memory:", clock=clock)
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


def account(storage: SQLiteStorage, *providers: Provider) -> AccountService:
    return AccountService(ProviderRegistry(providers), storage, clock=lambda: NOW)


# ------------------------------------------------------------------------------- balances


async def test_one_failing_balance_does_not_hide_the_others(storage: SQLiteStorage) -> None:
    tokens = TokenBalance((("GigaChat-2-Pro", 991490.0),))
    down = ServiceUnavailable(502, "bad gateway")
    service = account(
        storage,
        vsegpt(StubBalance(VSEGPT_BALANCE)),
        gigachat(StubBalance(tokens)),
        mashagpt(StubBalance(down)),
    )
    assert await service.balances() == [
        ProviderBalance("openai", "VseGPT", VSEGPT_BALANCE),
        ProviderBalance("gigachat", "GigaChat", tokens),
        ProviderBalance("mashagpt", "MashaGPT", down),
    ]


async def test_only_providers_with_a_balance_are_asked(storage: SQLiteStorage) -> None:
    service = account(storage, vsegpt(), gigachat(StubBalance(BalanceUnavailable(403, "x"))))
    (only,) = await service.balances()
    assert only.name == "gigachat" and isinstance(only.result, BalanceUnavailable)
    assert await account(storage, vsegpt(), gigachat()).balances() == []


async def test_balances_are_asked_concurrently(storage: SQLiteStorage) -> None:
    first, second = StubBalance(VSEGPT_BALANCE), StubBalance(TokenBalance(()))
    first.gate = second.started  # the first answers only once the second has been asked
    service = account(storage, vsegpt(first), gigachat(second))
    results = await asyncio.wait_for(service.balances(), timeout=2)
    assert [item.result for item in results] == [VSEGPT_BALANCE, TokenBalance(())]


async def test_a_bug_is_not_passed_off_as_an_unavailable_balance(storage: SQLiteStorage) -> None:
    service = account(storage, vsegpt(StubBalance(KeyError("credits"))))
    with pytest.raises(KeyError):
        await service.balances()


# ---------------------------------------------------------------------------------- usage


async def add(
    storage: SQLiteStorage,
    clock: FakeClock,
    model: str,
    prompt: int,
    completion: int,
    *,
    credits: float | None = None,
    energy: float | None = None,
    yesterday: bool = False,
) -> None:
    clock.now = NOW - 86400 if yesterday else NOW
    await storage.record_usage(
        UsageRecord(1, 1, model, prompt, completion, credits, "ok", energy=energy)
    )
    clock.now = NOW


async def test_usage_per_provider_today_and_in_total(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    await add(storage, clock, "openai/gpt-4o-mini", 100, 50, credits=0.5, yesterday=True)
    await add(storage, clock, "openai/gpt-4o-mini", 10, 5, credits=0.25)
    await add(storage, clock, "gigachat:GigaChat-2-Max", 30, 20, yesterday=True)
    await add(storage, clock, "mashagpt:gpt-4o", 7, 3, energy=1.5)
    report = await account(storage, vsegpt(), gigachat(), mashagpt()).usage(1)

    assert report.today == UsageSummary(2, 17, 8, 0.25, 1.5)
    assert report.total == UsageSummary(4, 147, 78, 0.75, 1.5)
    assert report.units == ("credits", "energy")
    assert not report.single_provider
    vse, giga, masha = report.by_provider
    assert (vse.name, vse.title, vse.units) == ("openai", "VseGPT", ("credits",))
    assert (vse.today.requests, vse.total.requests, vse.total.credits) == (1, 2, 0.75)
    assert (giga.title, giga.units) == ("GigaChat", ())
    assert giga.today == ProviderUsage("gigachat", 0, 0, 0, None, None)  # nothing today
    assert (masha.title, masha.units, masha.total.energy) == ("MashaGPT", ("energy",), 1.5)


async def test_usage_of_providers_no_longer_configured(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    await add(storage, clock, "mashagpt:gpt-4o", 1, 1, energy=2.0)
    await add(storage, clock, "openai/gpt-4o-mini", 1, 1, credits=0.1)  # bare, and no primary now
    await add(storage, clock, "gigachat:GigaChat-2", 5, 5)
    report = await account(storage, gigachat()).usage(1)
    assert [(s.name, s.title, s.units) for s in report.by_provider] == [
        ("gigachat", "GigaChat", ()),
        ("mashagpt", "mashagpt", ("energy",)),  # its figures are still its own units
        ("", "", ("credits",)),
    ]
    assert not report.single_provider


async def test_a_single_provider_bot_has_no_breakdown(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    report = await account(storage, vsegpt()).usage(1)
    # No records at all: the provider's own unit is still shown (as 0).
    assert (report.by_provider, report.units, report.single_provider) == ((), ("credits",), True)
    await add(storage, clock, "openai/gpt-4o-mini", 1, 1, credits=0.1)
    assert (await account(storage, vsegpt()).usage(1)).single_provider


def test_start_of_day_is_midnight_utc() -> None:
    assert start_of_day(NOW) == NOW - 3600


# -------------------------------------------------------------------- rendering: /balance


def test_credits_balance_block() -> None:
    text = render_balance(ProviderBalance("openai", "VseGPT", VSEGPT_BALANCE), "en", is_admin=True)
    assert text.startswith("💰 <b>VseGPT</b>\n")
    # Raw values read humanly: the date in words, the status code in the reader's words.
    assert "10.75 credits" in text and "until 31 Dec 2026" in text and "🟢 OK" in text
    assert "Subscription: active" in text


def test_token_balance_block_lists_models() -> None:
    tokens = TokenBalance((("GigaChat-2-Pro", 991490.0), ("GigaChat<2>", 12.0)))
    text = render_balance(ProviderBalance("gigachat", "GigaChat", tokens), "en", is_admin=False)
    assert text == (
        "💰 <b>GigaChat</b>\nTokens left:\n• GigaChat-2-Pro: 991 490\n• GigaChat&lt;2&gt;: 12"
    )
    empty = render_balance(
        ProviderBalance("gigachat", "GigaChat", TokenBalance(())), "ru", is_admin=False
    )
    assert "Предоплаченных токенов нет" in empty


@pytest.mark.parametrize(
    ("name", "error", "reason"),
    [
        ("openai", BalanceUnavailable(404, "Not Found"), "not offered by this provider"),
        ("mashagpt", ModelUnavailable(404, ""), "not offered by this provider"),
        (
            "gigachat",
            BalanceUnavailable(403, "Forbidden"),
            "pay-as-you-go account: no prepaid balance",
        ),
    ],
)
@pytest.mark.parametrize("is_admin", [True, False])
def test_no_balance_to_show_is_explained_to_everyone(
    name: str, error: UpstreamError, reason: str, is_admin: bool
) -> None:
    text = render_balance(ProviderBalance(name, "Title", error), "en", is_admin=is_admin)
    assert text.startswith("💰 <b>Title</b>: the balance is not available: ")
    assert text.endswith(reason)


def test_only_gigachats_403_means_pay_as_you_go() -> None:
    error = BalanceUnavailable(403, "Forbidden")
    text = render_balance(ProviderBalance("openai", "VseGPT", error), "en", is_admin=True)
    assert text.endswith("not available: Forbidden")


def test_upstream_reason_is_for_admins_on_one_escaped_line() -> None:
    error = AuthFailed(401, "Bad <key>\n" + "x" * 500)
    item = ProviderBalance("openai", "VseGPT", error)
    admin = render_balance(item, "en", is_admin=True)
    assert "\n" not in admin and "Bad &lt;key&gt; xxx" in admin and admin.endswith("x…")
    assert len(admin) < 300
    user = render_balance(item, "en", is_admin=False)
    assert "Bad" not in user and user.endswith("try again later")
    bare = render_balance(
        ProviderBalance("openai", "V", ServiceUnavailable(None, "")), "en", is_admin=True
    )
    assert bare.endswith("ServiceUnavailable")


def test_balances_are_separate_blocks_or_one_line_when_none() -> None:
    items = [
        ProviderBalance("openai", "VseGPT", VSEGPT_BALANCE),
        ProviderBalance("gigachat", "Giga<Chat>", BalanceUnavailable(403, "")),
    ]
    text = render_balances(items, "en", is_admin=True)
    first, second = text.split("\n\n")
    assert first.startswith("💰 <b>VseGPT</b>") and second.startswith("💰 <b>Giga&lt;Chat&gt;</b>")
    assert render_balances([], "en", is_admin=True) == (
        "💰 None of the bot's AI providers reports an account balance."
    )
    assert "баланс" in render_balances([], "ru", is_admin=True)


# ---------------------------------------------------------------------- rendering: /usage


def usage(
    provider: str,
    requests: int,
    tokens: int,
    credits: float | None = None,
    energy: float | None = None,
) -> ProviderUsage:
    return ProviderUsage(provider, requests, tokens, 0, credits, energy)


def test_usage_text_shows_each_provider_in_its_own_units() -> None:
    report = UsageReport(
        today=UsageSummary(2, 1500, 0, 0.25, 1.5),
        total=UsageSummary(9, 1234567, 0, 1.5, 12.0),
        by_provider=(
            ProviderSpending(
                "openai",
                "VseGPT",
                ("credits",),
                usage("", 1, 1000, 0.25),
                usage("", 5, 1200000, 1.5),
            ),
            ProviderSpending(
                "gigachat", "GigaChat", (), usage("gigachat", 0, 0), usage("gigachat", 3, 34000)
            ),
            ProviderSpending(
                "mashagpt",
                "MashaGPT",
                ("energy",),
                usage("mashagpt", 1, 500, None, 1.5),
                usage("mashagpt", 1, 567, None, 12.0),
            ),
        ),
        units=("credits", "energy"),
        single_provider=False,
    )
    assert render_usage(report, "en") == (
        "📊 <b>Your usage</b>\n"
        "Today: 2 requests, 1,500 tokens, 0.25 credits, 1.50 energy\n"
        "Total: 9 requests, 1,234,567 tokens, 1.50 credits, 12.00 energy\n\n"
        "<b>VseGPT</b>\n"
        "Today: 1 request, 1,000 tokens, 0.25 credits\n"
        "Total: 5 requests, 1,200,000 tokens, 1.50 credits\n\n"
        "<b>GigaChat</b>\n"
        "Today: 0 requests, 0 tokens\n"
        "Total: 3 requests, 34,000 tokens\n\n"
        "<b>MashaGPT</b>\n"
        "Today: 1 request, 500 tokens, 1.50 energy\n"
        "Total: 1 request, 567 tokens, 12.00 energy"
    )
    ru = render_usage(report, "ru")
    assert ru.startswith(
        "📊 <b>Ваш расход</b>\nСегодня: 2 запроса, 1\u00a0500 токенов, 0,25 кредита"
    )
    assert "12,00 энергии" in ru


def test_usage_text_of_a_single_provider_bot_and_of_unnamed_bare_ids() -> None:
    empty = UsageReport(
        UsageSummary(0, 0, 0, 0.0), UsageSummary(0, 0, 0, 0.0), (), ("credits",), True
    )
    assert render_usage(empty, "en") == (
        "📊 <b>Your usage</b>\nToday: 0 requests, 0 tokens, 0.00 credits\n"
        "Total: 0 requests, 0 tokens, 0.00 credits"
    )
    gone = ProviderSpending("", "", (), usage("", 0, 0), usage("", 1, 10))
    report = UsageReport(
        UsageSummary(0, 0, 0, 0.0), UsageSummary(1, 10, 0, 0.0), (gone,), (), False
    )
    assert render_usage(report, "en").endswith(
        "\n\n<b>Main provider</b>\nToday: 0 requests, 0 tokens\nTotal: 1 request, 10 tokens"
    )


# ------------------------------------------------------------------------------- handlers


@dataclass
class FakeMessage:
    answers: list[str] = field(default_factory=list)

    async def answer(self, text: str) -> None:
        self.answers.append(text)


def profile(is_admin: bool) -> Profile:
    user = UserRecord(1, None, None, "en", None, None, None, None, 0.0)
    return Profile(user=user, lang="en", is_admin=is_admin)


async def test_balance_is_for_admins_unless_opened_to_everyone(storage: SQLiteStorage) -> None:
    service = account(storage, vsegpt(StubBalance(VSEGPT_BALANCE)))
    for is_admin, everyone, expected in (
        (False, False, "This command is for the bot's admins."),
        (False, True, "10.75 credits"),
        (True, False, "10.75 credits"),
    ):
        message = FakeMessage()
        await balance_command(cast(Any, message), service, profile(is_admin), everyone)
        assert expected in message.answers[0]


async def test_usage_command_answers_with_the_users_report(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    await add(storage, clock, "openai/gpt-4o-mini", 3, 2, credits=0.01)
    message = FakeMessage()
    await usage_command(cast(Any, message), account(storage, vsegpt()), profile(False))
    assert message.answers == [
        "📊 <b>Your usage</b>\nToday: 1 request, 5 tokens, 0.01 credits\n"
        "Total: 1 request, 5 tokens, 0.01 credits"
    ]
