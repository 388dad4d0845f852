"""Access control end to end: the allowlist, bans, daily quotas, flood control and the admins'
levers, on the real bot. A refused message must never reach the upstream."""

from __future__ import annotations

import asyncio
import time

from tests.e2e.conftest import ADMIN_ID, Bench, text_of
from tests.e2e.test_media import png_bytes, send_photo
from tests.fakes.telegram_server import Call

USER = 7001
BOB = 7002
GROUP = -100700


async def reply_to(bench: Bench, user: int, text: str, *, chat_id: int | None = None) -> Call:
    """Send `text` and return the bot's next message in that chat (an answer, a refusal, a
    confirmation; in a group, an answer's first message is its placeholder)."""
    chat = chat_id or user
    before = len(bench.finals(chat))
    if chat_id is None:
        bench.telegram.send_message(user, text)
    else:
        bench.telegram.send_message(user, text, chat_id=chat_id, chat_type="supergroup")
    calls = await bench.telegram.wait_for(
        ("sendRichMessage", "sendMessage"),
        lambda c: c.ok and c.chat_id == chat,
        count=before + 1,
        timeout=10,
    )
    return calls[before]


async def quiet(bench: Bench, chat: int, before: int) -> None:
    """Nothing more was sent to `chat` a moment later."""
    await asyncio.sleep(0.3)
    assert len(bench.finals(chat)) == before


async def settled(bench: Bench, user: int, requests: int) -> None:
    """Wait until the user's count of today's requests is `requests`: the last answer is
    stored and its reservation released (a moment after its final message arrived)."""
    assert bench.app is not None
    access = bench.app.services.access
    for _ in range(100):
        if (await access.standing(user, is_admin=False)).requests_today == requests:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"requests today never became {requests}")


def group_message(bench: Bench, user: int, text: str) -> None:
    bench.telegram.send_message(
        user, text, chat_id=GROUP, chat_type="supergroup", first_name=f"user{user}"
    )


# ------------------------------------------------------------------------------ allowlist


async def test_allowlist_refuses_once_without_asking_upstream_then_allow_lets_in(
    bench: Bench,
) -> None:
    await bench.restart(access_mode="allowlist")
    refused = await reply_to(bench, USER, "hello?")
    assert "This bot is private" in text_of(refused)
    before = len(bench.finals(USER))
    bench.telegram.send_message(USER, "anyone there?")
    await quiet(bench, USER, before)  # at most one such reply a minute
    assert not bench.upstream.chat_requests()

    confirm = await reply_to(bench, ADMIN_ID, f"/allow {USER}")
    assert f"<code>{USER}</code> may use the bot" in text_of(confirm)
    answer = await bench.ask(USER, "now?")
    assert text_of(answer) == "Echo: now?"
    assert len(bench.upstream.chat_requests()) == 1

    # A listed group lets its members ask there, not in private.
    await reply_to(bench, ADMIN_ID, f"/allow {GROUP}")
    username = bench.telegram.bot_username
    group_message(bench, BOB, f"@{username} group question")
    await bench.telegram.wait_for("editMessageText", lambda c: "rich_message" in c.params)
    assert len(bench.upstream.chat_requests()) == 2
    private = await reply_to(bench, BOB, "and here?")
    assert "private" in text_of(private)

    await reply_to(bench, ADMIN_ID, f"/deny {USER}")
    assert len(bench.upstream.chat_requests()) == 2


async def test_russian_user_is_refused_in_russian(bench: Bench) -> None:
    await bench.restart(access_mode="allowlist")
    bench.telegram.send_message(USER, "привет", language_code="ru")
    refused = await bench.telegram.wait_for("sendMessage", lambda c: c.chat_id == USER)
    assert "закрытый бот" in refused[0].params["text"]


# ------------------------------------------------------------------------------ bans


