"""The update journal in the running bot: a duplicate delivery is answered once, and questions
queued behind the rate limiter at a graceful stop are answered after the restart."""

from __future__ import annotations

import sqlite3

from handlers.ui.texts import t
from tests.e2e.conftest import Bench, text_of

USER = 501


def history(bench: Bench) -> list[tuple[str, str]]:
    with sqlite3.connect(bench.db) as conn:
        return conn.execute("SELECT role, content FROM messages ORDER BY id").fetchall()


async def test_an_update_delivered_twice_is_answered_once(bench: Bench) -> None:
    update = bench.telegram.send_message(USER, "only once")
    bench.telegram.deliver_again(update)  # same update_id, ahead of the offset
    first = await bench.telegram.wait_for(
        "sendRichMessage", lambda c: c.ok and c.chat_id == USER, timeout=10
    )
    assert text_of(first[0]) == "Echo: only once"
    # A later question in the same chat waits for every answer before it, so had the second
    # copy been answered, its answer would come first.
    later = await bench.ask(USER, "next")
    assert text_of(later) == "Echo: next"
    assert [text_of(c) for c in bench.finals(USER)] == ["Echo: only once", "Echo: next"]
    assert len(bench.upstream.chat_requests()) == 2
    await bench.stop()  # the last exchange is stored after its final message went out
    assert history(bench) == [
        ("user", "only once"),
        ("assistant", "Echo: only once"),
        ("user", "next"),
        ("assistant", "Echo: next"),
    ]


async def test_an_update_delivered_again_after_a_restart_is_not_answered_again(
    bench: Bench,
) -> None:
    update = bench.telegram.send_message(USER, "once")
    await bench.telegram.wait_for("sendRichMessage", lambda c: c.ok and c.chat_id == USER)
    await bench.restart()
    # Telegram delivers it again (the confirming offset never reached it): the journal in the
    # database remembers it across the restart.
    bench.telegram.deliver_again(update)
    later = await bench.ask(USER, "after")
    assert text_of(later) == "Echo: after"
    assert [text_of(c) for c in bench.finals(USER)] == ["Echo: once", "Echo: after"]
    assert len(bench.upstream.chat_requests()) == 2


async def test_graceful_stop_keeps_queued_questions_for_after_the_restart(bench: Bench) -> None:
    users = [USER + i for i in range(5)]
    bench.upstream.chunks = 5
    bench.upstream.chunk_delay = 0.05  # the first answer ends well within the 1 s grace
    await bench.restart(llm_rps=0.5)  # one start per 2 s: four questions wait in the queue
    for user in users:
        bench.telegram.send_message(user, f"question {user}")
    await bench.telegram.wait_for(
        "sendRichMessage", lambda c: c.ok and c.chat_id in users, timeout=10
    )
    await bench.stop()

    answered = [u for u in users if bench.finals(u)]
    waiting = [u for u in users if u not in answered]
    assert len(answered) == 1 and len(waiting) == 4
    stopped = t("en", "stopped_mark")
    for user in users:
        assert all(stopped not in text_of(c) for c in bench.finals(user))
    assert len(bench.upstream.chat_requests()) == 1  # nothing else was sent upstream

    bench.upstream.chunk_delay = 0.0
    await bench.start(llm_rps=0)
    for user in waiting:
        sent = await bench.telegram.wait_for(
            "sendRichMessage", lambda c, u=user: c.ok and c.chat_id == u, timeout=10
        )
        assert text_of(sent[0]) == f"Echo: question {user}"
    for user in waiting:
        texts = [text_of(c) for c in bench.finals(user)]
        assert texts == [t("en", "restart_note"), f"Echo: question {user}"]
    assert [text_of(c) for c in bench.finals(answered[0])] == [f"Echo: question {answered[0]}"]
    assert len(bench.upstream.chat_requests()) == 5
