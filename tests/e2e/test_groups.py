"""Groups: answer only when addressed; one edited message with an inline Stop."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import Bench

GROUP = -100500
ALICE = 5001
BOB = 5002


def group_message(bench: Bench, user: int, text: str, **kwargs: object) -> dict:
    return bench.telegram.send_message(
        user, text, chat_id=GROUP, chat_type="supergroup", first_name=f"user{user}", **kwargs
    )


async def test_group_ignores_chatter_answers_mentions(bench: Bench) -> None:
    group_message(bench, ALICE, "just talking among ourselves")
    await asyncio.sleep(0.3)
    assert not bench.upstream.chat_requests()
    assert not bench.telegram.calls_of("sendMessage", chat_id=GROUP)

    username = bench.telegram.bot_username
    group_message(bench, ALICE, f"@{username} what is 2+2?")
    final = await bench.telegram.wait_for(
        "editMessageText", lambda c: "rich_message" in c.params, timeout=10
    )
    assert final[0].params["rich_message"]["markdown"] == "Echo: user5001: what is 2+2?"
    # No drafts in groups; the placeholder replied to the question with a Stop button.
    assert not bench.telegram.calls_of("sendRichMessageDraft", "sendMessageDraft")
    placeholder = bench.telegram.calls_of("sendMessage", chat_id=GROUP)[0]
    assert "stop" in str(placeholder.params["reply_markup"]).lower()
    # The final edit removes the Stop button.
    assert final[0].params.get("reply_markup", {}).get("inline_keyboard") in ([], None)
    request = bench.upstream.chat_requests()[-1].json
    assert request["messages"][-1]["content"] == "user5001: what is 2+2?"


async def test_group_answers_replies_to_the_bot_and_commands(bench: Bench) -> None:
    username = bench.telegram.bot_username
    group_message(bench, ALICE, f"@{username} hello")
    await bench.telegram.wait_for("editMessageText", lambda c: "rich_message" in c.params)
    bot_message = bench.telegram.sent_messages(GROUP)[-1]
    group_message(bench, BOB, "and you?", reply_to_message=bot_message)
    await bench.telegram.wait_for("editMessageText", lambda c: "rich_message" in c.params, count=2)
    # Both people share the group's history, each under their own name.
    contents = [m["content"] for m in bench.upstream.chat_requests()[-1].json["messages"][1:]]
    assert contents == ["user5001: hello", "Echo: user5001: hello", "user5002: and you?"]

    group_message(bench, BOB, f"/help@{username}")
    help_ = await bench.telegram.wait_for(
        "sendMessage", lambda c: "What I can do" in c.params.get("text", "")
    )
    assert int(help_[0].params["chat_id"]) == GROUP
    group_message(bench, BOB, "/help@some_other_bot")
    await asyncio.sleep(0.3)
    assert len(bench.telegram.calls_of("sendMessage", chat_id=GROUP)) == 3


async def test_group_edits_are_paced_and_stop_button_works(bench: Bench) -> None:
    await bench.restart(edit_interval_seconds=1.0)
    bench.upstream.reply = lambda req: "token " * 300
    bench.upstream.chunks = 150
    bench.upstream.chunk_delay = 0.02
    username = bench.telegram.bot_username
    group_message(bench, ALICE, f"@{username} long story")
    live = await bench.telegram.wait_for(
        "editMessageText", lambda c: "rich_message" not in c.params, count=2, timeout=10
    )
    assert live[1].at - live[0].at >= 0.9
    placeholder = bench.telegram.sent_messages(GROUP)[0]
    stop_data = placeholder["reply_markup"]["inline_keyboard"][0][0]["callback_data"]

    # Someone else cannot stop Alice's answer.
    bench.telegram.press_button(BOB, placeholder, stop_data)
    denied = await bench.telegram.wait_for("answerCallbackQuery")
    assert "Only the person" in denied[0].params.get("text", "")

    bench.telegram.press_button(ALICE, placeholder, stop_data)
    request = bench.upstream.chat_requests()[-1]
    await asyncio.wait_for(request.disconnected_event.wait(), 2)
    final = await bench.telegram.wait_for(
        "editMessageText", lambda c: "rich_message" in c.params, timeout=5
    )
    assert "Stopped" in final[0].params["rich_message"]["markdown"]


async def test_forum_topics_have_separate_histories(bench: Bench) -> None:
    username = bench.telegram.bot_username
    for topic, text in ((11, "topic eleven"), (22, "topic twenty-two")):
        group_message(
            bench, ALICE, f"@{username} {text}", message_thread_id=topic, is_topic_message=True
        )
        await bench.upstream.wait_for_requests(1 if topic == 11 else 2, path="/v1/chat/completions")
        await asyncio.sleep(0.2)
    group_message(bench, ALICE, f"@{username} again", message_thread_id=11, is_topic_message=True)
    await bench.upstream.wait_for_requests(3, path="/v1/chat/completions")
    contents = [m["content"] for m in bench.upstream.chat_requests()[-1].json["messages"][1:]]
    assert "user5001: topic eleven" in contents
    assert not any("twenty-two" in c for c in contents)
    sends = bench.telegram.calls_of("sendMessage", chat_id=GROUP)
    assert {str(c.params.get("message_thread_id")) for c in sends} == {"11", "22"}
