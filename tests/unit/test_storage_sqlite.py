from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.storage import (
    RESETTABLE_USER_SETTINGS,
    USER_SETTING_FIELDS,
    SQLiteStorage,
    Storage,
    StoredMessage,
    UsageRecord,
    UsageSummary,
)
from services.storage import sqlite as sqlite_module
from tests.fakes.clock import FakeClock
from tests.unit.storage_backends import (
    BACKENDS,
    INTEGRITY_ERRORS,
    backend_storage,
    fetch,
    sqlite_only,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Storage]:
    async with backend_storage(request.param, clock) as store:
        yield store


def user_msg(content: str, tokens: int = 3, **kw: object) -> StoredMessage:
    return StoredMessage(role="user", content=content, tokens=tokens, **kw)  # type: ignore[arg-type]


def bot_msg(content: str, tokens: int = 5, **kw: object) -> StoredMessage:
    return StoredMessage(role="assistant", content=content, tokens=tokens, **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- lifecycle


async def test_implements_protocol(storage: SQLiteStorage) -> None:
    assert isinstance(storage, Storage)


async def test_file_database_pragmas(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "bot.db", busy_timeout_ms=4321)
    await store.connect()
    try:
        assert await fetch(store, "PRAGMA journal_mode") == [("wal",)]
        assert await fetch(store, "PRAGMA synchronous") == [(1,)]  # NORMAL
        assert await fetch(store, "PRAGMA foreign_keys") == [(1,)]
        assert await fetch(store, "PRAGMA busy_timeout") == [(4321,)]
    finally:
        await store.close()


async def test_use_before_connect_and_after_close_raises() -> None:
    store = SQLiteStorage(":memory:")
    with pytest.raises(RuntimeError, match="connect"):
        await store.get_user(1)
    await store.connect()
    db = store._db
    await store.connect()  # idempotent: still the same single connection
    assert store._db is db
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(RuntimeError, match="connect"):
        await store.count_users()


async def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    store = SQLiteStorage(path)
    await store.connect()
    await store.upsert_user(7, username="u", first_name="U", language_code="ru")
    await store.update_user_settings(7, model="m1")
    conv = await store.active_conversation(70, None)
    await store.add_exchange(conv, user_msg("q"), bot_msg("a"))
    await store.close()

    store = SQLiteStorage(path)
    await store.connect()
    try:
        user = await store.get_user(7)
        assert user is not None and user.model == "m1" and user.language_code == "ru"
        assert await store.active_conversation(70, None) == conv
        assert [m.content for m in await store.recent_messages(conv, 10)] == ["q", "a"]
    finally:
        await store.close()


# ---------------------------------------------------------------------------------- users


async def test_upsert_creates_and_refreshes_profile_keeping_settings(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    assert await storage.get_user(1) is None
    created = await storage.upsert_user(1, username="ann", first_name="Ann", language_code="en")
    assert created.user_id == 1
    assert created.username == "ann"
    assert created.language is None and created.model is None and created.temperature is None
    assert created.created_at == clock.now
    assert created.is_blocked is False

    await storage.update_user_settings(1, language="ru", model="gpt", temperature=0.5)
    clock.now += 100
    refreshed = await storage.upsert_user(1, username="ann2", first_name=None, language_code="de")
    assert refreshed.username == "ann2"
    assert refreshed.first_name is None
    assert refreshed.language_code == "de"
    assert (refreshed.language, refreshed.model, refreshed.temperature) == ("ru", "gpt", 0.5)
    assert refreshed.created_at == created.created_at  # creation time is not refreshed
    assert await storage.get_user(1) == refreshed


@sqlite_only
async def test_upsert_unchanged_profile_does_not_write(storage: SQLiteStorage) -> None:
    await storage.upsert_user(1, username="a", first_name="A", language_code="en")
    before = storage._conn.total_changes
    user = await storage.upsert_user(1, username="a", first_name="A", language_code="en")
    assert storage._conn.total_changes == before
    assert user.username == "a"


async def test_upsert_clears_blocked_flag(storage: SQLiteStorage) -> None:
    await storage.upsert_user(1, username="a", first_name="A", language_code="en")
    await fetch(storage, "UPDATE users SET is_blocked = 1 WHERE user_id = 1")
    assert (await storage.get_user(1)).is_blocked is True  # type: ignore[union-attr]
    user = await storage.upsert_user(1, username="a", first_name="A", language_code="en")
    assert user.is_blocked is False


async def test_update_user_settings(storage: SQLiteStorage) -> None:
    await storage.upsert_user(1, username="a", first_name="A", language_code="en")
    user = await storage.update_user_settings(1, temperature=1, system_prompt="be brief")
    assert user.temperature == 1.0 and isinstance(user.temperature, float)
    assert user.system_prompt == "be brief"
    user = await storage.update_user_settings(1, temperature=None)
    assert user.temperature is None and user.system_prompt == "be brief"
    assert await storage.get_user(1) == user
    assert (await storage.update_user_settings(1)) == user  # no fields: unchanged


async def test_update_user_settings_rejects_unknown_and_badly_typed(
    storage: SQLiteStorage,
) -> None:
    await storage.upsert_user(1, username="a", first_name="A", language_code="en")
    with pytest.raises(ValueError, match="is_blocked"):
        await storage.update_user_settings(1, model="x", is_blocked=True)
    with pytest.raises(ValueError, match="username"):
        await storage.update_user_settings(1, username="evil")
    with pytest.raises(TypeError):
        await storage.update_user_settings(1, temperature="hot")
    with pytest.raises(TypeError):
        await storage.update_user_settings(1, temperature=True)
    with pytest.raises(TypeError):
        await storage.update_user_settings(1, model=42)
    user = await storage.get_user(1)
    assert user is not None and user.model is None  # nothing half-applied


async def test_update_settings_of_unknown_user_creates_it(storage: SQLiteStorage) -> None:
    user = await storage.update_user_settings(5, model="m")
    assert user.user_id == 5 and user.model == "m" and user.username is None
    user = await storage.update_user_settings(6)
    assert user.user_id == 6
    assert await storage.count_users() == 2


async def test_reset_user_settings_keeps_language(storage: SQLiteStorage) -> None:
    await storage.upsert_user(1, username="a", first_name="A", language_code="en")
    await storage.update_user_settings(
        1, language="ru", model="m", system_prompt="p", temperature=0.3
    )
    user = await storage.reset_user_settings(1)
    assert (user.model, user.system_prompt, user.temperature) == (None, None, None)
    assert user.language == "ru"
    assert user.username == "a"


async def test_media_settings_default_to_none_and_update(storage: SQLiteStorage) -> None:
    user = await storage.upsert_user(1, username="a", first_name="A", language_code="en")
    assert (user.vision_model, user.image_model, user.tts_voice, user.reply_mode) == (
        None,
        None,
        None,
        None,
    )
    user = await storage.update_user_settings(
        1, vision_model="vis-x", image_model="img-y", tts_voice="alloy", reply_mode="voice"
    )
    assert (user.vision_model, user.image_model, user.tts_voice, user.reply_mode) == (
        "vis-x",
        "img-y",
        "alloy",
        "voice",
    )
    assert await storage.get_user(1) == user
    # A profile refresh keeps them, like every other setting.
    refreshed = await storage.upsert_user(1, username="b", first_name="A", language_code="en")
    assert (refreshed.tts_voice, refreshed.reply_mode) == ("alloy", "voice")
    user = await storage.update_user_settings(1, reply_mode=None)
    assert user.reply_mode is None and user.tts_voice == "alloy"


@pytest.mark.parametrize("mode", ["text", "voice", "both"])
async def test_reply_mode_accepts_known_modes(storage: SQLiteStorage, mode: str) -> None:
    assert (await storage.update_user_settings(1, reply_mode=mode)).reply_mode == mode


async def test_media_settings_are_validated(storage: SQLiteStorage) -> None:
    await storage.upsert_user(1, username="a", first_name="A", language_code="en")
    with pytest.raises(ValueError, match="reply_mode"):
        await storage.update_user_settings(1, reply_mode="loud")
    with pytest.raises(TypeError):
        await storage.update_user_settings(1, tts_voice=3)
    with pytest.raises(TypeError):
        await storage.update_user_settings(1, vision_model=["x"])
    user = await storage.get_user(1)
    assert user is not None and user.reply_mode is None and user.tts_voice is None


async def test_reset_clears_media_settings_too(storage: SQLiteStorage) -> None:
    await storage.upsert_user(1, username="a", first_name="A", language_code="en")
    await storage.update_user_settings(
        1,
        language="en",
        model="m",
        vision_model="v",
        image_model="i",
        tts_voice="nova",
        reply_mode="both",
    )
    user = await storage.reset_user_settings(1)
    assert user.model is None
    assert (user.vision_model, user.image_model, user.tts_voice, user.reply_mode) == (
        None,
        None,
        None,
        None,
    )
    assert user.language == "en"
    assert all(getattr(user, name) is None for name in RESETTABLE_USER_SETTINGS)
    assert "language" not in RESETTABLE_USER_SETTINGS
    assert RESETTABLE_USER_SETTINGS < USER_SETTING_FIELDS


async def test_count_users(storage: SQLiteStorage) -> None:
    assert await storage.count_users() == 0
    for uid in range(1, 6):
        await storage.upsert_user(uid, username=None, first_name=None, language_code=None)
    await storage.upsert_user(3, username="again", first_name=None, language_code=None)
    assert await storage.count_users() == 5


# -------------------------------------------------------------------------- conversations


async def test_active_conversation_created_once_per_chat_and_thread(
    storage: SQLiteStorage,
) -> None:
    c1 = await storage.active_conversation(100, None)
    assert await storage.active_conversation(100, None) == c1
    assert await storage.active_conversation(100, 0) == c1  # None is stored as 0
    c2 = await storage.active_conversation(100, 5)
    c3 = await storage.active_conversation(200, None)
    assert len({c1, c2, c3}) == 3
    assert await fetch(storage, "SELECT thread_id FROM conversations WHERE id = ?", (c1,)) == [(0,)]


async def test_concurrent_first_use_creates_one_conversation(storage: SQLiteStorage) -> None:
    ids = await asyncio.gather(*(storage.active_conversation(300, 9) for _ in range(50)))
    assert len(set(ids)) == 1
    rows = await fetch(storage, "SELECT COUNT(*) FROM conversations WHERE chat_id = 300")
    assert rows == [(1,)]


async def test_new_conversation_switches_and_keeps_old_rows(storage: SQLiteStorage) -> None:
    old = await storage.active_conversation(100, None)
    await storage.add_exchange(old, user_msg("old q"), bot_msg("old a"))
    new = await storage.new_conversation(100, None)
    assert new != old
    assert await storage.active_conversation(100, None) == new
    assert await storage.recent_messages(new, 10) == []
    assert [m.content for m in await storage.recent_messages(old, 10)] == ["old q", "old a"]
    # Other threads of the same chat are unaffected.
    other = await storage.active_conversation(100, 1)
    await storage.new_conversation(100, None)
    assert await storage.active_conversation(100, 1) == other


async def test_new_conversation_before_any_use(storage: SQLiteStorage) -> None:
    conv = await storage.new_conversation(400, None)
    assert await storage.active_conversation(400, None) == conv


# ------------------------------------------------------------------------------- messages


async def test_add_exchange_stores_both_rows_in_order(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    conv = await storage.active_conversation(1, None)
    await storage.add_exchange(
        conv,
        user_msg("hello", tokens=2, user_id=42),
        bot_msg("hi there", tokens=4, status="stopped", created_at=123.5),
    )
    first, second = await storage.recent_messages(conv, 10)
    assert (first.role, first.content, first.tokens, first.status) == (
        "user",
        "hello",
        2,
        "complete",
    )
    assert first.user_id == 42 and first.created_at == clock.now
    assert (second.role, second.content, second.tokens, second.status) == (
        "assistant",
        "hi there",
        4,
        "stopped",
    )
    assert second.user_id is None and second.created_at == 123.5
    assert first.id is not None and second.id is not None and first.id < second.id


@pytest.mark.parametrize(
    "bad_assistant",
    [
        StoredMessage(role="bogus", content="x", tokens=1),  # CHECK constraint
        StoredMessage(role="assistant", content=None, tokens=1),  # type: ignore[arg-type]
        StoredMessage(role="assistant", content="x", tokens=None),  # type: ignore[arg-type]
    ],
)
async def test_add_exchange_is_atomic(storage: SQLiteStorage, bad_assistant: StoredMessage) -> None:
    conv = await storage.active_conversation(1, None)
    with pytest.raises(INTEGRITY_ERRORS):
        await storage.add_exchange(conv, user_msg("must not survive"), bad_assistant)
    assert await fetch(storage, "SELECT COUNT(*) FROM messages") == [(0,)]
    # The connection is still usable and not stuck inside a transaction.
    assert not isinstance(storage, SQLiteStorage) or not storage._conn.in_transaction
    await storage.add_exchange(conv, user_msg("q"), bot_msg("a"))
    assert len(await storage.recent_messages(conv, 10)) == 2


async def test_add_exchange_to_missing_conversation_fails(storage: SQLiteStorage) -> None:
    with pytest.raises(INTEGRITY_ERRORS):
        await storage.add_exchange(9999, user_msg("q"), bot_msg("a"))
    assert await fetch(storage, "SELECT COUNT(*) FROM messages") == [(0,)]


async def test_recent_messages_newest_limited_oldest_first(storage: SQLiteStorage) -> None:
    conv = await storage.active_conversation(1, None)
    other = await storage.active_conversation(2, None)
    for i in range(5):
        await storage.add_exchange(conv, user_msg(f"q{i}"), bot_msg(f"a{i}"))
        await storage.add_exchange(other, user_msg(f"x{i}"), bot_msg(f"y{i}"))

    page = await storage.recent_messages(conv, 3)
    assert [m.content for m in page] == ["a3", "q4", "a4"]
    assert [m.content for m in await storage.recent_messages(conv, 100)] == [
        f"{kind}{i}" for i in range(5) for kind in ("q", "a")
    ]
    assert await storage.recent_messages(conv, 0) == []
    assert await storage.recent_messages(conv, -1) == []
    assert await storage.recent_messages(12345, 10) == []


async def test_recent_messages_paging_with_before_id(storage: SQLiteStorage) -> None:
    conv = await storage.active_conversation(1, None)
    for i in range(7):
        await storage.add_exchange(conv, user_msg(f"q{i}"), bot_msg(f"a{i}"))
    collected: list[str] = []
    before: int | None = None
    while True:
        page = await storage.recent_messages(conv, 4, before_id=before)
        if not page:
            break
        assert len(page) <= 4
        assert [m.id for m in page] == sorted(m.id for m in page)  # type: ignore[type-var]
        collected = [m.content for m in page] + collected
        before = page[0].id
    assert collected == [f"{kind}{i}" for i in range(7) for kind in ("q", "a")]


async def test_active_history_is_the_conversation_and_its_newest_page(
    storage: SQLiteStorage,
) -> None:
    conv, page = await storage.active_history(1, 7, 3)  # first use: created, empty
    assert page == [] and await storage.active_conversation(1, 7) == conv
    assert await storage.active_history(1, 7, 3) == (conv, [])  # exists, still empty
    for i in range(3):
        await storage.add_exchange(conv, user_msg(f"q{i}"), bot_msg(f"a{i}"))
    again, page = await storage.active_history(1, 7, 3)
    assert again == conv
    assert page == await storage.recent_messages(conv, 3)
    assert [m.content for m in page] == ["a1", "q2", "a2"]  # newest three, oldest first
    new = await storage.new_conversation(1, 7)
    assert await storage.active_history(1, 7, 3) == (new, [])
    assert (await storage.active_history(1, None, 3))[0] not in (conv, new)  # another thread


async def test_add_exchange_with_usage_stores_the_usage_record_too(
    storage: SQLiteStorage,
) -> None:
    conv = await storage.active_conversation(1, None)
    usage = UsageRecord(42, 1, "m", 100, 50, 0.5, "ok")
    await storage.add_exchange(conv, user_msg("q", user_id=42), bot_msg("a"), usage)
    assert [m.content for m in await storage.recent_messages(conv, 10)] == ["q", "a"]
    summary = await storage.usage_summary(42)
    assert (summary.requests, summary.prompt_tokens, summary.completion_tokens) == (1, 100, 50)


async def test_a_failing_exchange_with_usage_stores_no_message(storage: SQLiteStorage) -> None:
    conv = await storage.active_conversation(1, None)
    bad = StoredMessage(role="bogus", content="x", tokens=1)
    with pytest.raises(INTEGRITY_ERRORS):
        await storage.add_exchange(
            conv, user_msg("q"), bad, UsageRecord(42, 1, "m", 1, 1, None, "ok")
        )
    assert await fetch(storage, "SELECT COUNT(*) FROM messages") == [(0,)]
    # PostgreSQL writes all three rows in one statement; SQLite writes the usage on its own
    # first (as before the two were joined): the answer was paid for either way.
    stored_usage = (await storage.usage_summary(42)).requests
    assert stored_usage == (1 if isinstance(storage, SQLiteStorage) else 0)


async def test_concurrent_exchanges_all_stored(storage: SQLiteStorage) -> None:
    convs = [await storage.active_conversation(chat, None) for chat in range(10)]

    async def chat(conv: int) -> None:
        for i in range(10):
            await storage.add_exchange(conv, user_msg(f"q{i}"), bot_msg(f"a{i}"))
            await storage.recent_messages(conv, 5)

    await asyncio.gather(*(chat(c) for c in convs))
    for conv in convs:
        contents = [m.content for m in await storage.recent_messages(conv, 100)]
        assert contents == [f"{kind}{i}" for i in range(10) for kind in ("q", "a")]


# ---------------------------------------------------------------------------------- usage


async def test_usage_summary_total_and_since(storage: SQLiteStorage, clock: FakeClock) -> None:
    assert await storage.usage_summary(1) == UsageSummary(0, 0, 0, 0.0)
    day_start = clock.now
    clock.now = day_start - 3600  # yesterday
    await storage.record_usage(UsageRecord(1, 10, "m", 100, 50, 0.5, "ok"))
    clock.now = day_start + 60
    await storage.record_usage(UsageRecord(1, 10, "m", 10, 5, 0.25, "stopped"))
    await storage.record_usage(UsageRecord(1, 11, "m2", 1, 0, None, "error"))
    await storage.record_usage(UsageRecord(2, 20, "m", 999, 999, 9.0, "ok"))

    total = await storage.usage_summary(1)
    assert total == UsageSummary(requests=3, prompt_tokens=111, completion_tokens=55, credits=0.75)
    today = await storage.usage_summary(1, since=day_start)
    assert today == UsageSummary(requests=2, prompt_tokens=11, completion_tokens=5, credits=0.25)
    assert isinstance(today.credits, float)
    assert await storage.usage_summary(1, since=day_start + 3600) == UsageSummary(0, 0, 0, 0.0)
    only_none = await storage.usage_summary(3)
    assert only_none.credits == 0.0


# -------------------------------------------------------------------------- query plans


async def query_plan(store: SQLiteStorage, sql: str) -> str:
    params = (1,) * sql.count("?")
    rows = await fetch(store, "EXPLAIN QUERY PLAN " + sql, params)
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        (sqlite_module._SQL_ACTIVE_CONVERSATION, "COVERING INDEX conversations_chat_thread_idx"),
        (sqlite_module._SQL_RECENT_MESSAGES, "INDEX messages_conversation_idx"),
        (sqlite_module._SQL_RECENT_MESSAGES_BEFORE, "INDEX messages_conversation_idx"),
        (sqlite_module._SQL_GET_USER, "INTEGER PRIMARY KEY"),
        (sqlite_module._SQL_USAGE_SINCE, "INDEX usage_records_user_time_idx"),
        (sqlite_module._SQL_USAGE_TOTAL, "INDEX usage_records_user_time_idx"),
    ],
)
@sqlite_only
async def test_hot_queries_are_single_index_searches(
    storage: SQLiteStorage, sql: str, index: str
) -> None:
    plan = await query_plan(storage, sql)
    assert plan.count("\n") == 0, plan  # one step: no joins, no subqueries
    assert plan.startswith("SEARCH"), plan  # never a full SCAN
    assert index in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # ORDER BY served by the index


@sqlite_only
async def test_before_id_bound_uses_index_range(storage: SQLiteStorage) -> None:
    plan = await query_plan(storage, sqlite_module._SQL_RECENT_MESSAGES_BEFORE)
    assert "conversation_id=? AND id<?" in plan, plan
