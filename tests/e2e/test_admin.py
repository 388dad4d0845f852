"""Admins end to end: /stats, /broadcast (confirm, progress, stop, resume after a restart),
and users blocking the bot."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.conftest import ADMIN_ID, Bench
from tests.fakes.telegram_server import Call

USERS = list(range(5001, 5013))


async def join(bench: Bench, users: list[int]) -> None:
    """Each user starts the bot (so they are stored users), and gets the greeting."""
    before = len(bench.telegram.calls_of("sendMessage"))
    for user in users:
        bench.telegram.send_message(user, "/start")
    await bench.telegram.wait_for("sendMessage", count=before + len(users))


async def reply_to(
    bench: Bench, user: int, text: str, *, chat_id: int | None = None, **kwargs: Any
) -> Call:
    """Send `text` from `user` (in their private chat unless `chat_id`) and return the bot's
    next sendMessage in that chat."""
    chat = chat_id or user
    before = len(bench.telegram.calls_of("sendMessage", chat_id=chat))
    bench.telegram.send_message(user, text, chat_id=chat_id, **kwargs)
    calls = await bench.telegram.wait_for(
        "sendMessage", lambda c: c.chat_id == chat, count=before + 1
    )
    return calls[before]


def admin_photo(message_id: int, **extra: Any) -> dict[str, Any]:
    """A photo message in the admin's private chat (not downloadable: it is only copied)."""
    return {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": {"id": ADMIN_ID, "type": "private", "first_name": "Admin"},
        "from": {"id": ADMIN_ID, "is_bot": False, "first_name": "Admin", "language_code": "en"},
        "photo": [
            {
                "file_id": f"p{message_id}",
                "file_unique_id": f"u{message_id}",
                "width": 9,
                "height": 9,
            }
        ],
        **extra,
    }


def buttons(call: Call) -> list[dict[str, Any]]:
    markup = call.params.get("reply_markup") or {}
    return [button for row in markup.get("inline_keyboard", []) for button in row]


def message_of(bench: Bench, call: Call) -> dict[str, Any]:
    """The stored message a sendMessage call created (to press its buttons)."""
    result = call.response["result"] if call.response else None
    assert isinstance(result, dict), call.response
    return result


async def confirm_broadcast(bench: Bench, text: str) -> tuple[dict[str, Any], Call]:
    """/broadcast, then the message; returns the admin's message and the confirmation."""
    ask = await reply_to(bench, ADMIN_ID, "/broadcast")
    assert "Send me the message" in ask.params["text"]
    before = len(bench.telegram.calls_of("sendMessage", chat_id=ADMIN_ID))
    source = bench.telegram.send_message(ADMIN_ID, text)["message"]
    confirm = (
        await bench.telegram.wait_for(
            "sendMessage", lambda c: c.chat_id == ADMIN_ID, count=before + 1
        )
    )[before]
    return source, confirm


def press(bench: Bench, user: int, call: Call, label_part: str) -> None:
    button = next(b for b in buttons(call) if label_part in b["text"])
    bench.telegram.press_button(user, message_of(bench, call), button["callback_data"])


async def finished_report(bench: Bench, *, timeout: float = 20) -> Call:  # noqa: ASYNC109
    calls = await bench.telegram.wait_for(
        "editMessageText",
        lambda c: (
            c.chat_id == ADMIN_ID
            and "Broadcast #" in str(c.params.get("text"))
            and "delivered" in str(c.params.get("text"))
            and "left" not in str(c.params.get("text"))
        ),
        timeout=timeout,
    )
    return calls[0]


def copies(bench: Bench) -> list[Call]:
    return [c for c in bench.telegram.calls_of("copyMessage") if c.ok]


