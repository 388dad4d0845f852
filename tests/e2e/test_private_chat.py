"""Private text chat end to end: streaming drafts, Stop, long answers, fallbacks."""

from __future__ import annotations

import asyncio
import itertools
import time

from tests.e2e.conftest import Bench, text_of

USER = 1001


async def test_answer_streams_in_drafts_then_final_rich_message(bench: Bench) -> None:
    bench.upstream.chunks = 6
    bench.upstream.first_token_delay = 0.6  # slow enough for "typing…"
    bench.upstream.chunk_delay = 0.08
    final = await bench.ask(USER, "hello there")

    assert final.method == "sendRichMessage"
    assert text_of(final) == "Echo: hello there"
    drafts = bench.telegram.calls_of("sendRichMessageDraft", chat_id=USER)
    assert drafts, "the answer should be shown growing in drafts"
    texts = [d.params["rich_message"]["markdown"] for d in drafts]
    # Drafts grow, never repeat, and all use the same draft id with a Stop button.
    assert len(set(texts)) == len(texts)
    assert all("Echo: hello there".startswith(x) for x in texts)
    assert len({d.params["draft_id"] for d in drafts}) == 1
    assert all(str(d.params.get("can_stop")).lower() == "true" for d in drafts)
    # Typing is shown before the first token; drafts come before the final message.
    actions = bench.telegram.calls_of("sendChatAction", chat_id=USER)
    assert actions and actions[0].at <= drafts[0].at
    assert drafts[-1].at <= final.at
    request = bench.upstream.chat_requests()[-1].json
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}
    assert request["max_tokens"] > 0


async def test_a_quick_answer_needs_no_typing_action(bench: Bench) -> None:
    # The first token comes well within the typing delay: the draft is the first sign.
    bench.upstream.chunks = 3
    bench.upstream.chunk_delay = 0.05
    final = await bench.ask(USER, "quick one")
    assert text_of(final) == "Echo: quick one"
    assert bench.telegram.calls_of("sendRichMessageDraft", chat_id=USER)
    assert not bench.telegram.calls_of("sendChatAction", chat_id=USER)


async def test_an_answer_that_arrives_whole_goes_straight_to_the_final_message(
    bench: Bench,
) -> None:
    # Nothing is gained by showing a draft of a finished answer: the final message is the
    # one call, sent without waiting for the answer to be stored.
    bench.upstream.chunks = 8
    bench.upstream.single_write = True
    asked = time.monotonic()
    final = await bench.ask(USER, "all at once")
    assert text_of(final) == "Echo: all at once"
    user_calls = [c for c in bench.telegram.calls if c.params.get("chat_id") == USER]
    calls = [c.method for c in user_calls]
    # "Typing…" only if this machine took longer than its 0.3 s delay (a loaded CI run).
    if calls[0] == "sendChatAction" and user_calls[0].at - asked >= 0.3:
        calls = calls[1:]
    assert calls == ["sendRichMessage"], calls


async def test_a_question_queued_behind_an_answer_gets_no_typing_of_its_own(
    bench: Bench,
) -> None:
    # Two questions at once: the second waits for the first answer (one answer at a time
    # per chat). Its "typing…" clock starts when it starts work, not while it waits.
    bench.upstream.first_token_delay = 0.5
    bench.telegram.send_message(USER, "first")
    bench.telegram.send_message(USER, "second")
    finals = await bench.telegram.wait_for("sendRichMessage", count=2, timeout=10)
    actions = bench.telegram.calls_of("sendChatAction", chat_id=USER)
    assert len(actions) == 2, [a.at for a in actions]
    assert actions[0].at < finals[0].at < actions[1].at


async def test_drafts_are_paced(bench: Bench) -> None:
    await bench.restart(draft_interval_seconds=0.25)
    bench.upstream.chunks = 40
    bench.upstream.chunk_delay = 0.025  # a chunk every 25 ms for ~1 s
    await bench.ask(USER, "pace me")
    drafts = bench.telegram.calls_of("sendRichMessageDraft", chat_id=USER)
    gaps = [b.at - a.at for a, b in itertools.pairwise(drafts)]
    assert len(drafts) <= 6
    assert all(gap >= 0.2 for gap in gaps), gaps


