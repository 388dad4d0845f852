"""The Telegram side of the network: downloads among answers in flight, retries of a lost
final message, a proxy for every call, and the shared budget of drafts."""

from __future__ import annotations

import io
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests.e2e.conftest import Bench, text_of
from tests.fakes.proxy_server import FakeProxy

USER = 9001


def send_photo(bench: Bench, user: int, caption: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buffer, "PNG")
    bench.telegram.add_file(f"net-photo-{user}", buffer.getvalue(), f"photos/net_{user}.png")
    size = {"file_unique_id": f"u{user}", "width": 64, "height": 48}
    bench.telegram.push_update(
        {
            "message": {
                "message_id": 50_000 + user,
                "date": int(time.time()),
                "chat": {"id": user, "type": "private", "first_name": "U"},
                "from": {"id": user, "is_bot": False, "first_name": "U", "language_code": "en"},
                "photo": [{"file_id": f"net-photo-{user}", **size}],
                "caption": caption,
            }
        }
    )


async def test_a_file_download_among_forty_streaming_answers_loses_none(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    # The first download after start-up used to close the connection pool under every
    # call in flight (the long poll included): 35 of 40 answers were lost. Without retries,
    # so that none can hide it, and unpaced, so that many calls are in flight.
    await bench.restart(telegram_retries=0, telegram_global_rps=10_000, telegram_draft_rps=10_000)
    started = time.monotonic()
    bench.upstream.chunks = 10
    bench.upstream.chunk_delay = 0.08
    users = range(9100, 9140)
    for user in users:
        bench.telegram.send_message(user, f"stream {user}")
    await bench.upstream.wait_for_requests(40, path="/v1/chat/completions")
    send_photo(bench, USER, "what is this?")
    await bench.telegram.wait_for("getFile", timeout=5)
    finals = await bench.telegram.wait_for("sendRichMessage", lambda c: c.ok, count=41, timeout=15)
    first_final = min(c.at for c in finals if c.chat_id in users)
    assert bench.telegram.calls_of("getFile")[0].at < first_final  # it was mid-answers
    answered = {c.chat_id: text_of(c) for c in finals}
    assert all(answered[user] == f"Echo: stream {user}" for user in users)
    assert USER in answered
    polls = [c for c in bench.telegram.calls_of("getUpdates") if c.at >= started]
    assert polls and all(c.ok for c in polls)
    assert not [r for r in caplog.records if "Failed to fetch updates" in r.getMessage()]


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},
        {"status": 502},
        {"drop": False},
        {"sequence": True},  # 500, then 502, then a dropped connection: three retries
    ],
    ids=["500", "502", "dropped", "500-502-dropped"],
)
async def test_a_lost_final_message_is_sent_again(bench: Bench, fault: dict[str, Any]) -> None:
    await bench.restart(telegram_retry_delay_seconds=0.05)
    fake = bench.telegram
    if "status" in fault:
        fake.fail_next("sendRichMessage", status=fault["status"], chat_id=USER)
    elif "drop" in fault:
        fake.drop_next("sendRichMessage", chat_id=USER)
    else:
        fake.fail_next("sendRichMessage", status=500, chat_id=USER)
        fake.fail_next("sendRichMessage", status=502, chat_id=USER)
        fake.drop_next("sendRichMessage", chat_id=USER)
    final = await bench.ask(USER, "do not lose me")
    assert text_of(final) == "Echo: do not lose me"
    attempts = fake.calls_of("sendRichMessage", chat_id=USER)
    assert len(attempts) == (4 if "sequence" in fault else 2)
    assert [m["rich_message"] is not None for m in fake.sent_messages(USER)] == [True]


async def test_a_final_message_whose_answer_was_lost_may_arrive_twice(bench: Bench) -> None:
    # Delivered, but the response never came back: the Bot API cannot tell, so the bot
    # sends again; a duplicate is accepted over a loss.
    await bench.restart(telegram_retry_delay_seconds=0.05)
    bench.telegram.drop_next("sendRichMessage", chat_id=USER, after_processing=True)
    bench.telegram.send_message(USER, "maybe twice")
    await bench.telegram.wait_for("sendRichMessage", lambda c: not c.dropped, timeout=5)
    texts = [text_of(c) for c in bench.telegram.calls_of("sendRichMessage", chat_id=USER)]
    assert texts == ["Echo: maybe twice"] * 2


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_every_telegram_call_goes_through_the_proxy(bench: Bench, scheme: str) -> None:
    fake = bench.telegram
    port = urlsplit(fake.url).port
    async with FakeProxy(scheme, auth="bot:s3cret") as proxy:  # type: ignore[arg-type]
        await bench.stop()
        started = time.monotonic()  # the stopped bot's last long poll may still be recorded
        await bench.start(telegram_proxy=proxy.url)
        assert proxy.saw(port)  # start-up and the first getUpdates went through it
        final = await bench.ask(USER, "via proxy")
        assert text_of(final) == "Echo: via proxy"
        calls = [c for c in fake.calls if c.at >= started]
        assert {"getUpdates", "sendRichMessage"} <= {c.method for c in calls}
        # Every connection the bot used reached Telegram through the proxy, and the proxy
        # authenticated it.
        peers = {c.peer for c in calls}
        assert proxy.connections >= len(peers) >= 1
        assert set(proxy.users) == {"bot:s3cret"}
        assert not proxy.rejected
        await bench.stop()


async def test_three_hundred_waiting_users_stay_within_the_draft_budget(bench: Bench) -> None:
    # 300 questions at once behind LLM_RPS=100: the last third waits past the 2 s notice and
    # each waiter's position changes 100 times a second. Unpaced, that was one draft per
    # waiter per tick (hundreds a second); now queue drafts share a few a second.
    # Messages get an overall rate of their own here, so that what is measured is the
    # drafts' budget (drafts otherwise only use what messages leave of the overall one).
    await bench.restart(
        llm_rps=100,
        telegram_global_rps=1000,
        telegram_draft_rps=15,
        telegram_progress_draft_rps=3,
    )
    users = range(20_000, 20_300)
    started = time.monotonic()
    for user in users:
        bench.telegram.send_message(user, "queued")
    finals = await bench.telegram.wait_for(
        ("sendRichMessage", "sendMessage"), lambda c: c.ok, count=300, timeout=20
    )
    assert {c.chat_id for c in finals} == set(users)  # every user answered
    drafts = bench.telegram.calls_of("sendRichMessageDraft", "sendMessageDraft")
    queue = [d for d in drafts if "queue" in str(d.params)]
    assert queue, "some users waited long enough to be shown their position"
    per_second = Counter(int(d.at - started) for d in drafts)
    queue_per_second = Counter(int(d.at - started) for d in queue)
    print(
        f"drafts per second {sorted(per_second.items())}, queue {sorted(queue_per_second.items())}"
    )
    # Budgets 15/s and 3/s, each with a second's burst: generous bounds.
    assert max(per_second.values()) <= 30, per_second
    assert max(queue_per_second.values()) <= 6, queue_per_second