async def test_broadcast_reaches_every_user_once_and_counts_who_blocked_the_bot(
    bench: Bench,
) -> None:
    await bench.restart(broadcast_rps=20, broadcast_progress_seconds=0.1)
    await join(bench, [ADMIN_ID, *USERS])
    bench.telegram.block_bot(USERS[3])

    source, confirm = await confirm_broadcast(bench, "Big news: *new models*!")
    assert "to 13 users" in confirm.params["text"]
    assert confirm.params["reply_parameters"]["message_id"] == source["message_id"]
    assert not copies(bench)  # nothing is sent before the admin confirms

    press(bench, ADMIN_ID, confirm, "Send")
    report = await finished_report(bench)

    text = report.params["text"]
    assert "finished" in text and "delivered 12" in text and "blocked the bot 1" in text
    sent = copies(bench)
    assert sorted(c.chat_id for c in sent) == sorted([ADMIN_ID, *USERS[:3], *USERS[4:]])
    assert all(
        (int(c.params["from_chat_id"]), int(c.params["message_id"]))
        == (ADMIN_ID, source["message_id"])
        for c in sent
    )
    copied = bench.telegram.sent_messages(USERS[0])[-1]
    assert copied["text"] == "Big news: *new models*!"
    # Progress was shown on the confirmation message itself, with a Stop button.
    progress = [
        c
        for c in bench.telegram.calls_of("editMessageText", chat_id=ADMIN_ID)
        if "left" in str(c.params.get("text"))
    ]
    assert progress and any("Stop" in b["text"] for b in buttons(progress[0]))

    # The user who blocked the bot is now known as such.
    stats = await reply_to(bench, ADMIN_ID, "/stats")
    assert "Users: 13 (blocked the bot: 1)" in stats.params["text"]


async def test_broadcast_of_a_photo(bench: Bench) -> None:
    await join(bench, [ADMIN_ID, *USERS[:2]])
    await reply_to(bench, ADMIN_ID, "/broadcast")
    photo = admin_photo(4242, caption="Look")
    before = len(bench.telegram.calls_of("sendMessage", chat_id=ADMIN_ID))
    bench.telegram.push_update({"message": photo})
    confirm = (
        await bench.telegram.wait_for(
            "sendMessage", lambda c: c.chat_id == ADMIN_ID, count=before + 1
        )
    )[before]
    assert "to 3 users" in confirm.params["text"]  # not a question for the vision model
    press(bench, ADMIN_ID, confirm, "Send")
    await finished_report(bench)

    sent = copies(bench)
    assert len(sent) == 3 and {int(c.params["message_id"]) for c in sent} == {4242}
    # A broadcast this short may end before a round trip: the final report still comes last.
    panel_edits = [
        c
        for c in bench.telegram.calls_of("editMessageText", chat_id=ADMIN_ID)
        if int(c.params["message_id"]) == message_of(bench, confirm)["message_id"]
    ]
    assert "finished" in panel_edits[-1].params["text"]
    received = bench.telegram.sent_messages(USERS[1])[-1]
    assert received.get("photo") and received.get("caption") == "Look"


async def test_broadcast_sent_as_a_reply_picks_that_message(bench: Bench) -> None:
    await join(bench, [ADMIN_ID, *USERS[:2]])
    earlier = bench.telegram.send_message(ADMIN_ID, "Release notes: faster answers")["message"]
    await bench.telegram.wait_for(
        ("sendRichMessage", "sendMessage"),
        lambda c: c.chat_id == ADMIN_ID and "reply_parameters" not in c.params,
        count=2,
    )

    confirm = await reply_to(bench, ADMIN_ID, "/broadcast", reply_to_message=earlier)
    assert "to 3 users" in confirm.params["text"]
    assert confirm.params["reply_parameters"]["message_id"] == earlier["message_id"]
    press(bench, ADMIN_ID, confirm, "Send")
    await finished_report(bench)
    assert {int(c.params["message_id"]) for c in copies(bench)} == {earlier["message_id"]}
    assert bench.telegram.sent_messages(USERS[0])[-1]["text"] == "Release notes: faster answers"


