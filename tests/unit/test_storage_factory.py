from __future__ import annotations

from pathlib import Path

import pytest

from services.storage import (
    PostgresStorage,
    SQLiteStorage,
    Storage,
    database_kind,
    open_storage,
    sqlite_path_from_url,
)


def test_relative_path_is_relative_to_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_storage("sqlite:///data/sub/bot.db")
    assert isinstance(store, SQLiteStorage)
    assert isinstance(store, Storage)
    assert store.path == "data/sub/bot.db"
    assert (tmp_path / "data" / "sub").is_dir()  # parent directory created


def test_absolute_path(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "dir" / "bot.db"
    url = f"sqlite:///{target}"  # target starts with "/", giving sqlite:////...
    assert url.startswith("sqlite:////")
    store = open_storage(url)
    assert isinstance(store, SQLiteStorage)
    assert store.path == str(target)
    assert target.parent.is_dir()


def test_memory() -> None:
    assert sqlite_path_from_url("sqlite:///:memory:") == ":memory:"
    store = open_storage("sqlite:///:memory:")
    assert isinstance(store, SQLiteStorage) and store.path == ":memory:"


async def test_opened_storage_connects_and_creates_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_storage("sqlite:///var/bot.db")
    await store.connect()
    try:
        assert await store.count_users() == 0
    finally:
        await store.close()
    assert (tmp_path / "var" / "bot.db").is_file()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "bot.db",
        "/var/lib/bot.db",
        "sqlite://bot.db",
        "sqlite:///",
        "sqlite:///bot.db?mode=ro",
        "sqlite+aiosqlite:///bot.db",
        "mysql://user@host/db",
        "postgresql://bot:s3cret-pass@db.example:5432",
        "postgresql://bot:s3cret-pass@db.example:port/bot",
    ],
)
def test_unsupported_urls_are_rejected_clearly(url: str) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL") as excinfo:
        open_storage(url)
    message = str(excinfo.value)
    assert "sqlite:///" in message  # says what would be accepted
    assert "s3cret" not in message  # never echoes credentials


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://bot:s3cret-pass@db.example:5432/bot",
        "postgres://bot@db.example/bot?search_path=bots",
    ],
)
def test_postgresql_urls_select_the_postgresql_backend(url: str) -> None:
    store = open_storage(url)
    assert isinstance(store, PostgresStorage)
    assert database_kind(url) == "postgres"
    assert database_kind("sqlite:///x.db") == "sqlite"
