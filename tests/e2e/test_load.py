"""Concurrency and the upstream limiter: generous bounds that show they work."""

from __future__ import annotations

import time

from tests.e2e.conftest import Bench


async def test_fifty_users_at_once_finish_in_about_the_latency(bench: Bench) -> None:
    bench.upstream.first_token_delay = 1.0
    users = range(6000, 6050)
    started = time.monotonic()
    for user in users:
        bench.telegram.send_message(user, f"hi from {user}")
    await bench.telegram.wait_for("sendRichMessage", count=50, timeout=20)
    elapsed = time.monotonic() - started
    # Serial handling would take 50 s; concurrent handling about 1 s.
    print(f"50 users answered in {elapsed:.2f} s")
    assert elapsed < 5, elapsed
    answered = {int(c.params["chat_id"]) for c in bench.telegram.calls_of("sendRichMessage")}
    assert answered == set(users)


async def test_llm_rps_limiter_causes_no_upstream_429(bench: Bench) -> None:
    await bench.restart(llm_rps=5)
    bench.upstream.enforce_rps(5, tolerance=0.02)
    started = time.monotonic()
    for user in range(7000, 7010):
        bench.telegram.send_message(user, "limited")
    await bench.telegram.wait_for("sendRichMessage", count=10, timeout=20)
    elapsed = time.monotonic() - started
    assert bench.upstream.rejected_429 == 0
    # Ten starts at five per second cannot all happen in under 1.8 s.
    assert elapsed >= 1.6, elapsed
    assert len(bench.upstream.chat_requests()) == 10