async def test_stop_cancels_upstream_keeps_partial_and_stores_it(bench: Bench) -> None:
    bench.upstream.reply = lambda req: "word " * 200
    bench.upstream.chunks = 100
    bench.upstream.chunk_delay = 0.05
    bench.telegram.send_message(USER, "tell me a long story")
    drafts = await bench.telegram.wait_for(
        "sendRichMessageDraft", lambda c: "word" in str(c.params), count=2
    )
    draft_id = int(drafts[-1].params["draft_id"])
    bench.telegram.press_stop(USER, draft_id)

    request = bench.upstream.chat_requests()[-1]
    await asyncio.wait_for(request.disconnected_event.wait(), 2)
    assert request.disconnected and not request.completed

    finals = await bench.telegram.wait_for(("sendRichMessage", "sendMessage"), count=1)
    shown = text_of(finals[-1])
    assert "Stopped" in shown
    assert "word" in shown
    partial = shown.split("*⏹")[0].strip()
    assert len(partial) < len("word " * 200)

    # The partial answer is part of the history of the next question.
    bench.upstream.reply = None
    bench.upstream.chunk_delay = 0
    await bench.ask(USER, "and then?")
    messages = bench.upstream.chat_requests()[-1].json["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"].strip() == partial


async def test_long_answer_is_split_into_rich_messages_without_loss(bench: Bench) -> None:
    paragraph = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20
    answer = "\n\n".join(f"{i}. {paragraph}" for i in range(70))  # ~80k characters
    bench.upstream.reply = lambda req: answer
    bench.upstream.chunks = 20
    bench.telegram.send_message(USER, "long please")
    parts = await bench.telegram.wait_for("sendRichMessage", count=3, timeout=15)
    await asyncio.sleep(0.3)
    parts = bench.telegram.calls_of("sendRichMessage", chat_id=USER)
    texts = [text_of(p) for p in parts]
    assert all(len(x) <= 32768 for x in texts)
    assert " ".join(texts).split() == answer.split()


async def test_rich_rejected_falls_back_to_html_parts(bench: Bench) -> None:
    bench.telegram.reject_method("sendRichMessage", description="Bad Request: rich disabled")
    code = "\n".join(f"print({i})  # <tag> & more" for i in range(400))
    answer = "# Title\n\nSome **bold** text.\n\n```python\n" + code + "\n```\n\nThe end."
    bench.upstream.reply = lambda req: answer
    bench.telegram.send_message(USER, "code please")
    await bench.telegram.wait_for("sendMessage", lambda c: "The end." in c.params["text"])
    messages = bench.telegram.calls_of("sendMessage", chat_id=USER)
    ok = [m for m in messages if m.response.get("ok")]
    assert len(ok) >= 2  # the code alone is longer than one classic message
    assert all(m.params.get("parse_mode") == "HTML" for m in ok)
    html = "".join(m.params["text"] for m in ok)
    assert "<b>bold</b>" in html
    assert "&lt;tag&gt; &amp; more" in html
    for i in (0, 199, 399):
        assert f"print({i})" in html


async def test_html_rejected_falls_back_to_plain_text(bench: Bench) -> None:
    bench.telegram.reject_method("sendRichMessage")
    bench.upstream.reply = lambda req: "Plain **fallback** works"
    bench.telegram.fail_next("sendMessage", status=400, description="Bad Request: can't parse")
    bench.telegram.send_message(USER, "x")
    calls = await bench.telegram.wait_for("sendMessage", count=2)
    assert calls[-1].params.get("parse_mode") in (None, "")
    assert calls[-1].params["text"] == "Plain fallback works"


async def test_non_text_message_gets_a_clear_answer(bench: Bench) -> None:
    bench.telegram.push_update(
        {
            "message": {
                "message_id": 77,
                "date": 0,
                "chat": {"id": USER, "type": "private"},
                "from": {"id": USER, "is_bot": False, "first_name": "U", "language_code": "en"},
                "sticker": {
                    "file_id": "s",
                    "file_unique_id": "s",
                    "type": "regular",
                    "width": 1,
                    "height": 1,
                    "is_animated": False,
                    "is_video": False,
                },
            }
        }
    )
    calls = await bench.telegram.wait_for("sendMessage", count=1)
    assert "text" in calls[0].params["text"].lower()
    assert not bench.upstream.chat_requests()


async def test_unknown_command_points_to_help(bench: Bench) -> None:
    bench.telegram.send_message(USER, "/frobnicate")
    call = (await bench.telegram.wait_for("sendMessage"))[0]
    assert "/help" in call.params["text"]
    assert not bench.upstream.chat_requests()
