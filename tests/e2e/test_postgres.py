"""The real bot on PostgreSQL (DATABASE_URL=postgresql://…, a fresh schema per test): answers,
remembers the conversation across a restart, replays questions left unanswered by a stop, and
a second bot on the same database is refused. Minimal copies of the SQLite bench's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.factory import build_app
from bot.instance_lock import InstanceLocked
from handlers.ui.texts import t
from tests.e2e.conftest import Bench, bench_settings, text_of
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.upstream_server import FakeUpstream
from tests.pg_schema import fresh_schema

USER = 601


@pytest.fixture
async def pg_bench(
    telegram: FakeTelegram, upstream: FakeUpstream, tmp_path: Path
) -> AsyncIterator[Bench]:
    async with fresh_schema() as url:
        telegram.reset()
        upstream.reset()
        bench = Bench(telegram, upstream, tmp_path / "unused.db", overrides={"database_url": url})
        await bench.start()
        try:
            yield bench
        finally:
            await bench.stop()


async def test_answers_and_remembers_the_conversation_after_a_restart(pg_bench: Bench) -> None:
    bench = pg_bench
    answer = await bench.ask(USER, "remember me")
    assert text_of(answer) == "Echo: remember me"
    await bench.restart()
    await bench.ask(USER, "do you remember?")
    request = bench.upstream.chat_requests()[-1].json
    assert [m["content"] for m in request["messages"][1:]] == [
        "remember me",
        "Echo: remember me",
        "do you remember?",
    ]
    assert not (bench.db.parent / "unused.db").exists()  # nothing went to SQLite


async def test_questions_left_unanswered_are_replayed_after_the_restart(pg_bench: Bench) -> None:
    bench = pg_bench
    users = [USER + i for i in range(3)]
    bench.upstream.chunks = 5
    bench.upstream.chunk_delay = 0.05
    await bench.restart(llm_rps=0.5)  # one start per 2 s: the others wait in the queue
    for user in users:
        bench.telegram.send_message(user, f"question {user}")
    await bench.telegram.wait_for(
        "sendRichMessage", lambda c: c.ok and c.chat_id in users, timeout=10
    )
    await bench.stop()
    waiting = [u for u in users if not bench.finals(u)]
    assert len(waiting) == 2

    bench.upstream.chunk_delay = 0.0
    await bench.start(llm_rps=0)
    for user in waiting:
        await bench.telegram.wait_for(
            "sendRichMessage", lambda c, u=user: c.ok and c.chat_id == u, timeout=10
        )
        texts = [text_of(c) for c in bench.finals(user)]
        assert texts == [t("en", "restart_note"), f"Echo: question {user}"]
    assert len(bench.upstream.chat_requests()) == 3


async def test_a_second_bot_on_the_same_database_is_refused(pg_bench: Bench) -> None:
    bench = pg_bench
    settings = bench_settings(bench.telegram, bench.upstream, bench.db, **bench.overrides)
    with pytest.raises(InstanceLocked, match="already using the PostgreSQL database"):
        build_app(settings)
