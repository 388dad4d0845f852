"""Usage records per provider: migration 5 (energy), grouping by model-id namespace."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from services.account import summary_of
from services.llm.provider import KNOWN_NAMESPACES
from services.storage import (
    MIGRATIONS,
    SCHEMA_VERSION,
    SQLiteStorage,
    Storage,
    UsageRecord,
    UsageSummary,
)
from services.storage import sqlite as sqlite_module
from services.storage.base import USAGE_NAMESPACES, ProviderUsage
from services.storage.migrations import migrate
from tests.fakes.clock import FakeClock
from tests.unit.storage_backends import BACKENDS, backend_storage, sqlite_only

DAY_START = 1_700_006_400.0  # a midnight UTC


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(DAY_START + 60)


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Storage]:
    async with backend_storage(request.param, clock) as store:
        yield store


def record(
    model: str,
    prompt: int = 10,
    completion: int = 5,
    *,
    credits: float | None = None,
    energy: float | None = None,
    user_id: int = 1,
) -> UsageRecord:
    return UsageRecord(user_id, 100, model, prompt, completion, credits, "ok", energy=energy)


# ------------------------------------------------------------------------------ migration 5


async def test_migration_5_keeps_version_4_rows_with_no_energy(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        assert await migrate(conn, MIGRATIONS[:4]) == 4
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO usage_records (user_id, chat_id, model, prompt_tokens, "
            "completion_tokens, credits, status, created_at) VALUES "
            "(7, 70, 'openai/gpt-4o-mini', 100, 50, 0.25, 'ok', 1.0), "
            "(7, 70, 'openai/gpt-4o-mini', 10, 5, NULL, 'error', 2.0)"
        )
    store = SQLiteStorage(path)
    await store.connect()
    try:
        assert await store.usage_summary(7) == UsageSummary(2, 110, 55, 0.25, 0.0)
        assert await store.usage_by_provider(7) == (ProviderUsage("", 2, 110, 55, 0.25, None),)
        # Rows written after the upgrade carry energy beside the old ones.
        await store.record_usage(record("mashagpt:gpt-4o", energy=3.5, user_id=7))
        assert (await store.usage_summary(7)).energy == 3.5
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchall() == [(SCHEMA_VERSION,)]
        rows = conn.execute("SELECT model, credits, energy FROM usage_records ORDER BY id")
        assert rows.fetchall() == [
            ("openai/gpt-4o-mini", 0.25, None),
            ("openai/gpt-4o-mini", None, None),
            ("mashagpt:gpt-4o", None, 3.5),
        ]


# ------------------------------------------------------------------- grouping by provider


async def test_records_are_grouped_by_namespace_with_nulls_kept(
    storage: SQLiteStorage,
) -> None:
    for item in (
        record("openai/gpt-4o-mini", 100, 50, credits=0.5),
        record("openai/gpt-4o-mini", 1, 1),  # no credits reported (e.g. an error)
        record("qwen2.5:7b", 2, 2, credits=0.25),  # a tag's prefix names no provider
        record("gigachat:GigaChat-2-Max", 30, 20),
        record("GigaChat:GigaChat-2", 3, 2),  # namespaces compare case-insensitively
        record("mashagpt:claude-sonnet-4-5", 7, 3, energy=1.5),
        record("mashagpt:gpt-4o-mini", 1, 1, energy=2.0),
        record("gigachat:", 4, 4),  # nothing after the colon: not a namespaced id
        record("openai/gpt-4o-mini", 999, 999, credits=9.0, user_id=2),
    ):
        await storage.record_usage(item)

    assert await storage.usage_by_provider(1) == (
        ProviderUsage("", 4, 107, 57, 0.75, None),
        ProviderUsage("gigachat", 2, 33, 22, None, None),
        ProviderUsage("mashagpt", 2, 8, 4, None, 3.5),
    )
    assert await storage.usage_by_provider(3) == ()


async def test_since_counts_only_records_from_then_on(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    clock.now = DAY_START - 3600  # yesterday
    await storage.record_usage(record("openai/gpt-4o-mini", credits=1.0))
    await storage.record_usage(record("gigachat:GigaChat-2"))
    clock.now = DAY_START
    await storage.record_usage(record("mashagpt:gpt-4o", 1, 1, energy=0.5))

    assert await storage.usage_by_provider(1, since=DAY_START) == (
        ProviderUsage("mashagpt", 1, 1, 1, None, 0.5),
    )
    assert [g.provider for g in await storage.usage_by_provider(1)] == ["", "gigachat", "mashagpt"]
    assert await storage.usage_by_provider(1, since=DAY_START + 1) == ()


async def test_overall_totals_match_the_breakdown(storage: SQLiteStorage, clock: FakeClock) -> None:
    await storage.record_usage(record("openai/gpt-4o-mini", 100, 50, credits=0.5))
    await storage.record_usage(record("gigachat:GigaChat-2", 20, 10))
    await storage.record_usage(record("mashagpt:gpt-4o", 5, 5, energy=2.25))
    total = await storage.usage_summary(1)
    assert total == UsageSummary(3, 125, 65, 0.5, 2.25)
    assert summary_of(await storage.usage_by_provider(1)) == total


async def test_energy_does_not_leak_into_the_admins_credits(
    storage: SQLiteStorage, clock: FakeClock
) -> None:
    await storage.record_usage(record("openai/gpt-4o-mini", credits=0.5))
    await storage.record_usage(record("mashagpt:gpt-4o", energy=40.0))
    stats = await storage.bot_statistics(clock.now + 1)
    assert (stats.requests_month, stats.credits_month) == (2, 0.5)


@pytest.mark.parametrize(
    "sql",
    [sqlite_module._SQL_USAGE_BY_PROVIDER_TOTAL, sqlite_module._SQL_USAGE_BY_PROVIDER_SINCE],
)
@sqlite_only
async def test_breakdown_reads_one_range_of_the_user_time_index(
    storage: SQLiteStorage, sql: str
) -> None:
    params = (1,) * sql.count("?")
    rows = await storage._conn.execute_fetchall("EXPLAIN QUERY PLAN " + sql, params)
    steps = [str(row[-1]) for row in rows]
    assert steps[0].startswith("SEARCH usage_records USING INDEX usage_records_user_time_idx")
    # Only the (tiny) grouping besides the index range: no scan, no second table.
    assert steps[1:] == ["USE TEMP B-TREE FOR GROUP BY"], steps


def test_storage_knows_the_same_namespaces_as_the_provider_registry() -> None:
    assert set(USAGE_NAMESPACES) == KNOWN_NAMESPACES


@pytest.mark.parametrize("name", ["giga'chat", "Giga", "giga chat", ""])
def test_namespaces_inlined_in_sql_must_be_plain_names(name: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        sqlite_module._namespace_sql(("gigachat", name))