async def test_ban_notice_once_then_silence_also_after_restart_and_unban(bench: Bench) -> None:
    confirm = await reply_to(bench, ADMIN_ID, f"/ban {USER}")
    assert "banned" in text_of(confirm)
    notice = await reply_to(bench, USER, "hi")
    assert "can no longer use this bot" in text_of(notice)
    before = len(bench.finals(USER))
    bench.telegram.send_message(USER, "hi again")
    await quiet(bench, USER, before)
    await bench.restart()
    bench.telegram.send_message(USER, "after the restart")
    await quiet(bench, USER, before)
    # In a group too, and the photo and /image paths as well.
    username = bench.telegram.bot_username
    group_message(bench, USER, f"@{username} hello group")
    send_photo(bench, png_bytes(), user=USER, caption="what is it?")
    bench.telegram.send_message(USER, "/image a cat")
    await quiet(bench, USER, before)
    assert not bench.telegram.calls_of("sendMessage", chat_id=GROUP)
    assert not bench.upstream.requests

    await reply_to(bench, ADMIN_ID, f"/unban {USER}")
    answer = await bench.ask(USER, "may I?")
    assert text_of(answer) == "Echo: may I?"


# ------------------------------------------------------------------------------ quotas


async def test_daily_quota_is_kept_across_a_restart_and_limit_raises_it_at_once(
    bench: Bench,
) -> None:
    await bench.restart(user_daily_requests=2, telegram_chat_rps=30)
    for n in (1, 2):
        await bench.ask(USER, f"question {n}")
        await settled(bench, USER, n)
    refused = await reply_to(bench, USER, "question 3")
    text = text_of(refused)
    assert "You've used today's 2 requests" in text
    assert "resets at 00:00 UTC, in " in text
    assert len(bench.upstream.chat_requests()) == 2

    await bench.restart()
    again = await reply_to(bench, USER, "question 3 after a restart")
    assert "You've used today's 2 requests" in text_of(again)
    usage = await reply_to(bench, USER, "/usage")
    assert "Left today: 0 of 2 requests" in text_of(usage)
    assert len(bench.upstream.chat_requests()) == 2

    confirm = await reply_to(bench, ADMIN_ID, f"/limit {USER} 3")
    assert "3 requests" in text_of(confirm)
    answer = await bench.ask(USER, "one more")
    assert text_of(answer) == "Echo: one more"
    await settled(bench, USER, 3)
    usage = await reply_to(bench, USER, "/usage")
    assert "Left today: 0 of 3 requests" in text_of(usage)

    await reply_to(bench, ADMIN_ID, f"/limit {USER} 0")
    await bench.ask(USER, "unlimited now")
    back = await reply_to(bench, ADMIN_ID, f"/limit {USER} default")
    assert "default daily limit: 2 requests" in text_of(back)
    await settled(bench, USER, 4)
    refused = await reply_to(bench, USER, "and now?")
    assert "You've used today's 2 requests" in text_of(refused)
    assert len(bench.upstream.chat_requests()) == 4
    # Admins are never limited.
    for n in range(3):
        await bench.ask(ADMIN_ID, f"admin {n}")


async def test_a_picture_counts_against_the_daily_quota(bench: Bench) -> None:
    # /image spends the provider's money like a question: it is a stored request of the day.
    await bench.restart(user_daily_requests=2)
    bench.telegram.send_message(USER, "/image a red fox")
    await bench.telegram.wait_for("sendPhoto", lambda c: c.chat_id == USER, timeout=10)
    await settled(bench, USER, 1)
    await bench.ask(USER, "question 2")
    await settled(bench, USER, 2)
    refused = await reply_to(bench, USER, "/image another fox")
    assert "You've used today's 2 requests" in text_of(refused)
    pictures = [r for r in bench.upstream.requests if r.path.endswith("/images/generations")]
    assert len(pictures) == 1


