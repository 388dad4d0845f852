"""Delivery that never loses an answer: when Telegram keeps refusing a message that carries
an answer (after the session's own retries), the rest is still sent, the user is told, and
history records what the user actually received.

Faults are injected `times=100`: more than any retry policy spends, so these are the
"retries exhausted" cases whatever the session retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from services.storage import StoredMessage
from tests.e2e.conftest import Bench, text_of
from tests.fakes.telegram_server import ApiError, Call

USER = 7101
GROUP = -100710
ALICE = 7102
EXHAUSTED = 100


# Telegram's retries milliseconds apart: these tests use them up.
pytestmark = pytest.mark.usefixtures("fast_retries")


def notices(bench: Bench, chat_id: int, words: str) -> list[Call]:
    return [
        c
        for c in bench.telegram.calls_of("sendMessage", chat_id=chat_id)
        if c.ok and words in str(c.params.get("text", ""))
    ]


async def wait_notice(bench: Bench, chat_id: int, words: str, timeout: float = 15) -> Call:  # noqa: ASYNC109
    calls = await bench.telegram.wait_for(
        "sendMessage",
        lambda c: c.ok and c.chat_id == chat_id and words in str(c.params.get("text", "")),
        timeout=timeout,
    )
    return calls[0]


async def stored(bench: Bench, chat_id: int) -> list[StoredMessage]:
    assert bench.app is not None
    storage = bench.app.services.storage
    conversation = await storage.active_conversation(chat_id, None)
    return await storage.recent_messages(conversation, 50)


async def wait_status(bench: Bench, chat_id: int, status: str) -> list[StoredMessage]:
    """The answer is stored while the final message goes out; its mark comes after."""
    for _ in range(200):
        messages = await stored(bench, chat_id)
        if any(m.role == "assistant" and m.status == status for m in messages):
            return messages
        await asyncio.sleep(0.025)
    raise AssertionError(f"no answer marked {status!r}: {messages}")


def fail_when(
    bench: Bench,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    matches: Callable[[dict[str, Any]], bool],
    status: int = 502,
) -> None:
    """Answer `status` to every call of `method` whose parameters match, whatever the retries:
    the fake's own faults count calls, and a retried part would use them up."""
    name, handler = bench.telegram._handlers[method.lower()]

    def failing(params: dict[str, Any], call: Call) -> Any:
        if matches(params):
            raise ApiError(status, "Bad Gateway")
        return handler(params, call)

    monkeypatch.setitem(bench.telegram._handlers, method.lower(), (name, failing))


# --- private chats -----------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "502", "dropped"])
async def test_final_message_lost_user_told_and_history_marked(bench: Bench, fault: str) -> None:
    if fault == "dropped":
        bench.telegram.drop_next("sendRichMessage", times=EXHAUSTED, chat_id=USER)
    else:
        bench.telegram.fail_next(
            "sendRichMessage", status=int(fault), times=EXHAUSTED, chat_id=USER
        )
    bench.telegram.send_message(USER, "first question")
    notice = await wait_notice(bench, USER, "did not accept")
    assert "Traceback" not in notice.params["text"]
    assert not [c for c in bench.telegram.calls_of("sendRichMessage", chat_id=USER) if c.ok]

    messages = await wait_status(bench, USER, "undelivered")
    assert [(m.role, m.content) for m in messages] == [
        ("user", "first question"),
        ("assistant", "Echo: first question"),
    ]
    # The model is not told the user saw that answer (nor given its orphaned question) ...
    bench.telegram.send_message(USER, "second question")
    await bench.upstream.wait_for_requests(2, path="/v1/chat/completions")
    sent = [m["content"] for m in bench.upstream.chat_requests()[-1].json["messages"][1:]]
    assert sent == ["second question"]
    # ... while /usage still counts the request that was paid for.
    assert bench.app is not None
    usage = await bench.app.services.storage.usage_summary(USER)
    assert usage.requests >= 1


async def test_later_part_lost_others_delivered_user_told(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three rich messages (32,768 characters each at most); the middle one never gets through.
    # Each section is one paragraph that fills most of a message.
    sections = [f"PART-{name} " + ("lorem ipsum " * 2200).strip() for name in "ABC"]
    bench.upstream.reply = lambda req: "\n\n".join(sections)
    fail_when(bench, monkeypatch, "sendRichMessage", lambda p: "PART-B" in str(p))
    bench.telegram.send_message(USER, "a long story")
    await wait_notice(bench, USER, "Part of the answer could not be delivered", timeout=20)
    calls = bench.telegram.calls_of("sendRichMessage", chat_id=USER)
    delivered = [text_of(c).split(" ", 1)[0] for c in calls if c.ok]
    assert delivered == ["PART-A", "PART-C"]
    await wait_status(bench, USER, "partly_delivered")


async def test_rich_part_refused_falls_back_and_later_parts_follow(bench: Bench) -> None:
    # A format refusal (400) is not a lost message: the same part goes as HTML.
    bench.upstream.reply = lambda req: "**bold** answer"
    bench.telegram.fail_next("sendRichMessage", status=400, description="Bad Request: no rich")
    final = await bench.ask(USER, "format me")
    assert final.method == "sendMessage"
    assert "<b>bold</b>" in final.params["text"]
    assert not notices(bench, USER, "could not be delivered")


# --- groups --------------------------------------------------------------------------------


def ask_group(bench: Bench, text: str) -> None:
    bench.telegram.send_message(
        ALICE,
        f"@{bench.telegram.bot_username} {text}",
        chat_id=GROUP,
        chat_type="supergroup",
        first_name="Alice",
    )


def stop_buttons_left(bench: Bench) -> list[dict[str, Any]]:
    return [
        m
        for m in bench.telegram.sent_messages(GROUP)
        if "stop" in str(m.get("reply_markup", "")).lower()
    ]


async def test_group_final_edit_failing_sends_answer_anew_without_stop_button(
    bench: Bench,
) -> None:
    bench.telegram.fail_next("editMessageText", status=502, times=EXHAUSTED, chat_id=GROUP)
    ask_group(bench, "hello")
    answer = await bench.telegram.wait_for(
        "sendRichMessage", lambda c: c.ok and c.chat_id == GROUP, timeout=20
    )
    assert text_of(answer[0]) == "Echo: Alice: hello"
    await bench.telegram.wait_for("deleteMessage", timeout=5)
    assert not stop_buttons_left(bench)
    assert not notices(bench, GROUP, "could not be delivered")


async def test_group_answer_undeliverable_stop_removed_and_user_told(bench: Bench) -> None:
    bench.telegram.fail_next("editMessageText", status=500, times=EXHAUSTED, chat_id=GROUP)
    bench.telegram.fail_next("sendRichMessage", status=500, times=EXHAUSTED, chat_id=GROUP)
    ask_group(bench, "hello")
    notice = await wait_notice(bench, GROUP, "did not accept", timeout=20)
    # The notice answers the question it is about.
    assert notice.params["reply_parameters"]["message_id"]
    assert not stop_buttons_left(bench)
    await wait_status(bench, GROUP, "undelivered")
