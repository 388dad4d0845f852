"""The admins' levers without Telegram: storage (groups apart from people, refusals, lookup by
username), /broadcast <text>'s payload, /user's card, /stats' added lines, /balance's words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from aiogram.types import MessageEntity

from handlers.account import human_date, parse_date, render_balance
from handlers.admin import parse_user_query, refusals_text, stats_text, user_card_text
from handlers.ui.broadcast import command_payload
from handlers.ui.texts import t
from services.access import Standing
from services.account import ProviderBalance
from services.llm import Balance
from services.statistics import StatisticsReport, StatisticsService, UserCard
from services.storage import BotStatistics, RefusalCount, SQLiteStorage, UsageRecord, UsageSummary
from services.storage import sqlite as sqlite_module
from tests.fakes.clock import FakeClock

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
DAY = 86400.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def storage(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SQLiteStorage]:
    store = SQLiteStorage(tmp_path / "bot.db", clock=clock)
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


async def person(store: SQLiteStorage, user_id: int, username: str | None = None) -> None:
    await store.upsert_user(user_id, username=username, first_name="P", language_code="en")


async def group(store: SQLiteStorage, chat_id: int) -> None:
    # How part "groups" stores a group's settings: a users row under its chat id.
    await store.upsert_user(chat_id, username=None, first_name="Team", language_code=None)


# -------------------------------------------------------------------------------- storage


async def test_groups_are_not_users_nor_recipients(storage: SQLiteStorage) -> None:
    await person(storage, 1)
    await person(storage, 2)
    await group(storage, -100500)
    await group(storage, -42)
    assert await storage.count_users() == 2
    assert await storage.count_broadcast_recipients() == 2
    assert await storage.broadcast_recipients(0, 10) == [1, 2]
    # Even a cursor below zero (never stored, but the contract says so) skips them.
    assert await storage.broadcast_recipients(-1_000_000_000_000, 10) == [1, 2]


async def test_statistics_count_groups_apart(storage: SQLiteStorage, clock: FakeClock) -> None:
    await person(storage, 1)
    await group(storage, -100500)
    await group(storage, -100600)
    await group(storage, -100700)
    await storage.set_users_blocked([-100700], True)  # the bot was removed from it

    def usage(user: int, chat: int) -> UsageRecord:
        return UsageRecord(user, chat, "m", 1, 1, None, "ok")

    clock.now = NOW - 3 * DAY
    await storage.record_usage(usage(1, -100600))
    clock.now = NOW - 60
    await storage.record_usage(usage(1, -100500))
    await storage.record_usage(usage(1, -100500))
    await storage.record_usage(usage(1, 1))  # private: not a group
    stats = await storage.bot_statistics(NOW)
    assert (stats.users, stats.blocked_users, stats.new_users_day) == (1, 0, 1)
    assert (stats.groups, stats.groups_left) == (3, 1)
    assert (stats.groups_active_day, stats.groups_active_week) == (1, 2)
    assert stats.active_day == 1 and stats.requests_day == 3  # group questions are requests


async def test_statistics_read_refusals_by_utc_day(storage: SQLiteStorage) -> None:
    today = "2023-11-14"  # NOW's UTC day
    for reason, day, times in (
        ("flood", today, 2),
        ("flood", "2023-11-13", 3),
        ("banned", "2023-10-16", 1),  # 29 days before today: in the 30 days
        ("banned", "2023-10-15", 7),  # 30 days before: out
        ("quota_tokens", "2023-10-01", 4),  # out
    ):
        for _ in range(times):
            await storage.count_refusal(reason, day)
    stats = await storage.bot_statistics(NOW)
    assert stats.refusals == (RefusalCount("banned", 0, 1), RefusalCount("flood", 2, 5))


async def test_refusals_use_the_primary_key(storage: SQLiteStorage) -> None:
    rows = await storage._conn.execute_fetchall(
        "EXPLAIN QUERY PLAN " + sqlite_module._SQL_REFUSALS, {"today": "b", "month": "a"}
    )
    assert any("USING INDEX sqlite_autoindex_refusals_1 (day>?)" in str(r[-1]) for r in rows)


async def test_user_by_username_ignores_case_and_groups(storage: SQLiteStorage) -> None:
    await person(storage, 5, "Alice_W")
    await person(storage, 6, "bob")
    found = await storage.user_by_username("alice_w")
    assert found is not None and found.user_id == 5
    assert (await storage.user_by_username("@ALICE_W")) == found
    assert await storage.user_by_username("carol") is None
    assert await storage.user_by_username("") is None


# ---------------------------------------------------------------------- /broadcast <text>


def entity(kind: str, offset: int, length: int) -> MessageEntity:
    return MessageEntity(type=kind, offset=offset, length=length)


def test_payload_drops_the_command_and_shifts_the_formatting() -> None:
    text = "/broadcast  Hello *world*"
    entities = [entity("bot_command", 0, 10), entity("bold", 18, 7), entity("italic", 5, 15)]
    payload, shifted = command_payload(text, entities) or ("", [])
    assert payload == "Hello *world*"
    # bold moves with the text; italic began inside the command and is clipped to the text.
    assert [(e.type, e.offset, e.length) for e in shifted] == [
        ("bold", 6, 7),
        ("italic", 0, 8),
    ]


def test_payload_offsets_count_utf16_units() -> None:
    text = "/broadcast@my_bot 🎉 party\nnext line "
    start = len("/broadcast@my_bot 🎉 ".encode("utf-16-le")) // 2
    payload, shifted = command_payload(text, [entity("underline", start, 5)]) or ("", [])
    assert payload == "🎉 party\nnext line"
    assert [(e.offset, e.length) for e in shifted] == [(3, 5)]  # the emoji is 2 units


@pytest.mark.parametrize("text", ["/broadcast", "/broadcast   ", "/broadcast\n\n", "/broadcast@b"])
def test_no_payload(text: str) -> None:
    assert command_payload(text, [entity("bot_command", 0, len(text.split()[0]))]) is None


def test_a_payload_on_the_next_line() -> None:
    assert command_payload("/broadcast\nHi there", None) == ("Hi there", [])


# ---------------------------------------------------------------------------------- /user


@pytest.mark.parametrize(
    ("args", "who"),
    [
        ("123", 123),
        (" 123 ", 123),
        ("-5", -5),
        ("@Alice_W", "Alice_W"),
        ("alice", "alice"),
        (None, None),
        ("", None),
        ("1 2", None),
        ("@", None),
        ("@bad-name", None),
        ("@имя", None),
    ],
)
def test_parse_user_query(args: str | None, who: int | str | None) -> None:
    assert parse_user_query(args) == who


def card(**changes: object) -> UserCard:
    from services.storage import UserRecord

    user = UserRecord(
        user_id=77,
        username="al<ice",
        first_name="Al & Co",
        language_code="ru",
        language=None,
        model=None,
        system_prompt=None,
        temperature=None,
        created_at=NOW,
    )
    standing = Standing(
        banned=False,
        allowed=True,
        requests_today=3,
        tokens_today=1200,
        requests_limit=5,
        tokens_limit=0,
        limit_overridden=True,
        resets_at=NOW,
        exempt=False,
    )
    values: dict[str, object] = {
        "user": user,
        "lang": "ru",
        "model": "openai/gpt-4o-mini",
        "default_model": True,
        "is_admin": False,
        "today": UsageSummary(3, 1000, 200, 0.0),
        "total": UsageSummary(21, 5000, 1000, 1.5),
        "standing": standing,
    }
    values.update(changes)
    return UserCard(**values)  # type: ignore[arg-type]


def test_user_card_text() -> None:
    text = user_card_text(card(), "en")
    assert text.splitlines() == [
        "👤 <b>Al &amp; Co</b> · <code>77</code> · @al&lt;ice",
        "✅ may use the bot · 💬 has not blocked the bot",
        "🌐 Language: Русский · 🤖 Model: <code>openai/gpt-4o-mini</code> (the default)",
        "📊 Today: 3 requests, 1,200 tokens",
        "📈 Total: 21 requests, 6,000 tokens, 1.50 credits",
        "⏳ Daily limit: 3 of 5 requests used · tokens: no limit (set by /limit)",
    ]
    russian = user_card_text(card(), "ru")
    assert "⏳ Дневной лимит: 3 из 5 запросов · токены: без лимита (задан через /limit)" in russian


def test_user_card_of_an_admin_without_access_service() -> None:
    text = user_card_text(card(is_admin=True, standing=None, default_model=False), "en")
    assert "🛡 admin · 💬 has not blocked the bot" in text
    assert "(the default)" not in text and "Daily limit" not in text
    assert not text.endswith("\n")


async def test_user_card_service(storage: SQLiteStorage, clock: FakeClock) -> None:
    class Access:
        async def standing(self, user_id: int, *, is_admin: bool) -> Standing:
            return Standing(True, False, 0, 0, 0, 0, False, NOW, is_admin)

    await person(storage, 9, "Zed")
    await storage.update_user_settings(9, model="gigachat:GigaChat-2", language="ru")
    await group(storage, -100)
    clock.now = NOW - 2 * DAY
    await storage.record_usage(UsageRecord(9, 9, "m", 10, 5, 0.5, "ok"))
    clock.now = NOW
    await storage.record_usage(UsageRecord(9, 9, "m", 1, 1, None, "ok"))
    statistics = StatisticsService(
        storage,
        None,
        access=Access(),
        default_model="d",
        clock=clock,  # type: ignore[arg-type]
    )
    found = await statistics.user_card("@zed")
    assert found is not None and found == await statistics.user_card(9)
    assert (found.lang, found.model, found.default_model) == ("ru", "gigachat:GigaChat-2", False)
    assert (found.today.requests, found.total.requests) == (1, 2)
    assert found.standing is not None and found.standing.banned
    assert await statistics.user_card(-100) is None  # a group's row is not a person
    assert await statistics.user_card(12345) is None


# --------------------------------------------------------------------------------- /stats


def figures(**changes: object) -> BotStatistics:
    values: dict[str, object] = dict.fromkeys(
        (
            "users",
            "blocked_users",
            "new_users_day",
            "new_users_week",
            "active_day",
            "active_week",
            "active_month",
            "requests_day",
            "requests_week",
            "requests_month",
            "tokens_month",
        ),
        0,
    )
    values.update(credits_month=0.0, top_models=())
    values.update(changes)
    return BotStatistics(**values)  # type: ignore[arg-type]


def test_refusals_in_the_order_they_are_checked() -> None:
    stats = figures(
        refusals=(
            RefusalCount("flood", 1, 4),
            RefusalCount("banned", 0, 2),
            RefusalCount("zzz_new", 1, 1),
            RefusalCount("quota_requests", 0, 0),
        )
    )
    assert refusals_text(stats, "en") == (
        "🚧 Refused (today / 30 days):\n"
        "• banned: 0 / 2\n"
        "• too many messages: 1 / 4\n"
        "• zzz_new: 1 / 1"
    )
    assert "• заблокированы: 0 / 2" in refusals_text(stats, "ru")
    assert refusals_text(figures(), "en") == "🚧 Refused: none in 30 days"


def test_stats_text_adds_groups_and_keeps_the_broadcast_last() -> None:
    from services.storage import Broadcast

    running = Broadcast(4, 1, 1, 1, "en", "running", 10, 0, 3, 0, 0, None, NOW, NOW, None)
    stats = figures(users=5, groups=2, groups_left=1, groups_active_day=1, groups_active_week=2)
    text = stats_text(StatisticsReport(stats, 90.0, running), "en")
    lines = text.splitlines()
    assert lines[-3] == "👪 Groups: 2 (removed the bot: 1) · active 24 h / 7 d: 1 / 2"
    assert lines[-2] == "🚧 Refused: none in 30 days"
    assert lines[-1].startswith("📣 Broadcast #4 in progress")


# ------------------------------------------------------------------------------- /balance


@pytest.mark.parametrize(
    ("raw", "day"),
    [
        ("2026-12-31", date(2026, 12, 31)),
        ("2026-12-31T23:59:59Z", date(2026, 12, 31)),
        ("2026-12-31 10:00:00", date(2026, 12, 31)),
        ("1796083200", date(2026, 12, 1)),
        ("1796083200000", date(2026, 12, 1)),  # milliseconds
        ("1796083200.5", date(2026, 12, 1)),
        ("31.12.2026", date(2026, 12, 31)),
        (" 2026-01-06 ", date(2026, 1, 6)),
        ("soon", None),
        ("99.99.2026", None),
        ("", None),
    ],
)
def test_parse_date(raw: str, day: date | None) -> None:
    assert parse_date(raw) == day


def test_human_date() -> None:
    assert human_date("2026-12-06", "en") == "6 Dec 2026"
    assert human_date("2026-05-01", "ru") == "1 мая 2026"
    assert human_date("next <year>", "en") == "next &lt;year&gt;"


@pytest.mark.parametrize(
    ("status", "text", "en", "ru"),
    [
        (0, "raw", "🟢 OK", "🟢 всё в порядке"),
        (1, "raw", "🟡 low balance", "🟡 баланс на исходе"),
        (2, "raw", "🔴 very low balance", "🔴 баланс почти исчерпан"),
        (7, "Odd <status>", "⚪ Odd &lt;status&gt;", "⚪ Odd &lt;status&gt;"),
        (None, None, "Status: 🟢 —", "Статус: 🟢 —"),
    ],
)
def test_balance_status_in_words(status: int | None, text: str | None, en: str, ru: str) -> None:
    item = ProviderBalance("openai", "VseGPT", Balance(1234.5, "none", "1796083200", status, text))
    assert en in render_balance(item, "en", is_admin=True)
    shown = render_balance(item, "ru", is_admin=True)
    assert ru in shown
    assert "1 234.50" in shown and "до 1 декабря 2026" in shown and "Подписка: нет" in shown


def test_help_line_variants() -> None:
    assert "/balance" in t("en", "admin-help-usage-balance")
    assert "/balance" not in t("ru", "admin-help-usage")