async def test_a_group_question_counts_against_the_asker(bench: Bench) -> None:
    await bench.restart(user_daily_requests=1)
    username = bench.telegram.bot_username
    group_message(bench, USER, f"@{username} first")
    await bench.telegram.wait_for("editMessageText", lambda c: "rich_message" in c.params)
    await settled(bench, USER, 1)
    private = await reply_to(bench, USER, "in private now")
    assert "You've used today's 1 request." in text_of(private)
    # Another member of the same group still has their own quota.
    group_message(bench, BOB, f"@{username} mine")
    await bench.telegram.wait_for("editMessageText", lambda c: "rich_message" in c.params, count=2)
    refused = await reply_to(bench, USER, f"@{username} again", chat_id=GROUP)
    assert "You've used today's 1 request." in text_of(refused)
    assert refused.params.get("reply_parameters") or refused.params.get("reply_to_message_id")
    assert len(bench.upstream.chat_requests()) == 2


async def test_a_photo_album_counts_once(bench: Bench) -> None:
    await bench.restart(user_daily_requests=2, user_flood_per_minute=2)
    for color in ("red", "green", "blue"):
        send_photo(bench, png_bytes(color), user=USER, caption="compare", media_group_id="a1")
    await bench.telegram.wait_for("sendRichMessage", lambda c: c.chat_id == USER)
    await settled(bench, USER, 1)
    assert len(bench.upstream.chat_requests()) == 1
    await bench.ask(USER, "and a text")  # the second of two, for quota and for flood
    await settled(bench, USER, 2)
    refused = await reply_to(bench, USER, "third")
    assert "Too many messages" in text_of(refused)
    assert len(bench.upstream.chat_requests()) == 2


async def test_usage_shows_what_is_left_today(bench: Bench) -> None:
    await bench.restart(user_daily_requests=5, user_daily_tokens=100_000)
    usage = await reply_to(bench, USER, "/usage")
    assert "Left today: 5 of 5 requests, 100,000 of 100,000 tokens" in text_of(usage)
    await bench.ask(USER, "spend one")
    await settled(bench, USER, 1)
    usage = await reply_to(bench, USER, "/usage")
    text = text_of(usage)
    assert "Left today: 4 of 5 requests" in text
    midnight = time.strftime("%H:%M", time.gmtime(0))
    assert f"resets at {midnight} UTC" in text


# ------------------------------------------------------------------------------ flood


async def test_flood_gets_one_notice_and_no_upstream_calls(bench: Bench) -> None:
    await bench.restart(user_flood_per_minute=3)
    for n in range(5):
        bench.telegram.send_message(USER, f"burst {n}")
    finals = await bench.telegram.wait_for(
        ("sendRichMessage", "sendMessage"), lambda c: c.ok and c.chat_id == USER, count=4
    )
    await asyncio.sleep(0.3)
    finals = bench.finals(USER)
    notices = [c for c in finals if "Too many messages" in text_of(c)]
    assert len(notices) == 1
    assert "wait " in text_of(notices[0])
    assert len(finals) == 4  # three answers and one notice; the fifth is silent
    assert len(bench.upstream.chat_requests()) == 3


# ------------------------------------------------------------------------------ commands


async def test_access_commands_are_for_admins_in_private_with_usage_lines(bench: Bench) -> None:
    await bench.restart(telegram_chat_rps=30)  # many replies to one chat, quickly
    refused = await reply_to(bench, USER, f"/ban {BOB}")
    assert "for the bot's admins" in text_of(refused)
    in_group = await reply_to(bench, ADMIN_ID, f"/allow {BOB}", chat_id=GROUP)
    assert "private chat" in text_of(in_group)
    for command in ("/allow", "/deny x", "/ban", "/unban 1 2", "/limit 5", "/limit 5 -1"):
        usage = await reply_to(bench, ADMIN_ID, command)
        assert "Usage:" in text_of(usage), command
    open_mode = await reply_to(bench, ADMIN_ID, f"/allow {BOB}")
    assert "ACCESS_MODE is open" in text_of(open_mode)
    admin = await reply_to(bench, ADMIN_ID, f"/ban {ADMIN_ID}")
    assert "admins are never refused" in text_of(admin)
    answer = await bench.ask(ADMIN_ID, "still here")
    assert text_of(answer) == "Echo: still here"