async def test_an_album_is_refused_with_a_clear_message(bench: Bench) -> None:
    await join(bench, [ADMIN_ID])
    await reply_to(bench, ADMIN_ID, "/broadcast")
    before = len(bench.telegram.calls_of("sendMessage", chat_id=ADMIN_ID))
    bench.telegram.push_update({"message": admin_photo(4343, media_group_id="album-7")})
    answer = (
        await bench.telegram.wait_for(
            "sendMessage", lambda c: c.chat_id == ADMIN_ID, count=before + 1
        )
    )[before]
    assert "album" in answer.params["text"]
    assert not copies(bench)


async def test_cancel_sends_nothing(bench: Bench) -> None:
    await join(bench, [ADMIN_ID, *USERS[:2]])
    _, confirm = await confirm_broadcast(bench, "Never mind")
    press(bench, ADMIN_ID, confirm, "Cancel")
    edited = await bench.telegram.wait_for("editMessageText", lambda c: c.chat_id == ADMIN_ID)
    assert edited[0].params["text"] == "Cancelled."

    # /cancel while the bot waits for the message also ends the form: the next text is a
    # question for the model again, not a broadcast.
    await reply_to(bench, ADMIN_ID, "/broadcast")
    cancelled = await reply_to(bench, ADMIN_ID, "/cancel")
    assert cancelled.params["text"] == "Cancelled."
    assert not copies(bench)


async def test_stop_button_stops_the_broadcast(bench: Bench) -> None:
    await bench.restart(broadcast_rps=4, broadcast_progress_seconds=60)
    await join(bench, [ADMIN_ID, *USERS])
    _, confirm = await confirm_broadcast(bench, "Slow news")
    press(bench, ADMIN_ID, confirm, "Send")
    await bench.telegram.wait_for("copyMessage", count=2)

    progress = (
        await bench.telegram.wait_for(
            "editMessageText", lambda c: c.chat_id == ADMIN_ID and bool(buttons(c))
        )
    )[0]
    press(bench, ADMIN_ID, progress, "Stop")
    report = await finished_report(bench)

    assert "stopped" in report.params["text"]
    sent = len(copies(bench))
    assert 2 <= sent < 13
    assert f"delivered {sent}" in report.params["text"]


async def test_a_restart_resumes_the_broadcast_without_repeats(bench: Bench) -> None:
    await bench.restart(broadcast_rps=8, broadcast_progress_seconds=60)
    await join(bench, [ADMIN_ID, *USERS])
    _, confirm = await confirm_broadcast(bench, "Resumable news")
    press(bench, ADMIN_ID, confirm, "Send")
    await bench.telegram.wait_for("copyMessage", count=3)

    await bench.restart()
    report = await finished_report(bench)

    assert "finished" in report.params["text"] and "delivered 13" in report.params["text"]
    recipients = [c.chat_id for c in copies(bench)]
    assert sorted(recipients) == sorted([ADMIN_ID, *USERS])  # each once


async def test_users_blocking_and_unblocking_the_bot_are_tracked(bench: Bench) -> None:
    await join(bench, [ADMIN_ID, *USERS[:3]])
    bench.telegram.block_bot(USERS[0], notify=True)
    bench.telegram.block_bot(USERS[1], notify=True)
    bench.telegram.unblock_bot(USERS[1], notify=True)
    stats = await reply_to(bench, ADMIN_ID, "/stats")
    assert "Users: 4 (blocked the bot: 1)" in stats.params["text"]

    ask = await reply_to(bench, ADMIN_ID, "/broadcast")
    assert "all 3 users" in ask.params["text"]  # the blocked user is not counted

    # Writing again proves the bot is unblocked.
    await reply_to(bench, ADMIN_ID, "/cancel")
    bench.telegram.unblock_bot(USERS[0])
    await reply_to(bench, USERS[0], "/start")
    stats = await reply_to(bench, ADMIN_ID, "/stats")
    assert "(blocked the bot: 0)" in stats.params["text"]


async def test_stats_shows_activity_and_top_models(bench: Bench) -> None:
    await bench.ask(USERS[0], "hello")
    await bench.ask(USERS[1], "hi there")
    stats = (await reply_to(bench, ADMIN_ID, "/stats")).params["text"]
    assert "Users: 3" in stats  # two users and the admin
    assert "Active (24 h / 7 d / 30 d): 2 / 2 / 2" in stats
    assert "Requests (24 h / 7 d / 30 d): 2 / 2 / 2" in stats
    assert "1. <code>openai/gpt-4o-mini</code> — 2" in stats
    assert "Running for" in stats


