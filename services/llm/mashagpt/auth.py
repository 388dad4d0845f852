"""How MashaGPT recognises the bot: one key, sent the two ways its clients send it."""

from __future__ import annotations

__all__ = ["PROVIDER", "auth_headers"]

# The provider's name in log lines and in model ids ("mashagpt:gpt-4o-mini").
PROVIDER = "mashagpt"


def auth_headers(api_key: str) -> dict[str, str]:
    """Both headers: MashaGPT's public clients send `x-api-key`, the OpenAI SDKs pointed at it
    send `Authorization: Bearer`; sending both works whichever one a deployment checks."""
    return {"x-api-key": api_key, "Authorization": f"Bearer {api_key}"}
