"""Configuration read from the environment and an optional `.env` file, in sections.

The environment names are part of the deployment contract (`BOT_TOKEN`, `LLM_RPS`, ...):
each field of a section declares its own name as an alias, and one settings source reads
exactly those names from the environment and from `.env`. Code reads
`settings.llm.rps`; a deployment still sets `LLM_RPS`.

`load_settings()` turns validation errors into one line naming the variable, so a bad
deployment fails at start-up with a message a person can act on. This module imports
pydantic only: settings are checked before aiogram (seconds of imports) is loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"
PROXY_SCHEMES = ("http://", "https://", "socks5://", "socks5h://", "socks4://")


class SettingsError(Exception):
    """A configuration value is missing or invalid; the message names the variable."""


def _url(value: str) -> str:
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _proxy(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not value.startswith(PROXY_SCHEMES):
        raise ValueError("must be an http://, https:// or socks5:// URL")
    return value


def _ca_bundle(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if not os.path.isfile(value.strip()):
        raise ValueError("no such file")
    return value.strip()


def _optional_secret(value: SecretStr | None) -> SecretStr | None:
    """An unset or blank secret is None (the provider is off); otherwise it is stripped."""
    if value is None:
        return None
    secret = value.get_secret_value().strip()
    return SecretStr(secret) if secret else None


class _Section(BaseModel):
    # Populated by environment name (the alias) or, in code and tests, by field name.
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")


class TelegramSettings(_Section):
    bot_token: SecretStr = Field(alias="BOT_TOKEN")
    api_url: str = Field(DEFAULT_TELEGRAM_API_URL, alias="TELEGRAM_API_URL")
    polling_timeout: int = Field(30, ge=0, le=60, alias="POLLING_TIMEOUT")
    # When unset, HTTPS_PROXY / NO_PROXY from the environment apply.
    proxy: str | None = Field(None, alias="TELEGRAM_PROXY")
    # Calls that carry an answer are sent again on a connection failure, timeout or 5xx:
    # this many times, after waits doubling from the first (0.5, 1, 2 s).
    retries: int = Field(3, ge=0, le=10, alias="TELEGRAM_RETRIES")
    retry_delay_seconds: float = Field(0.5, gt=0, le=30, alias="TELEGRAM_RETRY_DELAY_SECONDS")

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        return _proxy(value)

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        return _url(value)

    @field_validator("bot_token")
    @classmethod
    def _check_token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()
        head, _, tail = token.partition(":")
        if not head.isdigit() or not tail:
            raise ValueError("does not look like a bot token (expected <digits>:<secret>)")
        return SecretStr(token)


class LLMSettings(_Section):
    """The primary OpenAI-compatible upstream (VseGPT by default)."""

    base_url: str = Field("https://api.vsegpt.ru/v1", alias="LLM_BASE_URL")
    # Optional when another provider is configured (a GigaChat-only bot).
    api_key: SecretStr | None = Field(None, alias="LLM_API_KEY")
    rps: float = Field(0.5, ge=0, alias="LLM_RPS")
    app_title: str = Field("Telegram LLM bot", alias="LLM_APP_TITLE")
    timeout_seconds: float = Field(120.0, gt=0, alias="LLM_TIMEOUT_SECONDS")
    default_model: str = Field("openai/gpt-4o-mini", alias="DEFAULT_MODEL")
    max_tokens: int = Field(2048, ge=16, alias="MAX_TOKENS")
    default_context_tokens: int = Field(8192, ge=512, alias="DEFAULT_CONTEXT_TOKENS")
    default_system_prompt: str = Field(
        "You are a helpful assistant in a Telegram chat. Answer in the language of the "
        "user's message. Use Markdown where it helps.",
        alias="DEFAULT_SYSTEM_PROMPT",
    )
    models_cache_seconds: float = Field(600.0, gt=0, alias="MODELS_CACHE_SECONDS")
    breaker_failures: int = Field(8, ge=1, le=40, alias="BREAKER_FAILURES")
    breaker_cooldown_seconds: float = Field(30.0, gt=0, alias="BREAKER_COOLDOWN_SECONDS")
    # When unset, HTTPS_PROXY / NO_PROXY from the environment apply.
    proxy: str | None = Field(None, alias="LLM_PROXY")
    # A PEM file of extra CAs trusted for the upstream, on top of the system store.
    ca_bundle: str | None = Field(None, alias="LLM_CA_BUNDLE")
    # The longest one non-streamed upstream attempt (transcription, image, speech...) may
    # take, from sending to the last byte of the answer; a slower one fails, not retried.
    request_deadline_seconds: float = Field(300.0, gt=0, alias="LLM_REQUEST_DEADLINE_SECONDS")
    # The longest a streamed answer may trickle bytes without completing an SSE line (an
    # event or a keep-alive comment): a body dripping a byte at a time is cut after this.
    # Complete silence is bounded by LLM_TIMEOUT_SECONDS (the read timeout).
    stream_gap_seconds: float = Field(60.0, gt=0, alias="LLM_STREAM_GAP_SECONDS")

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        return _proxy(value)

    @field_validator("ca_bundle")
    @classmethod
    def _check_ca_bundle(cls, value: str | None) -> str | None:
        return _ca_bundle(value)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return _url(value)

    @field_validator("api_key")
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        return _optional_secret(value)


class GigaChatSettings(_Section):
    """GigaChat (Sber): enabled by its authorization key."""

    credentials: SecretStr | None = Field(None, alias="GIGACHAT_CREDENTIALS")
    scope: str = Field("GIGACHAT_API_PERS", alias="GIGACHAT_SCOPE")
    auth_url: str = Field(
        "https://ngw.devices.sberbank.ru:9443/api/v2/oauth", alias="GIGACHAT_AUTH_URL"
    )
    base_url: str = Field("https://gigachat.devices.sberbank.ru/api/v1", alias="GIGACHAT_BASE_URL")
    # PEM with the Russian Trusted Root CA, trusted for both hosts besides the system store.
    ca_bundle: str | None = Field(None, alias="GIGACHAT_CA_BUNDLE")
    verify_ssl: bool = Field(True, alias="GIGACHAT_VERIFY_SSL")
    # Requests in flight per key: one for individuals, ten for companies.
    max_streams: int = Field(1, ge=1, le=1000, alias="GIGACHAT_MAX_STREAMS")
    proxy: str | None = Field(None, alias="GIGACHAT_PROXY")
    # Admins are told once when a prepaid token package drops below this (0 = never).
    low_balance: int = Field(10_000, ge=0, alias="GIGACHAT_LOW_BALANCE")

    @property
    def enabled(self) -> bool:
        return self.credentials is not None

    @field_validator("credentials")
    @classmethod
    def _check_credentials(cls, value: SecretStr | None) -> SecretStr | None:
        return _optional_secret(value)

    @field_validator("scope")
    @classmethod
    def _check_scope(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("auth_url", "base_url")
    @classmethod
    def _check_urls(cls, value: str) -> str:
        return _url(value)

    @field_validator("ca_bundle")
    @classmethod
    def _check_ca_bundle(cls, value: str | None) -> str | None:
        return _ca_bundle(value)

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        return _proxy(value)


class MashaGPTSettings(_Section):
    """MashaGPT: enabled by its key."""

    api_key: SecretStr | None = Field(None, alias="MASHAGPT_API_KEY")
    base_url: str = Field("https://api.mashagpt.ru/v1", alias="MASHAGPT_BASE_URL")
    proxy: str | None = Field(None, alias="MASHAGPT_PROXY")
    # Request starts per second (0: not paced by the bot).
    rps: float = Field(0.0, ge=0, alias="MASHAGPT_RPS")
    # The chat models offered when GET /models does not answer (comma-separated).
    models: Annotated[tuple[str, ...], NoDecode] = Field(
        ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5"), alias="MASHAGPT_MODELS"
    )

    @property
    def enabled(self) -> bool:
        return self.api_key is not None

    @field_validator("api_key")
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        return _optional_secret(value)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return _url(value)

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        return _proxy(value)

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value


class MediaSettings(_Section):
    vision_model: str = Field("vis-google/gemini-flash-1.5", alias="VISION_MODEL")
    stt_model: str = Field("stt-openai/whisper-1", alias="STT_MODEL")
    tts_model: str = Field("tts-openai/tts-1", alias="TTS_MODEL")
    tts_voice: str = Field("nova", alias="TTS_VOICE")
    image_model: str = Field("dall-e-3", alias="IMAGE_MODEL")
    video_model: str = Field("txt2vid-kling/standart", alias="VIDEO_MODEL")
    video_poll_seconds: float = Field(10.0, gt=0, alias="VIDEO_POLL_SECONDS")
    video_timeout_minutes: float = Field(20.0, gt=0, alias="VIDEO_TIMEOUT_MINUTES")
    album_window_seconds: float = Field(0.8, gt=0, alias="ALBUM_WINDOW_SECONDS")


class LimitsSettings(_Section):
    """What the bot allows itself and its users: outbound pacing and per-user bounds."""

    # Outbound Telegram pacing (Telegram's documented soft limits).
    telegram_global_rps: float = Field(30.0, gt=0, alias="TELEGRAM_GLOBAL_RPS")
    telegram_chat_rps: float = Field(1.0, gt=0, alias="TELEGRAM_CHAT_RPS")
    draft_interval_seconds: float = Field(0.25, gt=0, alias="DRAFT_INTERVAL_SECONDS")
    edit_interval_seconds: float = Field(1.0, gt=0, alias="EDIT_INTERVAL_SECONDS")
    # Drafts of all kinds per second, bot-wide (unset: half of TELEGRAM_GLOBAL_RPS), and of
    # those, queue-position/progress drafts (unset: a tenth of TELEGRAM_GLOBAL_RPS). Over
    # budget, a draft is skipped and a newer one replaces it.
    draft_rps: float | None = Field(None, gt=0, alias="TELEGRAM_DRAFT_RPS")
    progress_draft_rps: float | None = Field(None, gt=0, alias="TELEGRAM_PROGRESS_DRAFT_RPS")
    video_max_jobs_per_user: int = Field(2, ge=1, alias="VIDEO_MAX_JOBS_PER_USER")
    max_audio_seconds: float = Field(600.0, gt=0, alias="MAX_AUDIO_SECONDS")


class AccessSettings(_Section):
    """Who may spend the providers' money, and how much: checked on every paid question."""

    # "open": everyone may ask; "allowlist": only users and groups an admin /allow-ed.
    mode: str = Field("open", alias="ACCESS_MODE")
    # Answered requests per user per UTC day; tokens (prompt + completion) likewise. 0 = no
    # limit. Admins are never limited; /limit overrides the requests for one user.
    user_daily_requests: int = Field(0, ge=0, alias="USER_DAILY_REQUESTS")
    user_daily_tokens: int = Field(0, ge=0, alias="USER_DAILY_TOKENS")
    # Paid messages per user in any 60 s; more are refused (one notice). 0 = off.
    user_flood_per_minute: int = Field(20, ge=0, alias="USER_FLOOD_PER_MINUTE")

    @field_validator("mode")
    @classmethod
    def _check_mode(cls, value: str) -> str:
        mode = value.strip().lower()
        if mode not in ("open", "allowlist"):
            raise ValueError("must be open or allowlist")
        return mode


