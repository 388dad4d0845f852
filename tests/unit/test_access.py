"""AccessService: ban → access list → flood → quota, on a real SQLite store and a hand-set clock;
the texts of refusals and of what is left today; the storage methods behind them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from handlers.access import parse_id, parse_limit, quota_text, refusal_text, wait_text
from handlers.account import render_usage
from services.access import (
    PASS,
    AccessService,
    Refusal,
    Standing,
    Verdict,
    next_utc_midnight,
    start_of_utc_day,
    utc_day,
)
from services.account import UsageReport
from services.storage import SQLiteStorage, UsageRecord, UsageSummary
from tests.fakes.clock import FakeClock
from tests.unit.storage_backends import BACKENDS, backend_storage, fetch

DAY = 86400.0
MIDNIGHT = 1_700_006_400.0  # a UTC midnight (2023-11-15)
NOW = MIDNIGHT + 18 * 3600 + 48 * 60  # 18:48 UTC: 5 h 12 min before the next midnight
USER = 501
OTHER = 502
GROUP = -100777


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture(params=BACKENDS)
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[SQLiteStorage]:
    async with backend_storage(request.param, clock, tmp_path / "bot.db") as store:
        yield store


def service(storage: SQLiteStorage, clock: FakeClock, **options: object) -> AccessService:
    # One hand-set clock for the day and the windows: the tests move time by hand.
    return AccessService(storage, clock=clock, monotonic=clock, **options)  # type: ignore[arg-type]


async def answered(
    storage: SQLiteStorage, user: int = USER, *, status: str = "ok", tokens: int = 10
) -> None:
    await storage.record_usage(UsageRecord(user, user, "m", tokens // 2, tokens // 2, None, status))


async def check(
    access: AccessService,
    user: int = USER,
    *,
    chat: int | None = None,
    admin: bool = False,
    burst: str | None = None,
) -> Verdict:
    return await access.check(
        user_id=user,
        chat_id=user if chat is None else chat,
        is_admin=admin,
        kind="chat",
        burst_key=burst,
    )


async def refusals(storage: SQLiteStorage) -> dict[str, int]:
    rows = await fetch(storage, "SELECT reason, count FROM refusals WHERE day = ?", (utc_day(NOW),))
    return {str(reason): int(count) for reason, count in rows}


# ------------------------------------------------------------------------------ order


async def test_a_banned_user_over_quota_and_flooding_is_refused_as_banned(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    access = service(storage, clock, daily_requests=1, flood_per_minute=1)
    await answered(storage)  # today's one request is used
    # Quota first (the message still counts for flood), then flood: flood comes before quota.
    assert (await check(access)).refusal is Refusal.QUOTA_REQUESTS
    assert (await check(access)).refusal is Refusal.FLOOD
    await access.ban(USER)
    first, second = await check(access), await check(access)
    assert first == Verdict(Refusal.BANNED, notify=True)
    assert second == Verdict(Refusal.BANNED, notify=False)  # one notice, then silence
    assert await refusals(storage) == {"quota_requests": 1, "flood": 1, "banned": 2}


async def test_a_user_not_allowed_who_floods_is_refused_as_not_allowed(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    access = service(storage, clock, mode="allowlist", flood_per_minute=1)
    verdicts = [await check(access) for _ in range(3)]
    assert [v.refusal for v in verdicts] == [Refusal.NOT_ALLOWED] * 3
    # "This bot is private" at most once a minute per user.
    assert [v.notify for v in verdicts] == [True, False, False]
    clock.now += 60
    assert (await check(access)).notify is True
    assert (await check(access, OTHER)).notify is True  # per user


async def test_allowlist_lets_listed_users_and_members_of_listed_groups_through(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    access = service(storage, clock, mode="allowlist")
    await access.allow(GROUP)
    assert await check(access, chat=GROUP) == PASS  # a member of a listed group, in it
    assert (await check(access)).refusal is Refusal.NOT_ALLOWED  # ... but not in private
    await access.allow(USER)
    assert await check(access) == PASS
    await access.deny(USER)
    assert (await check(access)).refusal is Refusal.NOT_ALLOWED
    standing = await access.standing(USER, is_admin=False)
    assert standing.allowed is False
    # Open mode: everyone is allowed.
    assert (await service(storage, clock).standing(USER, is_admin=False)).allowed is True


async def test_admins_pass_every_check_and_are_never_counted(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    access = service(storage, clock, mode="allowlist", daily_requests=1, flood_per_minute=1)
    await answered(storage)
    await access.ban(USER)
    for _ in range(3):
        assert await check(access, admin=True) == PASS  # not reserved either
    assert await refusals(storage) == {}
    standing = await access.standing(USER, is_admin=True)
    assert standing.exempt and standing.banned
    assert quota_text(standing, "en", NOW) == ""


# ------------------------------------------------------------------------------ ban


async def test_the_ban_notice_survives_a_restart_and_comes_again_after_a_new_ban(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    await service(storage, clock).ban(USER)
    assert (await check(service(storage, clock))).notify is True
    restarted = service(storage, clock)  # reads the list from storage
    assert await check(restarted) == Verdict(Refusal.BANNED, notify=False)
    await restarted.unban(USER)
    assert await check(restarted) == PASS
    await restarted.ban(USER)
    assert (await check(service(storage, clock))).notify is True


async def test_a_ban_refuses_in_groups_too(storage: SQLiteStorage, clock: FakeClock) -> None:
    access = service(storage, clock)
    await access.ban(USER)
    assert (await check(access, chat=GROUP)).refusal is Refusal.BANNED
    assert await check(access, OTHER, chat=GROUP) == PASS


# ------------------------------------------------------------------------------ flood


async def test_flood_window_slides_and_gives_one_notice_per_episode(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    access = service(storage, clock, flood_per_minute=3)
    for _ in range(3):
        assert await check(access) == PASS
        clock.now += 10
    fourth = await check(access)  # 30 s after the first
    assert fourth == Verdict(Refusal.FLOOD, notify=True, resets_at=NOW + 60)
    assert (await check(access)).notify is False
    assert await check(access, OTHER) == PASS  # per user
    clock.now = NOW + 60  # the first message left the window
    assert await check(access) == PASS
    again = await check(access)
    assert again.refusal is Refusal.FLOOD and again.notify  # a new episode, a new notice
    assert await refusals(storage) == {"flood": 3}


async def test_flood_control_off_with_zero(storage: SQLiteStorage, clock: FakeClock) -> None:
    access = service(storage, clock, flood_per_minute=0)
    for _ in range(50):
        assert await check(access) == PASS


async def test_an_album_counts_once_for_flood(storage: SQLiteStorage, clock: FakeClock) -> None:
    access = service(storage, clock, flood_per_minute=2)
    for _ in range(5):
        assert await check(access, burst="album:1") == PASS
    assert await check(access) == PASS
    assert (await check(access)).refusal is Refusal.FLOOD
    # A refused album: the first part says so, the others are silent and not counted again.
    parts = [await check(access, burst="album:2") for _ in range(3)]
    assert [(p.refusal, p.notify) for p in parts] == [(Refusal.FLOOD, False)] * 3
    assert await refusals(storage) == {"flood": 2}


async def test_album_parts_arriving_together_wait_for_one_decision(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    access = service(storage, clock, daily_requests=2)
    verdicts = await asyncio.gather(*(check(access, burst="album:9") for _ in range(4)))
    # One quota query, one reservation; the other parts follow the first.
    assert sum(v.reserved for v in verdicts) == 1
    assert all(v.refusal is None for v in verdicts)
    assert (await access.standing(USER, is_admin=False)).requests_today == 1


# ------------------------------------------------------------------------------ quota


async def test_requests_quota_counts_answers_of_the_utc_day_but_not_errors(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    access = service(storage, clock, daily_requests=2)
    clock.now = MIDNIGHT - 1
    await answered(storage)  # yesterday: not counted
    clock.now = NOW
    await answered(storage, status="error")  # never reached the user
    await answered(storage, status="stopped")
    verdict = await check(access)
    assert verdict.refusal is None and verdict.reserved
    access.release(USER)
    await answered(storage, status="interrupted")
    refused = await check(access)
    assert refused == Verdict(Refusal.QUOTA_REQUESTS, notify=True, resets_at=MIDNIGHT + DAY)
    assert (await check(access, OTHER)).refusal is None
    # The next UTC day starts afresh.
    clock.now = MIDNIGHT + DAY + 1
    assert (await check(access)).refusal is None


async def test_questions_being_answered_count_until_released(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    access = service(storage, clock, daily_requests=2)
    first, second = await check(access), await check(access)
    assert first.reserved and second.reserved
    assert (await check(access)).refusal is Refusal.QUOTA_REQUESTS
    access.release(USER)
    assert (await check(access)).refusal is None


async def test_tokens_quota(storage: SQLiteStorage, clock: FakeClock) -> None:
    access = service(storage, clock, daily_tokens=100)
    await answered(storage, tokens=60)
    assert (await check(access)).refusal is None
    access.release(USER)
    await answered(storage, tokens=40)
    refused = await check(access)
    assert refused.refusal is Refusal.QUOTA_TOKENS and refused.notify
    assert refused.resets_at == MIDNIGHT + DAY


async def test_no_limits_means_no_query_and_no_reservation(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    access = service(storage, clock)
    assert await check(access, OTHER) == PASS  # loads the (empty) list once
    await storage.close()  # any query would fail now
    for _ in range(3):
        assert await check(access) == PASS


async def test_limit_override_applies_at_once_and_is_stored(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    access = service(storage, clock, daily_requests=1)
    await answered(storage)
    assert (await check(access)).refusal is Refusal.QUOTA_REQUESTS
    await access.set_daily_limit(USER, 3)
    assert (await check(access)).reserved
    access.release(USER)
    standing = await service(storage, clock).standing(USER, is_admin=False)  # after a restart
    assert (standing.requests_limit, standing.limit_overridden) == (3, True)
    assert access.limits(USER) == (3, 0)
    await access.set_daily_limit(USER, 0)  # unlimited
    assert await check(access) == PASS
    await access.set_daily_limit(USER, None)  # the default again
    assert (await check(access)).refusal is Refusal.QUOTA_REQUESTS
    standing = await access.standing(USER, is_admin=False)
    assert (standing.requests_limit, standing.limit_overridden) == (1, False)
    with pytest.raises(ValueError):
        await access.set_daily_limit(USER, -1)


async def test_standing_and_reset_at_the_next_utc_midnight(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    assert start_of_utc_day(NOW) == MIDNIGHT
    assert next_utc_midnight(NOW) == MIDNIGHT + DAY
    assert next_utc_midnight(MIDNIGHT) == MIDNIGHT + DAY
    assert utc_day(NOW) == "2023-11-15"
    access = service(storage, clock, daily_requests=50, daily_tokens=1000)
    for _ in range(12):
        await answered(storage)
    standing = await access.standing(USER, is_admin=False)
    assert standing == Standing(
        banned=False,
        allowed=True,
        requests_today=12,
        tokens_today=120,
        requests_limit=50,
        tokens_limit=1000,
        limit_overridden=False,
        resets_at=MIDNIGHT + DAY,
        exempt=False,
    )
    assert quota_text(standing, "en", NOW) == (
        "⏳ Left today: 38 of 50 requests, 880 of 1,000 tokens; "
        "the limit resets at 00:00 UTC, in 5 h 12 min."
    )
    assert "осталось на сегодня: 38 из 50 запросов" in quota_text(standing, "ru", NOW).lower()


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        AccessService(None, mode="closed")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AccessService(None, flood_per_minute=-1)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ texts


def test_refusal_texts() -> None:
    flood = Verdict(Refusal.FLOOD, True, resets_at=NOW + 12.2)
    assert refusal_text(flood, "en", NOW) == (
        "⏳ Too many messages at once: wait 13 s, then ask again."
    )
    quota = Verdict(Refusal.QUOTA_REQUESTS, True, resets_at=MIDNIGHT + DAY)
    assert refusal_text(quota, "en", NOW, requests_limit=50) == (
        "📉 You've used today's 50 requests. The limit resets at 00:00 UTC, in 5 h 12 min."
    )
    assert refusal_text(quota, "ru", NOW, requests_limit=21) == (
        "📉 Дневной лимит исчерпан: 21 запрос. Он обновится в 00:00 UTC, через 5 ч 12 мин."
    )
    tokens = Verdict(Refusal.QUOTA_TOKENS, True, resets_at=MIDNIGHT + DAY)
    assert "1,000 tokens" in refusal_text(tokens, "en", NOW, tokens_limit=1000)
    assert "private" in refusal_text(Verdict(Refusal.NOT_ALLOWED, True), "en", NOW)
    assert "закрытый" in refusal_text(Verdict(Refusal.NOT_ALLOWED, True), "ru", NOW)
    assert refusal_text(Verdict(Refusal.BANNED, True), "en", NOW).startswith("🚫")
    with pytest.raises(ValueError):
        refusal_text(PASS, "en", NOW)


def test_wait_text_rounds_up_to_minutes() -> None:
    assert wait_text("en", 1) == "1 min"
    assert wait_text("en", 3600) == "1 h"
    assert wait_text("en", 3601) == "1 h 1 min"
    assert wait_text("ru", 5 * 3600 + 12 * 60) == "5 ч 12 мин"


def test_command_arguments() -> None:
    assert parse_id("123") == 123
    assert parse_id(" -100123 ") == -100123
    assert parse_id(None) is None
    assert parse_id("12 34") is None
    assert parse_id("@name") is None
    assert parse_limit("123 50") == (123, 50)
    assert parse_limit("123 0") == (123, 0)
    assert parse_limit("123 DEFAULT") == (123, None)
    assert parse_limit("123 -5") is None
    assert parse_limit("123") is None
    assert parse_limit("x 5") is None


def test_usage_shows_what_is_left_today() -> None:
    nothing = UsageSummary(0, 0, 0, 0.0)
    standing = Standing(False, True, 12, 0, 50, 0, False, MIDNIGHT + DAY, False)
    report = UsageReport(nothing, nothing, (), (), True, quota=standing)
    assert render_usage(report, "en", now=NOW).endswith(
        "Total: 0 requests, 0 tokens\n"
        "⏳ Left today: 38 of 50 requests; the limit resets at 00:00 UTC, in 5 h 12 min."
    )
    unlimited = UsageReport(nothing, nothing, (), (), True, quota=PASS_STANDING)
    assert "Left today" not in render_usage(unlimited, "en", now=NOW)


PASS_STANDING = Standing(False, True, 3, 30, 0, 0, False, MIDNIGHT + DAY, False)


# ------------------------------------------------------------------------------ storage


async def test_storage_access_rows_refusals_and_overrides(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    await storage.set_access_allowed(GROUP, True)
    await storage.set_access_banned(USER, True)
    await storage.mark_ban_noticed(USER)
    await storage.mark_ban_noticed(OTHER)  # not banned: nothing to mark
    entries = await storage.access_list()
    assert [(e.subject_id, e.allowed, e.banned, e.ban_noticed) for e in entries] == [
        (GROUP, True, False, False),
        (USER, False, True, True),
    ]
    await storage.set_access_banned(USER, True)  # banned again: noticed again
    assert (await storage.access_list())[1].ban_noticed is False
    await storage.set_access_banned(USER, False)
    await storage.set_access_allowed(GROUP, False)
    assert await storage.access_list() == []

    await storage.set_daily_requests_limit(USER, 5)  # a user who never wrote: created bare
    await storage.set_daily_requests_limit(OTHER, 0)
    assert await storage.daily_limit_overrides() == {USER: 5, OTHER: 0}
    await storage.set_daily_requests_limit(USER, None)
    assert await storage.daily_limit_overrides() == {OTHER: 0}
    assert await storage.get_user(USER) is not None
    with pytest.raises(ValueError):
        await storage.set_daily_requests_limit(USER, -1)

    await storage.count_refusal("flood", "2023-11-15")
    await storage.count_refusal("flood", "2023-11-15")
    await storage.count_refusal("banned", "2023-11-15")
    assert await refusals(storage) == {"flood": 2, "banned": 1}
    with pytest.raises(ValueError):
        await storage.count_refusal("bored", "2023-11-15")
