"""A cached view of the upstream's model list.

Every message needs the model's context length, so the list is cached for `ttl` seconds. One
refresh runs at a time and concurrent callers await the same one. When a refresh fails the
previous list keeps serving (an empty list if none was ever loaded) and the failure is logged
once per outage; a failed refresh is not retried for `_FAILURE_BACKOFF` seconds, so a dead
/models endpoint does not add retries and backoff to every message.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from services.llm.errors import UpstreamError
from services.llm.types import ModelInfo

__all__ = ["ModelCatalog", "ModelSource"]


class ModelSource(Protocol):
    async def list_models(self) -> list[ModelInfo]: ...


log = logging.getLogger(__name__)

_FAILURE_BACKOFF = 30.0


class ModelCatalog:
    def __init__(
        self,
        client: ModelSource,
        *,
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._models: list[ModelInfo] = []
        self._chat: list[ModelInfo] = []
        self._by_id: dict[str, ModelInfo] = {}
        self._valid_until = -math.inf  # next refresh due at this clock time
        self._refresh: asyncio.Task[None] | None = None
        self._failing = False  # an outage is already logged

    async def models(self) -> list[ModelInfo]:
        await self._ensure_fresh()
        return list(self._models)

    async def chat_models(self) -> list[ModelInfo]:
        """Chat-capable models sorted by id."""
        await self._ensure_fresh()
        return list(self._chat)

    async def get(self, model_id: str) -> ModelInfo | None:
        await self._ensure_fresh()
        return self._by_id.get(model_id)

    async def context_length(self, model_id: str, default: int) -> int:
        info = await self.get(model_id)
        if info is None or not info.context_length:
            return default
        return info.context_length

    def invalidate(self) -> None:
        """Refresh on the next call; the current list still serves if that refresh fails."""
        self._valid_until = -math.inf

    async def _ensure_fresh(self) -> None:
        if self._clock() < self._valid_until:
            return
        task = self._refresh
        if task is None:
            task = self._refresh = asyncio.get_running_loop().create_task(
                self._do_refresh(), name="llm-model-catalog-refresh"
            )
        # Shielded: one caller giving up must not cancel the refresh the others wait for.
        await asyncio.shield(task)

    async def _do_refresh(self) -> None:
        try:
            models = await self._client.list_models()
        except Exception as exc:
            self._valid_until = self._clock() + min(self._ttl, _FAILURE_BACKOFF)
            if not self._failing:
                self._failing = True
                log.warning(
                    "model list refresh failed, keeping %d cached models: %r",
                    len(self._models),
                    exc,
                    # An UpstreamError is expected weather; anything else is a bug worth a trace.
                    exc_info=not isinstance(exc, UpstreamError),
                )
        else:
            self._models = models
            self._by_id = {m.id: m for m in models}
            self._chat = sorted((m for m in models if m.is_chat), key=lambda m: m.id)
            self._valid_until = self._clock() + self._ttl
            if self._failing:
                self._failing = False
                log.info("model list refresh recovered: %d models", len(models))
        finally:
            self._refresh = None
