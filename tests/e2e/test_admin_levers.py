"""The admins' levers end to end: /broadcast <text>, /user, notices of outages and low
balances (once per event), /stats with groups and refusals, and the command menus."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.e2e.conftest import ADMIN_ID, Bench, text_of
from tests.e2e.test_admin import copies, finished_report, join, press, reply_to

USERS = [6001, 6002, 6003]
SECOND_ADMIN = 998
GROUP = -100600
FAST_RETRY = {"retry-after-ms": "10"}
UNAVAILABLE = "temporarily unavailable"


def texts_to(bench: Bench, chat_id: int, part: str) -> list[str]:
    """Texts of the messages the bot sent to `chat_id` that contain `part`."""
    calls = bench.telegram.calls_of("sendMessage", chat_id=chat_id)
    return [str(c.params["text"]) for c in calls if c.ok and part in str(c.params["text"])]


async def notice(bench: Bench, chat_id: int, part: str, count: int = 1) -> list[str]:
    """Wait until `count` notices containing `part` reached `chat_id`; return them."""
    await bench.telegram.wait_for(
        "sendMessage",
        lambda c: c.ok and c.chat_id == chat_id and part in str(c.params.get("text")),
        count=count,
    )
    return texts_to(bench, chat_id, part)


async def settle() -> None:
    """A moment for anything that would wrongly follow (a repeated notice) to arrive."""
    await asyncio.sleep(0.3)


# ------------------------------------------------------------------------ /broadcast <text>


async def test_broadcast_with_text_sends_only_the_text_with_its_formatting(bench: Bench) -> None:
    await join(bench, [ADMIN_ID, *USERS])
    before = len(bench.telegram.calls_of("sendMessage", chat_id=ADMIN_ID))
    # "/broadcast hello *all*": the admin made "all" bold; Telegram marks the command.
    bench.telegram.send_message(
        ADMIN_ID,
        "/broadcast  hello all",
        entities=[
            {"type": "bot_command", "offset": 0, "length": 10},
            {"type": "bold", "offset": 18, "length": 3},
        ],
    )
    sent = await bench.telegram.wait_for(
        "sendMessage", lambda c: c.chat_id == ADMIN_ID, count=before + 2
    )
    preview, confirm = sent[before], sent[before + 1]
    # The preview is exactly what everyone will get; the confirmation asks about it.
    assert preview.params["text"] == "hello all"
    assert "to 4 users" in confirm.params["text"]
    preview_id = preview.response["result"]["message_id"] if preview.response else None
    assert confirm.params["reply_parameters"]["message_id"] == preview_id

    press(bench, ADMIN_ID, confirm, "Send")
    report = await finished_report(bench)
    assert "delivered 4" in report.params["text"]
    assert sorted(c.chat_id for c in copies(bench)) == sorted([ADMIN_ID, *USERS])
    for user in USERS:
        received = bench.telegram.sent_messages(user)[-1]
        assert received["text"] == "hello all"
        assert received["entities"] == [{"type": "bold", "offset": 6, "length": 3}]


async def test_a_text_broadcast_resumes_after_a_restart(bench: Bench) -> None:
    await bench.restart(broadcast_rps=6, broadcast_progress_seconds=60)
    many = list(range(6101, 6113))
    await join(bench, [ADMIN_ID, *many])
    before = len(bench.telegram.calls_of("sendMessage", chat_id=ADMIN_ID))
    bench.telegram.send_message(ADMIN_ID, "/broadcast News for all")
    confirm = (
        await bench.telegram.wait_for(
            "sendMessage", lambda c: c.chat_id == ADMIN_ID, count=before + 2
        )
    )[before + 1]
    press(bench, ADMIN_ID, confirm, "Send")
    await bench.telegram.wait_for("copyMessage", count=2)

    await bench.restart()
    report = await finished_report(bench)
    assert "delivered 13" in report.params["text"]
    assert sorted(c.chat_id for c in copies(bench)) == sorted([ADMIN_ID, *many])
    assert all(bench.telegram.sent_messages(u)[-1]["text"] == "News for all" for u in many)


# ----------------------------------------------------------------------------------- /user


async def test_user_by_id_and_by_username(bench: Bench) -> None:
    await bench.restart(user_daily_requests=5)
    bench.telegram.send_message(USERS[0], "/start", username="Alice_W", first_name="Alice")
    await bench.telegram.wait_for("sendMessage", lambda c: c.chat_id == USERS[0])
    await bench.ask(USERS[0], "hello", username="Alice_W", first_name="Alice")

    card = (await reply_to(bench, ADMIN_ID, f"/user {USERS[0]}")).params["text"]
    assert f"<b>Alice</b> · <code>{USERS[0]}</code> · @Alice_W" in card
    assert "✅ may use the bot" in card and "💬 has not blocked the bot" in card
    assert "Language: English" in card
    assert "Model: <code>openai/gpt-4o-mini</code> (the default)" in card
    assert "Today: 1 request, " in card and "Total: 1 request, " in card
    assert "Daily limit: 1 of 5 requests used · tokens: no limit" in card

    # By username: "@" optional, any case, the same card.
    assert (await reply_to(bench, ADMIN_ID, "/user @alice_w")).params["text"] == card
    assert (await reply_to(bench, ADMIN_ID, "/user ALICE_W")).params["text"] == card

    # A ban and a blocked bot show in the status.
    await reply_to(bench, ADMIN_ID, f"/ban {USERS[0]}")
    bench.telegram.block_bot(USERS[0], notify=True)
    card = (await reply_to(bench, ADMIN_ID, f"/user {USERS[0]}")).params["text"]
    assert "🚫 banned" in card and "📵 blocked the bot" in card

    # An admin is exempt from limits.
    own = (await reply_to(bench, ADMIN_ID, f"/user {ADMIN_ID}")).params["text"]
    assert "🛡 admin" in own and "none (admins are exempt)" in own


async def test_user_unknown_and_bad_arguments(bench: Bench) -> None:
    await join(bench, [ADMIN_ID])
    unknown = await reply_to(bench, ADMIN_ID, "/user 424242")
    assert unknown.params["text"] == "Nobody known as 424242 has written to the bot."
    unknown = await reply_to(bench, ADMIN_ID, "/user @nobody_here")
    assert "@nobody_here" in unknown.params["text"]
    usage = await reply_to(bench, ADMIN_ID, "/user")
    assert usage.params["text"].startswith("Usage: <code>/user")
    refused = await reply_to(bench, USERS[0], f"/user {ADMIN_ID}")
    assert refused.params["text"] == "This command is for the bot's admins."


# ------------------------------------------------------------------------- admins' notices


async def fail_questions(bench: Bench, users: list[int]) -> None:
    for user in users:
        bench.upstream.fail_next(502, headers=FAST_RETRY, times=3)
        assert UNAVAILABLE in text_of(await bench.ask(user, "anyone?"))


async def test_breaker_open_and_close_each_notify_every_admin_once(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="handlers.ui.alert_notifier")
    await bench.restart(
        breaker_failures=3,
        breaker_cooldown_seconds=0.2,
        admin_ids=f"{ADMIN_ID},{SECOND_ADMIN},997",
    )
    await join(bench, [ADMIN_ID, SECOND_ADMIN])
    bench.telegram.block_bot(997)  # an admin who cannot be reached: logged once, no harm

    await fail_questions(bench, USERS)
    for admin in (ADMIN_ID, SECOND_ADMIN):
        [opened] = await notice(bench, admin, "keeps failing")
        assert "<b>127.0.0.1</b>" in opened  # the provider is named (the fake's host)
    # Open: more questions fail fast, and nobody is told again.
    assert UNAVAILABLE in text_of(await bench.ask(USERS[0], "still down?"))

    await asyncio.sleep(0.25)  # the cooldown: the next question is the probe
    assert text_of(await bench.ask(USERS[1], "back?")) == "Echo: back?"
    for admin in (ADMIN_ID, SECOND_ADMIN):
        assert len(await notice(bench, admin, "answers again")) == 1

    # open → closed → open: a third notice, each once.
    await fail_questions(bench, USERS)
    await notice(bench, ADMIN_ID, "keeps failing", count=2)
    await notice(bench, SECOND_ADMIN, "keeps failing", count=2)
    await settle()
    for admin in (ADMIN_ID, SECOND_ADMIN):
        assert len(texts_to(bench, admin, "keeps failing")) == 2
        assert len(texts_to(bench, admin, "answers again")) == 1
    unreachable = [r for r in caplog.records if "not delivered to 997" in r.getMessage()]
    assert len(unreachable) == 1


async def test_a_low_balance_is_told_once_until_it_changes(bench: Bench) -> None:
    await join(bench, [ADMIN_ID])
    assert bench.app is not None
    alerts = bench.app.services.alerts
    balance = bench.upstream.balance_payload["data"]
    await alerts.check_balances()  # all fine: nothing to say
    balance["user_status"] = 1
    balance["credits"] = "1234.5"
    for _ in range(3):
        await alerts.check_balances()
    [low] = await notice(bench, ADMIN_ID, "balance is low")
    assert "<b>127.0.0.1</b>" in low  # the provider (the fake's host, VseGPT in production)
    assert "(1 234.50 credits)" in low

    balance["user_status"] = 2
    await alerts.check_balances()
    await alerts.check_balances()
    await notice(bench, ADMIN_ID, "very low")
    balance["user_status"] = 0
    await alerts.check_balances()
    await notice(bench, ADMIN_ID, "fine again")
    await settle()
    assert len(texts_to(bench, ADMIN_ID, "balance is low")) == 1
    assert len(texts_to(bench, ADMIN_ID, "very low")) == 1
    assert len(texts_to(bench, ADMIN_ID, "fine again")) == 1


async def test_balances_are_checked_periodically(bench: Bench) -> None:
    bench.upstream.balance_payload["data"]["user_status"] = 1
    await bench.restart(balance_check_minutes=0.002)  # every 0.12 s
    await bench.upstream.wait_for_requests(3, path="/v1/balance")
    await settle()
    assert len(texts_to(bench, ADMIN_ID, "balance is low")) == 1


async def test_no_balance_checks_by_default_in_a_short_run(bench: Bench) -> None:
    # The first check comes a minute after start-up, not during it.
    await join(bench, [ADMIN_ID])
    await settle()
    assert not bench.upstream.requests_to("/v1/balance")


# ---------------------------------------------------------------------------------- /stats


async def test_stats_counts_groups_apart_and_shows_refusals(bench: Bench) -> None:
    await join(bench, [ADMIN_ID, *USERS])
    username = bench.telegram.bot_username
    bench.telegram.send_message(
        USERS[0], f"@{username} hi all", chat_id=GROUP, chat_type="supergroup"
    )
    await bench.telegram.wait_for("editMessageText", lambda c: c.chat_id == GROUP)

    # A banned user's questions are refused (one notice, then silence): two refusals.
    await reply_to(bench, ADMIN_ID, f"/ban {USERS[2]}")
    await reply_to(bench, USERS[2], "let me in")
    bench.telegram.send_message(USERS[2], "please")
    assert bench.app is not None
    for _ in range(100):  # the silent refusal leaves no message to wait for
        figures = (await bench.app.services.statistics.report()).figures
        if sum(item.month for item in figures.refusals) == 2:
            break
        await asyncio.sleep(0.02)

    stats = (await reply_to(bench, ADMIN_ID, "/stats")).params["text"]
    assert "Users: 4 (blocked the bot: 0)" in stats  # the group is not a user
    assert "Groups: 1 (removed the bot: 0) · active 24 h / 7 d: 1 / 1" in stats
    assert "Refused (today / 30 days):\n• banned: 2 / 2" in stats

    # A broadcast is for people: the group is not a recipient.
    ask = await reply_to(bench, ADMIN_ID, "/broadcast")
    assert "all 4 users" in ask.params["text"]


async def test_stats_without_refusals_says_so(bench: Bench) -> None:
    stats = (await reply_to(bench, ADMIN_ID, "/stats")).params["text"]
    assert "Groups: 0 (removed the bot: 0)" in stats
    assert "Refused: none in 30 days" in stats


# ---------------------------------------------------------------------------- /balance


async def test_balance_shows_raw_values_in_words(bench: Bench) -> None:
    bench.upstream.balance_payload["data"].update(
        {"subscription_end": "1796083200", "user_status": 1, "credits": "12345.6"}
    )
    text = (await reply_to(bench, ADMIN_ID, "/balance")).params["text"]
    assert "12 345.60 credits" in text
    assert "until 1 Dec 2026" in text  # a unix time, as a date
    assert "Subscription: active" in text and "🟡 low balance" in text


# ---------------------------------------------------------------------------------- menus


def menus(bench: Bench) -> dict[tuple[str, str | None], list[str]]:
    """The registered menus: (scope type, language) → command names."""
    found: dict[tuple[str, str | None], list[str]] = {}
    for call in bench.telegram.calls_of("setMyCommands"):
        scope = (call.params.get("scope") or {}).get("type", "default")
        names = [c["command"] for c in call.params["commands"]]
        found[(scope, call.params.get("language_code"))] = names
    return found


async def test_menus_for_everyone_admins_and_groups(bench: Bench) -> None:
    found = menus(bench)
    for lang in (None, "ru"):
        everyone = found[("default", lang)]
        assert "balance" not in everyone and "usage" in everyone and "stats" not in everyone
        admin = found[("chat", lang)]
        assert "balance" in admin
        for command in ("stats", "broadcast", "user", "allow", "deny", "ban", "unban", "limit"):
            assert command in admin, command
        assert found[("all_group_chats", lang)] == [
            "ask",
            "new",
            "model",
            "settings",
            "image",
            "video",
            "help",
        ]
    russian = {
        c["command"]: c["description"]
        for call in bench.telegram.calls_of("setMyCommands")
        if call.params.get("language_code") == "ru"
        and (call.params.get("scope") or {}).get("type") == "chat"
        for c in call.params["commands"]
    }
    assert russian["user"].startswith("Профиль")


async def test_balance_is_in_everyones_menu_when_everyone_may_use_it(bench: Bench) -> None:
    bench.telegram.reset()
    await bench.restart(balance_for_everyone=True)
    await bench.telegram.wait_for("setMyCommands", count=2)
    assert "balance" in menus(bench)[("default", None)]


async def test_help_lists_balance_only_for_those_who_may_use_it(bench: Bench) -> None:
    user_help = text_of(await reply_to(bench, USERS[0], "/help"))
    assert "/usage" in user_help and "/balance" not in user_help
    admin_help = text_of(await reply_to(bench, ADMIN_ID, "/help"))
    assert "/balance" in admin_help
    await bench.restart(balance_for_everyone=True)
    assert "/balance" in text_of(await reply_to(bench, USERS[1], "/help"))


async def test_counted_texts_take_their_plural_forms_in_both_languages(bench: Bench) -> None:
    await join(bench, [ADMIN_ID])
    before = len(bench.telegram.calls_of("sendMessage", chat_id=ADMIN_ID))
    bench.telegram.send_message(ADMIN_ID, "/broadcast hello")
    sent = await bench.telegram.wait_for(
        "sendMessage", lambda c: c.chat_id == ADMIN_ID, count=before + 2
    )
    assert "Send this message to 1 user?" in sent[before + 1].params["text"]

    async def stored(user: int, requests: int) -> None:
        # An answer's usage record is written a moment after its final message.
        assert bench.app is not None
        for _ in range(200):
            summary = await bench.app.services.storage.usage_summary(user)
            if summary.requests == requests:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{requests} requests never stored")

    russian = USERS[0]
    for n in range(2):
        await bench.ask(russian, f"вопрос {n}", language_code="ru")
    await stored(russian, 2)
    usage = text_of(await reply_to(bench, russian, "/usage", language_code="ru"))
    assert "Сегодня: 2 запроса," in usage
    for n in range(3):
        await bench.ask(russian, f"ещё {n}", language_code="ru")
    await stored(russian, 5)
    usage = text_of(await reply_to(bench, russian, "/usage", language_code="ru"))
    assert "Сегодня: 5 запросов," in usage

    await bench.ask(USERS[1], "one question")
    await stored(USERS[1], 1)
    usage = text_of(await reply_to(bench, USERS[1], "/usage"))
    assert "Today: 1 request," in usage
