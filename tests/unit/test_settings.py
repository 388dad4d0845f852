from __future__ import annotations

import pytest

from bot.settings import SettingsError, load_settings

REQUIRED = {"bot_token": "123:abc", "llm_api_key": "secret-key"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BOT_TOKEN", "LLM_API_KEY", "ADMIN_IDS", "LLM_RPS", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    s = load_settings(_env_file=None, **REQUIRED)
    assert s.llm_base_url == "https://api.vsegpt.ru/v1"
    assert s.database_url == "sqlite:///data/bot.db"
    assert s.default_model == "openai/gpt-4o-mini"
    assert s.llm_rps == 0.5
    assert s.admin_ids == frozenset()
    assert s.telegram_api_url == "https://api.telegram.org"
    assert s.vision_model and s.stt_model and s.tts_model and s.image_model and s.video_model


def test_missing_required_names_each_variable() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    assert "BOT_TOKEN is required" in str(info.value)
    assert "LLM_API_KEY is required" in str(info.value)


def test_environment_and_admin_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", "42:token")
    monkeypatch.setenv("LLM_API_KEY", "k")
    monkeypatch.setenv("ADMIN_IDS", "1, 2,3")
    monkeypatch.setenv("LLM_RPS", "0")
    s = load_settings(_env_file=None)
    assert s.admin_ids == frozenset({1, 2, 3})
    assert s.llm_rps == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("llm_rps", "-1"),
        ("bot_token", "no-colon"),
        ("database_url", "postgres://x"),
        ("admin_ids", "1,abc"),
        ("llm_base_url", "ftp://x"),
    ],
)
def test_bad_values_name_the_variable_without_echoing_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None, **{**REQUIRED, name: value})
    message = str(info.value)
    assert name.upper() in message
    assert "no-colon" not in message


def test_secrets_are_not_in_repr() -> None:
    s = load_settings(_env_file=None, **REQUIRED)
    assert "secret-key" not in repr(s)
    assert "abc" not in repr(s.bot_token)


def test_env_example_documents_every_setting() -> None:
    from pathlib import Path

    from bot.settings import Settings

    example = (Path(__file__).parents[2] / ".env.example").read_text()
    for name in Settings.model_fields:
        assert name.upper() in example, name


def test_broadcast_rate_may_not_exceed_the_global_rate() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(
            _env_file=None,
            bot_token="1:x",
            llm_api_key="k",
            broadcast_rps=31,
            telegram_global_rps=30,
        )
    assert str(error.value) == (
        "BROADCAST_RPS must not exceed TELEGRAM_GLOBAL_RPS (answers need room too)"
    )
