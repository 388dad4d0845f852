"""MashaGPT's model list: its `GET /models` when it has one, else the configured ids.

No public copy of MashaGPT's API shows a models endpoint, so the bot probes it and, when it
is missing (404/405), failing or empty, offers the admin's `MASHAGPT_MODELS` instead: a chat
menu must never go empty, nor a message fail, because a list endpoint does not exist.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from services.llm.catalog import ModelSource
from services.llm.errors import UpstreamError
from services.llm.types import ModelInfo

__all__ = ["MashaModels", "configured_models"]

log = logging.getLogger(__name__)


def configured_models(ids: Iterable[str]) -> list[ModelInfo]:
    """Chat `ModelInfo`s for configured ids (blank ones and repeats dropped; context unknown)."""
    seen: dict[str, ModelInfo] = {}
    for raw in ids:
        model_id = raw.strip()
        if model_id and model_id not in seen:
            seen[model_id] = ModelInfo(id=model_id, name=model_id, context_length=None)
    return list(seen.values())


class MashaModels:
    def __init__(self, source: ModelSource, configured: Iterable[str]) -> None:
        """`source` lists the upstream's models (the chat `LLMClient`); `configured` are the
        ids offered when it cannot."""
        self._source = source
        self._configured = configured_models(configured)
        # The catalog refreshes every few minutes: say it once, not on every refresh.
        self._fallback_logged = False

    def __repr__(self) -> str:
        return f"MashaModels(configured={len(self._configured)})"

    async def list_models(self) -> list[ModelInfo]:
        """The upstream's list, or the configured one; never raises for a missing endpoint."""
        try:
            models = await self._source.list_models()
        except UpstreamError as exc:
            reason = f"{type(exc).__name__} (status {exc.status if exc.status else '-'})"
        else:
            if models:
                return models
            reason = "an empty list"
        if not self._fallback_logged:
            self._fallback_logged = True
            log.info(
                "mashagpt: GET /models gave %s; offering the %d configured models",
                reason,
                len(self._configured),
            )
        return list(self._configured)