async def test_admin_commands_are_refused_to_others_and_in_groups(bench: Bench) -> None:
    refused = await reply_to(bench, USERS[0], "/stats")
    assert refused.params["text"] == "This command is for the bot's admins."
    refused = await reply_to(bench, USERS[0], "/broadcast")
    assert refused.params["text"] == "This command is for the bot's admins."

    group = -100777
    in_group = await reply_to(bench, ADMIN_ID, "/stats", chat_id=group, chat_type="supergroup")
    assert in_group.chat_id == group
    assert in_group.params["text"] == "This command works in a private chat with the bot."

    # A forged Send button from a user is refused too.
    fake_panel = {"message_id": 1, "chat": {"id": USERS[0], "type": "private"}, "date": 0}
    bench.telegram.press_button(USERS[0], fake_panel, "bc:send:1")
    answer = await bench.telegram.wait_for("answerCallbackQuery")
    assert answer[0].params.get("show_alert") in (True, "true")
    assert not copies(bench)


async def test_admins_get_the_admin_commands_in_their_menu(bench: Bench) -> None:
    calls = bench.telegram.calls_of("setMyCommands")
    scoped = [c for c in calls if (c.params.get("scope") or {}).get("type") == "chat"]
    assert scoped, "no admin menu registered"
    assert all(c.params["scope"] == {"type": "chat", "chat_id": ADMIN_ID} for c in scoped)
    by_language = {c.params.get("language_code"): c.params["commands"] for c in scoped}
    assert set(by_language) == {None, "ru"}
    names = [c["command"] for c in by_language[None]]
    assert "broadcast" in names and "stats" in names and "start" in names
    russian = {c["command"]: c["description"] for c in by_language["ru"]}
    assert russian["broadcast"].startswith("Рассылка")
    unscoped = [c for c in calls if not c.params.get("scope")]
    assert all("broadcast" not in str(c.params["commands"]) for c in unscoped)


async def test_a_429_pauses_the_broadcast_and_nobody_is_missed(bench: Bench) -> None:
    await join(bench, [ADMIN_ID, *USERS[:6]])
    bench.telegram.fail_next("copyMessage", status=429, retry_after=1, chat_id=USERS[2])
    _, confirm = await confirm_broadcast(bench, "Rate-limited news")
    press(bench, ADMIN_ID, confirm, "Send")
    report = await finished_report(bench)

    assert "delivered 7" in report.params["text"] and "failed 0" in report.params["text"]
    attempts = bench.telegram.calls_of("copyMessage", chat_id=USERS[2])
    assert len(attempts) == 2 and not attempts[0].ok and attempts[1].ok
    # Nothing went out while Telegram's retry_after ran. (The admin's own copy is left out:
    # it was sent first but waited for the admin's chat, which had just had three messages,
    # in the per-chat pacing of about one message a second.)
    after = [
        c.at
        for c in bench.telegram.calls_of("copyMessage")
        if c.at > attempts[0].at and c.chat_id != ADMIN_ID
    ]
    assert min(after) - attempts[0].at >= 0.95


async def test_a_deleted_source_ends_the_broadcast_with_a_reason(bench: Bench) -> None:
    await join(bench, [ADMIN_ID, *USERS[:6]])
    bench.telegram.deactivate_user(USERS[0])
    bench.telegram.fail_next(
        "copyMessage",
        status=400,
        description="Bad Request: message to copy not found",
        chat_id=USERS[3],
    )
    _, confirm = await confirm_broadcast(bench, "Soon deleted")
    press(bench, ADMIN_ID, confirm, "Send")
    report = await finished_report(bench)

    text = report.params["text"]
    assert "broke off" in text and "was deleted" in text
    assert "blocked the bot 1" in text  # the deactivated account
    assert not any(c.chat_id in USERS[4:] for c in copies(bench))
