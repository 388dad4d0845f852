"""MashaGPT's chat: OpenAI-shaped streaming over the shared `LLMClient`.

Only the wire shape of a conversation is MashaGPT's own here: turns become OpenAI messages
(pictures as `image_url` data URLs), and its `content_filter` finish reason becomes the bot's
neutral "refused". Retries, pacing, the breaker and usage (with energy, MashaGPT's billing
unit) come from `LLMClient`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Sequence
from typing import Any

from services.images import to_data_url
from services.llm.client import LLMClient
from services.llm.mashagpt.models import MashaModels
from services.llm.turns import Turn
from services.llm.types import ModelInfo, StreamChunk

__all__ = ["MashaChat", "to_messages"]

# OpenAI's name for "the provider's filter declined this topic".
_REFUSED_REASONS = frozenset({"content_filter"})
REFUSED = "refused"


def to_messages(turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """OpenAI chat messages: plain text content, or content parts when a turn has pictures."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        text = turn.spoken_text()
        if not turn.images:
            messages.append({"role": turn.role, "content": text})
            continue
        parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        parts.extend(
            {"type": "image_url", "image_url": {"url": to_data_url(image)}} for image in turn.images
        )
        messages.append({"role": turn.role, "content": parts})
    return messages


class MashaChat:
    """The `ChatBackend` of MashaGPT."""

    def __init__(self, client: LLMClient, models: MashaModels) -> None:
        self._client = client
        self._models = models

    def __repr__(self) -> str:
        return f"MashaChat({self._client!r})"

    async def stream_chat(
        self,
        *,
        model: str,
        turns: Sequence[Turn],
        max_tokens: int,
        temperature: float | None = None,
        user_key: Hashable = None,
        on_wait: Callable[[int], Awaitable[None]] | None = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        stream = self._client.stream_chat(
            model=model,
            messages=to_messages(turns),
            max_tokens=max_tokens,
            temperature=temperature,
            user_key=user_key,
            on_wait=on_wait,
        )
        # Closing this generator early must close the HTTP stream at once (billing stops).
        async with contextlib.aclosing(stream) as chunks:
            async for chunk in chunks:
                if chunk.finish_reason in _REFUSED_REASONS:
                    chunk = dataclasses.replace(chunk, finish_reason=REFUSED)
                yield chunk

    async def list_models(self) -> list[ModelInfo]:
        return await self._models.list_models()
