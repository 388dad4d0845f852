"""Upstream and Telegram failures, end to end: retries, clear messages, no duplicates."""

from __future__ import annotations

import logging

import pytest

from tests.e2e.conftest import ADMIN_ID, Bench, text_of

USER = 3001
FAST_RETRY = {"retry-after-ms": "20"}


async def test_upstream_429_is_retried_and_answered(bench: Bench) -> None:
    bench.upstream.fail_next(429, headers=FAST_RETRY, times=2)
    final = await bench.ask(USER, "retry me")
    assert text_of(final) == "Echo: retry me"
    statuses = [r.status for r in bench.upstream.chat_requests()]
    assert statuses == [429, 429, 200]


async def test_upstream_500_after_retries_says_try_later(bench: Bench) -> None:
    bench.upstream.fail_next(500, headers=FAST_RETRY, times=3)
    final = await bench.ask(USER, "fail me")
    assert "try again later" in text_of(final)
    assert "Traceback" not in text_of(final)
    assert len(bench.upstream.chat_requests()) == 3  # one try plus two retries


async def test_context_error_suggests_new(bench: Bench) -> None:
    bench.upstream.fail_next(
        400,
        {"error": {"message": "This model's maximum context length is 8192 tokens."}},
    )
    final = await bench.ask(USER, "too long")
    assert "/new" in text_of(final)
    assert len(bench.upstream.chat_requests()) == 1  # a 400 is never retried


async def test_bad_key_admin_sees_upstream_text_user_does_not(bench: Bench) -> None:
    body = {"error": {"message": "User with this API key not found"}}
    bench.upstream.fail_next(400, body)
    user_view = text_of(await bench.ask(USER, "hi"))
    assert "key" in user_view.lower() and "not found" not in user_view
    bench.upstream.fail_next(400, body)
    admin_view = text_of(await bench.ask(ADMIN_ID, "hi"))
    assert "User with this API key not found" in admin_view
    assert bench.upstream.api_key not in admin_view


async def test_moderation_refusal(bench: Bench) -> None:
    bench.upstream.fail_next(403, {"error": {"message": "flagged by moderation"}})
    final = await bench.ask(USER, "something bad", language_code="ru")
    assert "модерац" in text_of(final)


async def test_broken_stream_keeps_partial_and_is_not_rerun(bench: Bench) -> None:
    bench.upstream.reply = lambda req: "alpha beta gamma delta epsilon zeta"
    bench.upstream.chunks = 6
    bench.upstream.break_stream_after(3)
    final = await bench.ask(USER, "break")
    shown = text_of(final)
    assert shown.startswith("alpha beta")
    assert "interrupted" in shown
    assert "zeta" not in shown
    assert len(bench.upstream.chat_requests()) == 1


async def test_telegram_429_on_final_message_is_waited_out(bench: Bench) -> None:
    bench.telegram.fail_next("sendRichMessage", status=429, retry_after=1)
    final = await bench.ask(USER, "flood", timeout=15)
    attempts = bench.telegram.calls_of("sendRichMessage", chat_id=USER)
    assert len(attempts) == 2
    assert attempts[1].at - attempts[0].at >= 0.9
    assert text_of(final) == "Echo: flood"


async def test_queue_position_is_shown_to_a_waiting_user(bench: Bench) -> None:
    # One start per 2.5 s: the second user waits past the 2 s notice threshold.
    await bench.restart(llm_rps=0.4)
    bench.telegram.send_message(4001, "first")
    await bench.upstream.wait_for_requests(1, path="/v1/chat/completions")
    bench.telegram.send_message(4002, "second")
    notice = await bench.telegram.wait_for(
        ("sendRichMessageDraft", "sendMessageDraft"),
        lambda c: "queue" in str(c.params),
        timeout=5,
    )
    assert "#1" in str(notice[0].params)
    await bench.telegram.wait_for("sendRichMessage", count=2, timeout=10)


async def test_context_error_with_history_retries_with_less_history(bench: Bench) -> None:
    for i in range(4):
        await bench.ask(USER, f"question {i} " + "words " * 50)
    bench.upstream.fail_next(
        400, {"error": {"message": "This model's maximum context length is 8192 tokens."}}
    )
    final = await bench.ask(USER, "still there?")
    assert text_of(final) == "Echo: still there?"
    failed, retried = bench.upstream.chat_requests()[-2:]
    assert failed.status == 400 and retried.status == 200
    assert len(retried.json["messages"]) < len(failed.json["messages"])
    assert retried.json["messages"][-1]["content"] == "still there?"


async def test_secrets_never_reach_logs_or_users(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bench.upstream.fail_next(401, {"error": {"message": f"bad key {bench.upstream.api_key}"}})
    admin_view = text_of(await bench.ask(ADMIN_ID, "hi"))
    bench.telegram.fail_next("sendRichMessage", status=400, description="Bad Request: nope")
    await bench.ask(USER, "hello")
    bench.upstream.fail_next(500, headers=FAST_RETRY, times=3)
    await bench.ask(USER, "again")
    logged = caplog.text
    for secret in (bench.telegram.token, bench.upstream.api_key):
        assert secret not in logged
        assert secret not in admin_view