class StorageSettings(_Section):
    database_url: str = Field("sqlite:///data/bot.db", alias="DATABASE_URL")
    # Set: state shared by replicas (forms, limiters, pacing, Stop) lives in this Redis.
    redis_url: SecretStr | None = Field(None, alias="REDIS_URL")
    # Replica mode (PostgreSQL and REDIS_URL): a replica not seen for this long is dead and
    # its video jobs, broadcast and unfinished updates are taken over by another.
    replica_timeout_seconds: float = Field(20.0, ge=2.0, le=600.0, alias="REPLICA_TIMEOUT_SECONDS")

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        value = _optional_secret(value)  # may hold a password: never echoed
        if value is not None:
            scheme = value.get_secret_value().split("://", 1)[0].lower()
            if scheme not in ("redis", "rediss", "unix"):
                raise ValueError("must look like redis://[:password@]host:port/db")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        # The full check (and the backend) is services/storage/factory.py's; this one fails
        # fast on a value of the wrong kind. The value is never echoed: it may hold a password.
        url = value.strip()
        scheme, _, rest = url.partition("://")
        # A PostgreSQL URL must name its database: postgresql://…@host/database.
        postgres = scheme.lower() in ("postgresql", "postgres") and "/" in rest.split("?")[0]
        if not url.startswith("sqlite:///") and not postgres:
            raise ValueError(
                "must look like sqlite:///relative/path, sqlite:////absolute/path or "
                "postgresql://user:password@host:port/database"
            )
        return value


