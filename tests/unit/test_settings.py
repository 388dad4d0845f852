from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import SettingsError, load_settings

REQUIRED = {"bot_token": "123:abc", "llm_api_key": "secret-key"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BOT_TOKEN", "LLM_API_KEY", "ADMIN_IDS", "LLM_RPS", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    s = load_settings(_env_file=None, **REQUIRED)
    assert s.llm.base_url == "https://api.vsegpt.ru/v1"
    assert s.storage.database_url == "sqlite:///data/bot.db"
    assert s.llm.default_model == "openai/gpt-4o-mini"
    assert s.llm.rps == 0.5
    assert s.admin.admin_ids == frozenset()
    assert s.telegram.api_url == "https://api.telegram.org"
    assert (
        s.media.vision_model
        and s.media.stt_model
        and s.media.tts_model
        and s.media.image_model
        and s.media.video_model
    )


def test_missing_required_names_each_variable() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None)
    assert "BOT_TOKEN is required" in str(info.value)


def test_at_least_one_provider_is_required() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None, bot_token="42:token")
    assert "LLM_API_KEY, GIGACHAT_CREDENTIALS or MASHAGPT_API_KEY" in str(info.value)


def test_any_provider_alone_is_enough() -> None:
    giga = load_settings(_env_file=None, bot_token="42:token", gigachat_credentials="c2VjcmV0")
    assert giga.llm.api_key is None and giga.gigachat.enabled and not giga.mashagpt.enabled
    assert giga.gigachat.scope == "GIGACHAT_API_PERS" and giga.gigachat.max_streams == 1
    masha = load_settings(
        _env_file=None, bot_token="42:token", mashagpt_api_key="m", mashagpt_models="a, b,,c"
    )
    assert masha.mashagpt.enabled and masha.mashagpt.models == ("a", "b", "c")
    # A blank key is no key: the provider stays off.
    with pytest.raises(SettingsError):
        load_settings(_env_file=None, bot_token="42:token", llm_api_key="  ")


def test_every_provider_secret_is_redacted() -> None:
    s = load_settings(
        _env_file=None,
        bot_token="42:token",
        llm_api_key="k1",
        gigachat_credentials="g2",
        mashagpt_api_key="m3",
    )
    assert set(s.secrets()) == {"42:token", "k1", "g2", "m3"}


def test_environment_and_admin_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", "42:token")
    monkeypatch.setenv("LLM_API_KEY", "k")
    monkeypatch.setenv("ADMIN_IDS", "1, 2,3")
    monkeypatch.setenv("LLM_RPS", "0")
    s = load_settings(_env_file=None)
    assert s.admin.admin_ids == frozenset({1, 2, 3})
    assert s.llm.rps == 0


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
    assert "abc" not in repr(s.telegram.bot_token)


def test_env_example_documents_every_setting() -> None:
    from pathlib import Path

    from bot.settings import env_names

    example = (Path(__file__).parents[2] / ".env.example").read_text()
    for name, _, _ in env_names():
        assert name in example, name


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


def test_sections_group_the_flat_names() -> None:
    s = load_settings(
        _env_file=None,
        **REQUIRED,
        telegram_api_url="http://127.0.0.1:1/",
        tts_voice="onyx",
        broadcast_rps=5,
        database_url="sqlite:///x.db",
        draft_interval_seconds=0.5,
    )
    assert s.telegram.api_url == "http://127.0.0.1:1"
    assert s.media.tts_voice == "onyx"
    assert s.admin.broadcast_rps == 5
    assert s.storage.database_url == "sqlite:///x.db"
    assert s.limits.draft_interval_seconds == 0.5


def test_env_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / ".env"
    env.write_text("BOT_TOKEN=7:file\nLLM_API_KEY=from-file\nLLM_RPS=2\nTTS_VOICE=echo\n")
    monkeypatch.setenv("LLM_RPS", "4")
    s = load_settings(_env_file=str(env))
    assert s.telegram.bot_token.get_secret_value() == "7:file"
    assert s.llm.rps == 4
    assert s.media.tts_voice == "echo"


def test_a_wrong_log_level_is_one_line() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None, **REQUIRED, log_level="LOUD")
    assert str(info.value).startswith("LOG_LEVEL is invalid")


def test_proxies_and_ca_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    s = load_settings(
        _env_file=None,
        **REQUIRED,
        telegram_proxy="socks5://u:p@127.0.0.1:1080",
        llm_proxy="http://127.0.0.1:3128",
        llm_ca_bundle=str(bundle),
    )
    assert s.telegram.proxy == "socks5://u:p@127.0.0.1:1080"
    assert s.llm.proxy == "http://127.0.0.1:3128"
    assert s.llm.ca_bundle == str(bundle)
    with pytest.raises(SettingsError) as info:
        load_settings(_env_file=None, **REQUIRED, llm_proxy="ftp://x", llm_ca_bundle="/nope.pem")
    assert "LLM_PROXY is invalid" in str(info.value)
    assert "LLM_CA_BUNDLE is invalid" in str(info.value)


def test_unknown_override_names_are_a_programming_error() -> None:
    with pytest.raises(TypeError):
        load_settings(_env_file=None, **REQUIRED, no_such_setting=1)
