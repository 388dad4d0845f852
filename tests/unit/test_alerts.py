"""Admins' notices: breaker transitions and balance levels become one notice per event; the
Telegram side renders them per admin and never raises."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiogram.exceptions import TelegramForbiddenError
from aiogram.methods import SendMessage

from handlers.ui.alert_notifier import TelegramAlertNotifier, alert_text
from services.account import ProviderBalance
from services.alerts import Alert, AlertKind, AlertService
from services.llm import Balance, BalanceUnavailable, CircuitBreaker, UpstreamError
from services.llm.provider import TokenBalance
from tests.fakes.clock import FakeClock

# --------------------------------------------------------------------- the breaker's hook


def test_breaker_listeners_hear_each_transition_once() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown=10, clock=clock, min_keys=1)
    heard: list[bool] = []
    breaker.add_listener(heard.append)

    breaker.record_failure()
    assert heard == []
    breaker.record_failure()
    assert heard == [True]
    breaker.record_failure()  # a straggler while open: no transition
    clock.now += 11
    breaker.before_request()  # the probe
    breaker.record_failure()  # a failed probe re-opens: still the same outage
    assert heard == [True]
    clock.now += 11
    breaker.before_request()
    breaker.record_success()
    breaker.record_success()  # already closed
    assert heard == [True, False]
    breaker.record_failure()
    breaker.record_failure()
    assert heard == [True, False, True]


def test_a_failing_listener_never_fails_the_request(caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=FakeClock(), min_keys=1)
    heard: list[bool] = []

    def broken(opened: bool) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    breaker.add_listener(heard.append)
    breaker.record_failure()  # does not raise
    assert breaker.state == "open" and heard == [True]
    assert "listener failed" in caplog.text


# ------------------------------------------------------------------------------ the service


@dataclass
class FakeAccount:
    """AccountService.balances() with answers the test sets."""

    answers: list[ProviderBalance] = field(default_factory=list)

    async def balances(self) -> list[ProviderBalance]:
        return list(self.answers)


@dataclass
class Recorder:
    alerts: list[Alert] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def notify(self, alert: Alert) -> None:
        self.alerts.append(alert)
        self.arrived.set()


@dataclass
class FakeProvider:
    title: str
    breaker: CircuitBreaker


@dataclass
class FakeRegistry:
    providers: list[FakeProvider]


def vsegpt(status: int | None, credits: float = 5.0) -> ProviderBalance:
    return ProviderBalance("openai", "VseGPT", Balance(credits, "ok", None, status, None))


def gigachat(**tokens: float) -> ProviderBalance:
    return ProviderBalance("gigachat", "GigaChat", TokenBalance(tuple(tokens.items())))


def service(
    account: FakeAccount, *providers: FakeProvider, interval: float = 0, threshold: int = 1000
) -> AlertService:
    return AlertService(
        FakeRegistry(list(providers)),  # type: ignore[arg-type]
        account,  # type: ignore[arg-type]
        check_interval=interval,
        tokens_threshold=threshold,
    )


async def delivered(alerts: AlertService, recorder: Recorder) -> list[AlertKind]:
    """Start delivery, let the queue drain, stop: the kinds that reached the notifier."""
    alerts.attach(recorder)
    alerts.start()
    await alerts.close()
    return [alert.kind for alert in recorder.alerts]


async def test_credit_levels_give_one_notice_per_change() -> None:
    account = FakeAccount()
    alerts = service(account)
    for statuses in ([0], [1], [1], [1], [2], [2], [1], [0], [0], [None], [2]):
        account.answers = [vsegpt(statuses[0])]
        await alerts.check_balances()
    assert await delivered(alerts, Recorder()) == [
        AlertKind.BALANCE_LOW,
        AlertKind.BALANCE_VERY_LOW,  # worse: told again
        # 2 -> 1 is better but still low: quiet
        AlertKind.BALANCE_OK,
        # None: the provider gave no verdict, nothing new is known
        AlertKind.BALANCE_VERY_LOW,
    ]


async def test_a_low_balance_at_the_first_check_is_told() -> None:
    account = FakeAccount([vsegpt(1, credits=0.5)])
    alerts = service(account)
    await alerts.check_balances()
    recorder = Recorder()
    assert await delivered(alerts, recorder) == [AlertKind.BALANCE_LOW]
    assert recorder.alerts[0] == Alert(AlertKind.BALANCE_LOW, "VseGPT", credits=0.5)


async def test_token_packages_are_judged_each_on_its_own() -> None:
    account = FakeAccount([gigachat(Pro=5000, Max=500)])
    alerts = service(account, threshold=1000)
    await alerts.check_balances()
    account.answers = [gigachat(Pro=400, Max=300)]
    await alerts.check_balances()
    account.answers = [gigachat(Pro=400, Max=2000)]
    await alerts.check_balances()
    recorder = Recorder()
    assert await delivered(alerts, recorder) == [
        AlertKind.TOKENS_LOW,
        AlertKind.TOKENS_LOW,
        AlertKind.TOKENS_OK,
    ]
    assert [a.model for a in recorder.alerts] == ["Max", "Pro", "Max"]
    assert recorder.alerts[1] == Alert(
        AlertKind.TOKENS_LOW, "GigaChat", model="Pro", tokens=400, threshold=1000
    )


async def test_errors_and_a_zero_threshold_change_nothing() -> None:
    account = FakeAccount([vsegpt(1), gigachat(Pro=1)])
    alerts = service(account, threshold=0)
    await alerts.check_balances()
    unavailable: UpstreamError = BalanceUnavailable(403, "pay-as-you-go")
    account.answers = [ProviderBalance("openai", "VseGPT", unavailable)]
    await alerts.check_balances()  # no answer: still low, nothing said
    assert await delivered(alerts, Recorder()) == [AlertKind.BALANCE_LOW]


async def test_breaker_transitions_are_posted_with_the_provider() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown=1, clock=clock, min_keys=1)
    alerts = service(FakeAccount(), FakeProvider("GigaChat", breaker))
    breaker.record_failure()
    breaker.record_success()
    recorder = Recorder()
    assert await delivered(alerts, recorder) == [
        AlertKind.BREAKER_OPEN,
        AlertKind.BREAKER_CLOSED,
    ]
    assert {alert.provider for alert in recorder.alerts} == {"GigaChat"}


async def test_balances_are_checked_periodically_and_a_failing_check_goes_on() -> None:
    calls = 0

    class Flaky(FakeAccount):
        async def balances(self) -> list[ProviderBalance]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("storage hiccup")
            return [vsegpt(2)]

    alerts = service(Flaky(), interval=0.01)
    recorder = Recorder()
    alerts.attach(recorder)
    alerts.start()
    await asyncio.wait_for(recorder.arrived.wait(), 2)
    await alerts.close()
    assert calls >= 2 and [a.kind for a in recorder.alerts] == [AlertKind.BALANCE_VERY_LOW]


async def test_no_checks_when_the_interval_is_zero() -> None:
    account = FakeAccount([vsegpt(2)])
    alerts = service(account, interval=0)
    recorder = Recorder()
    alerts.attach(recorder)
    alerts.start()
    await asyncio.sleep(0.05)
    await alerts.close()
    assert recorder.alerts == []


async def test_a_failing_notifier_does_not_stop_the_next_notices() -> None:
    class Broken(Recorder):
        async def notify(self, alert: Alert) -> None:
            await super().notify(alert)
            raise RuntimeError("bug")

    account = FakeAccount([vsegpt(1)])
    alerts = service(account)
    await alerts.check_balances()
    account.answers = [vsegpt(0)]
    await alerts.check_balances()
    assert await delivered(alerts, Broken()) == [AlertKind.BALANCE_LOW, AlertKind.BALANCE_OK]


def test_settings_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        service(FakeAccount(), interval=-1)


# ------------------------------------------------------------------------- the Telegram side


@pytest.mark.parametrize(
    ("alert", "en", "ru"),
    [
        (
            Alert(AlertKind.BREAKER_OPEN, "Giga<Chat>"),
            "🔴 <b>Giga&lt;Chat&gt;</b> keeps failing",
            "🔴 <b>Giga&lt;Chat&gt;</b> не отвечает",
        ),
        (
            Alert(AlertKind.BREAKER_CLOSED, "VseGPT"),
            "🟢 <b>VseGPT</b> answers again",
            "🟢 <b>VseGPT</b> снова отвечает",
        ),
        (
            Alert(AlertKind.BALANCE_LOW, "VseGPT", credits=1234.5),
            "the balance is low (1 234.50 credits)",
            "баланс на исходе (1 234.50 кред.)",
        ),
        (
            Alert(AlertKind.BALANCE_VERY_LOW, "VseGPT"),
            "🔴 <b>VseGPT</b>: the balance is very low. Top it up now",
            "баланс почти исчерпан. Пополните",
        ),
        (
            Alert(
                AlertKind.TOKENS_LOW,
                "GigaChat",
                model="GigaChat-2-Pro",
                tokens=9500.4,
                threshold=10000,
            ),
            "9 500 tokens left for GigaChat-2-Pro (below 10 000)",
            "для GigaChat-2-Pro осталось токенов: 9 500 (меньше 10 000)",
        ),
    ],
)
def test_alert_texts(alert: Alert, en: str, ru: str) -> None:
    assert en in alert_text(alert, "en")
    assert ru in alert_text(alert, "ru")


def test_every_kind_has_a_text() -> None:
    for kind in AlertKind:
        for lang in ("en", "ru"):
            assert "Prov" in alert_text(Alert(kind, "Prov", model="m", tokens=1), lang)


class FakeBot:
    def __init__(self, refuse: set[int]) -> None:
        self.refuse = refuse
        self.sent: list[tuple[int, str]] = []

    async def send_message(self, chat_id: int, text: str, **_: Any) -> None:
        if chat_id in self.refuse:
            method = SendMessage(chat_id=chat_id, text=text)
            raise TelegramForbiddenError(method, "Forbidden: bot was blocked by the user")
        self.sent.append((chat_id, text))


class FakeUsers:
    async def get(self, user_id: int) -> Any:
        if user_id == 2:
            return type("P", (), {"lang": "ru"})()
        return None  # never seen: English


async def test_each_admin_in_their_language_and_failures_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = FakeBot(refuse={3})
    notifier = TelegramAlertNotifier(bot, FakeUsers(), frozenset({1, 2, 3}))  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING)
    for kind in (AlertKind.BREAKER_OPEN, AlertKind.BREAKER_CLOSED):
        await notifier.notify(Alert(kind, "VseGPT"))
    assert [chat for chat, _ in bot.sent] == [1, 2, 1, 2]
    assert "keeps failing" in bot.sent[0][1] and "не отвечает" in bot.sent[1][1]
    failures = [r for r in caplog.records if "not delivered to 3" in r.getMessage()]
    assert len(failures) == 1
    # Reachable again: logged again when it next fails.
    bot.refuse.clear()
    await notifier.notify(Alert(AlertKind.BREAKER_OPEN, "VseGPT"))
    bot.refuse.add(3)
    await notifier.notify(Alert(AlertKind.BREAKER_OPEN, "VseGPT"))
    failures = [r for r in caplog.records if "not delivered to 3" in r.getMessage()]
    assert len(failures) == 2