class AdminSettings(_Section):
    admin_ids: Annotated[frozenset[int], NoDecode] = Field(frozenset(), alias="ADMIN_IDS")
    balance_for_everyone: bool = Field(False, alias="BALANCE_FOR_EVERYONE")
    # Broadcasts leave the rest of the overall budget to answers (see services/broadcast.py).
    broadcast_rps: float = Field(25.0, gt=0, alias="BROADCAST_RPS")
    broadcast_progress_seconds: float = Field(5.0, gt=0, alias="BROADCAST_PROGRESS_SECONDS")
    # How often the providers' balances are checked for the admins' low-balance notices;
    # 0 = never. Minutes, fractions allowed.
    balance_check_minutes: float = Field(30.0, ge=0, alias="BALANCE_CHECK_MINUTES")

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _parse_admin_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(";", ",").split(",")]
            return frozenset(int(p) for p in parts if p)
        if isinstance(value, int):
            return frozenset({value})
        return value


class ServerSettings(_Section):
    """How updates arrive (long polling, or a webhook behind a public HTTPS URL) and the
    operators' HTTP endpoints (/healthz, /readyz, /metrics)."""

    # Set: the bot registers this URL with Telegram and serves it instead of polling.
    webhook_url: str | None = Field(None, alias="WEBHOOK_URL")
    # Sent to Telegram as secret_token; requests without it in their header get 401.
    webhook_secret: SecretStr | None = Field(None, alias="WEBHOOK_SECRET")
    webhook_host: str = Field("0.0.0.0", alias="WEBHOOK_HOST")
    webhook_port: int = Field(8080, ge=1, le=65535, alias="WEBHOOK_PORT")
    webhook_path: str = Field("/telegram/webhook", alias="WEBHOOK_PATH")
    # Polling mode only: serve /healthz, /readyz and /metrics on this port (unset: no server).
    health_port: int | None = Field(None, ge=1, le=65535, alias="HEALTH_PORT")

    @property
    def webhook(self) -> bool:
        return self.webhook_url is not None

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        # Telegram refuses anything else; plain http is for a local test server only.
        if not value.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError("must be an https:// URL")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        value = _optional_secret(value)
        if value is not None:
            secret = value.get_secret_value()
            # Telegram's rule for secret_token.
            allowed = all(c.isascii() and (c.isalnum() or c in "_-") for c in secret)
            if len(secret) > 256 or not allowed:
                raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("webhook_path")
    @classmethod
    def _check_webhook_path(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value


SECTIONS: dict[str, type[_Section]] = {
    "telegram": TelegramSettings,
    "llm": LLMSettings,
    "gigachat": GigaChatSettings,
    "mashagpt": MashaGPTSettings,
    "media": MediaSettings,
    "limits": LimitsSettings,
    "access": AccessSettings,
    "storage": StorageSettings,
    "admin": AdminSettings,
    "server": ServerSettings,
}
# Settings of the process itself, at the top level.
_TOP_LEVEL = {
    "LOG_LEVEL": "log_level",
    "LOG_FORMAT": "log_format",
    "SHUTDOWN_GRACE_SECONDS": "shutdown_grace_seconds",
}


def env_names() -> Iterator[tuple[str, str | None, str]]:
    """(environment name, section or None for the top level, field name) for every setting."""
    for section, model in SECTIONS.items():
        for name, info in model.model_fields.items():
            yield _alias(info, name), section, name
    for env, name in _TOP_LEVEL.items():
        yield env, None, name


def _alias(info: FieldInfo, name: str) -> str:
    alias = info.alias
    if isinstance(alias, str):
        return alias
    if isinstance(info.validation_alias, AliasChoices):  # pragma: no cover - not used
        return str(info.validation_alias.choices[0])
    return name.upper()


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Flat environment-style names (any case) → {section: {ENV_NAME: value}} / top level."""
    nested: dict[str, Any] = {}
    for env, section, name in env_names():
        for key in (env, env.lower()):
            if key in flat:
                if section is None:
                    nested[name] = flat[key]
                else:
                    nested.setdefault(section, {})[env] = flat[key]
                break
    return nested


class _FlatSource(PydanticBaseSettingsSource):
    """Reads the settings' flat environment names from `values` (the environment or .env)."""

    def __init__(self, settings_cls: type[BaseSettings], values: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._values = {k.upper(): v for k, v in values.items() if v is not None}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns every value at once

    def __call__(self) -> dict[str, Any]:
        return _nest(self._values)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    telegram: TelegramSettings
    llm: LLMSettings = Field(default_factory=lambda: LLMSettings())
    gigachat: GigaChatSettings = Field(default_factory=lambda: GigaChatSettings())
    mashagpt: MashaGPTSettings = Field(default_factory=lambda: MashaGPTSettings())
    media: MediaSettings = Field(default_factory=lambda: MediaSettings())
    limits: LimitsSettings = Field(default_factory=lambda: LimitsSettings())
    access: AccessSettings = Field(default_factory=lambda: AccessSettings())
    storage: StorageSettings = Field(default_factory=lambda: StorageSettings())
    admin: AdminSettings = Field(default_factory=lambda: AdminSettings())
    server: ServerSettings = Field(default_factory=lambda: ServerSettings())

    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    log_level: str = "INFO"
    # text: one human-readable line per record; json: one JSON object per line.
    log_format: str = "text"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit values first, then the process environment, then `.env`.
        dotenv: dict[str, str] = {}
        if isinstance(dotenv_settings, DotEnvSettingsSource):
            from dotenv import dotenv_values  # pydantic-settings' own dependency

            files = dotenv_settings.env_file
            if files is not None:
                for path in [files] if isinstance(files, str | os.PathLike) else files:
                    if os.path.isfile(path):
                        loaded = dotenv_values(path, encoding=dotenv_settings.env_file_encoding)
                        dotenv.update({k: v for k, v in loaded.items() if v is not None})
        return (
            init_settings,
            _FlatSource(settings_cls, dict(os.environ)),
            _FlatSource(settings_cls, dotenv),
        )

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("log_format")
    @classmethod
    def _check_log_format(cls, value: str) -> str:
        fmt = value.strip().lower()
        if fmt not in ("text", "json"):
            raise ValueError("must be text or json")
        return fmt

    @model_validator(mode="after")
    def _one_provider_at_least(self) -> Settings:
        if self.llm.api_key is None and not self.gigachat.enabled and not self.mashagpt.enabled:
            raise ValueError(
                "no provider is configured: set LLM_API_KEY, GIGACHAT_CREDENTIALS or "
                "MASHAGPT_API_KEY"
            )
        return self

    @model_validator(mode="after")
    def _webhook_secret_with_url(self) -> Settings:
        if self.server.webhook_url is not None and self.server.webhook_secret is None:
            raise ValueError("WEBHOOK_SECRET is required when WEBHOOK_URL is set")
        return self

    @model_validator(mode="after")
    def _broadcast_below_global(self) -> Settings:
        if self.admin.broadcast_rps > self.limits.telegram_global_rps:
            raise ValueError(
                "BROADCAST_RPS must not exceed TELEGRAM_GLOBAL_RPS (answers need room too)"
            )
        return self

    def secrets(self) -> list[str]:
        """Every secret value, for the log filter that redacts them."""
        values = [self.telegram.bot_token]
        for secret in (
            self.llm.api_key,
            self.gigachat.credentials,
            self.mashagpt.api_key,
            self.server.webhook_secret,
        ):
            if secret is not None:
                values.append(secret)
        secrets = [v.get_secret_value() for v in values]
        if self.storage.redis_url is not None:
            # REDIS_URL is logged nowhere; its password is redacted should it show up anyway.
            redis_password = urlsplit(self.storage.redis_url.get_secret_value()).password
            if redis_password:
                secrets.append(redis_password)
        return secrets


def load_settings(*, _env_file: str | None = ".env", **overrides: object) -> Settings:
    """Build settings; `overrides` use the flat names (`llm_rps=0`, as the environment has
    them, in any case). Pydantic's report becomes one line per bad variable."""
    unknown = {k for k in overrides if k.upper() not in {e for e, _, _ in env_names()}}
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    try:
        return Settings(_env_file=_env_file, **_nest(overrides))
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        # Never echo the input: it may be a secret.
        reason = str(error["msg"]).removeprefix("Value error, ")
        loc = error["loc"]
        if not loc:  # a check across variables names them itself
            lines.append(reason)
            continue
        name = str(loc[-1]).upper()
        if len(loc) == 1 and loc[0] in SECTIONS:
            # A whole required section is missing: name its required variables.
            model = SECTIONS[str(loc[0])]
            for field_name, info in model.model_fields.items():
                if info.is_required():
                    lines.append(f"{_alias(info, field_name)} is required but not set")
            continue
        if error["type"] == "missing":
            lines.append(f"{name} is required but not set")
        else:
            lines.append(f"{name} is invalid: {reason}")
    return "; ".join(lines)
