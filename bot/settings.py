"""Configuration read from the environment and an optional `.env` file.

Names are part of the deployment contract: tests and deployments rely on them.
`load_settings()` turns validation errors into one line naming the variable, so a
bad deployment fails at start-up with a message a person can act on.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"


class SettingsError(Exception):
    """A configuration value is missing or invalid; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # Telegram
    bot_token: SecretStr
    telegram_api_url: str = DEFAULT_TELEGRAM_API_URL

    # Upstream (VseGPT by default; any OpenAI-compatible endpoint works)
    llm_base_url: str = "https://api.vsegpt.ru/v1"
    llm_api_key: SecretStr
    llm_rps: float = Field(default=0.5, ge=0)
    llm_app_title: str = "Telegram LLM bot"
    llm_timeout_seconds: float = Field(default=120.0, gt=0)

    # Storage
    database_url: str = "sqlite:///data/bot.db"

    # People
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()

    # Chat
    default_model: str = "openai/gpt-4o-mini"
    max_tokens: int = Field(default=2048, ge=16)
    default_context_tokens: int = Field(default=8192, ge=512)
    default_system_prompt: str = (
        "You are a helpful assistant in a Telegram chat. Answer in the language of the "
        "user's message. Use Markdown where it helps."
    )
    models_cache_seconds: float = Field(default=600.0, gt=0)

    # Media
    vision_model: str = "vis-google/gemini-flash-1.5"
    stt_model: str = "stt-openai/whisper-1"
    tts_model: str = "tts-openai/tts-1"
    tts_voice: str = "nova"
    image_model: str = "dall-e-3"
    video_model: str = "txt2vid-kling/standart"
    video_poll_seconds: float = Field(default=10.0, gt=0)
    video_timeout_minutes: float = Field(default=20.0, gt=0)
    video_max_jobs_per_user: int = Field(default=2, ge=1)
    balance_for_everyone: bool = False
    max_audio_seconds: float = Field(default=600.0, gt=0)
    album_window_seconds: float = Field(default=0.8, gt=0)

    # Outbound Telegram pacing (Telegram's documented soft limits)
    telegram_global_rps: float = Field(default=30.0, gt=0)
    telegram_chat_rps: float = Field(default=1.0, gt=0)
    draft_interval_seconds: float = Field(default=0.25, gt=0)
    edit_interval_seconds: float = Field(default=1.0, gt=0)
    # Broadcasts leave the rest of the overall budget to answers (see services/broadcast.py).
    broadcast_rps: float = Field(default=25.0, gt=0)
    broadcast_progress_seconds: float = Field(default=5.0, gt=0)

    # Upstream circuit breaker
    breaker_failures: int = Field(default=8, ge=1, le=40)
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0)

    polling_timeout: int = Field(default=30, ge=0, le=60)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    log_level: str = "INFO"

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _parse_admin_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(";", ",").split(",")]
            return frozenset(int(p) for p in parts if p)
        if isinstance(value, int):
            return frozenset({value})
        return value

    @model_validator(mode="after")
    def _broadcast_below_global(self) -> Settings:
        if self.broadcast_rps > self.telegram_global_rps:
            raise ValueError(
                "BROADCAST_RPS must not exceed TELEGRAM_GLOBAL_RPS (answers need room too)"
            )
        return self

    @field_validator("telegram_api_url", "llm_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("bot_token")
    @classmethod
    def _check_token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()
        head, _, tail = token.partition(":")
        if not head.isdigit() or not tail:
            raise ValueError("does not look like a bot token (expected <digits>:<secret>)")
        return SecretStr(token)

    @field_validator("llm_api_key")
    @classmethod
    def _check_key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith("sqlite:///"):
            raise ValueError("must look like sqlite:///relative/path or sqlite:////absolute/path")
        return value


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's report into one line per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            # Never echo the input: it may be a secret.
            reason = str(error["msg"]).removeprefix("Value error, ")
            if not error["loc"]:  # a check across variables names them itself
                lines.append(reason)
            elif error["type"] == "missing":
                lines.append(f"{str(error['loc'][0]).upper()} is required but not set")
            else:
                lines.append(f"{str(error['loc'][0]).upper()} is invalid: {reason}")
        raise SettingsError("; ".join(lines)) from None
