"""Turns → OpenAI chat messages, streamed through `LLMClient`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Hashable, Sequence
from typing import Any

from services.images import to_data_url
from services.llm.catalog import ModelSource
from services.llm.client import LLMClient
from services.llm.provider import OnWait
from services.llm.turns import Turn
from services.llm.types import ModelInfo, StreamChunk

__all__ = ["OpenAIChat", "openai_messages"]

# Finish reasons other servers use for a refused topic, in the neutral spelling.
_REFUSALS = frozenset({"content_filter", "refusal", "blacklist"})


def openai_messages(turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """OpenAI's message shape: text, or content parts with each image as a data URL."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        text = turn.spoken_text()
        content: str | list[dict[str, Any]] = text
        if turn.images:
            # A picture sent without a caption has no text part (an empty one is refused).
            parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            parts.extend(
                {"type": "image_url", "image_url": {"url": to_data_url(image)}}
                for image in turn.images
            )
            content = parts
        messages.append({"role": turn.role, "content": content})
    return messages


class OpenAIChat:
    """`ChatBackend` for an OpenAI-compatible server."""

    def __init__(
        self,
        client: LLMClient,
        *,
        models: ModelSource | None = None,
        model_kinds: Callable[[list[ModelInfo]], list[ModelInfo]] | None = None,
    ) -> None:
        self._client = client
        # Where the model list comes from, when not the server's own GET /models as is
        # (MashaGPT's falls back to a configured list).
        self._models: ModelSource = models if models is not None else client
        # What a provider's own conventions tell of its models where the list says nothing
        # (VseGPT's id prefixes).
        self._model_kinds = model_kinds

    def __repr__(self) -> str:
        return f"OpenAIChat({self._client!r})"

    async def stream_chat(
        self,
        *,
        model: str,
        turns: Sequence[Turn],
        max_tokens: int,
        temperature: float | None = None,
        user_key: Hashable = None,
        on_wait: OnWait | None = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        stream = self._client.stream_chat(
            model=model,
            messages=openai_messages(turns),
            max_tokens=max_tokens,
            temperature=temperature,
            user_key=user_key,
            on_wait=on_wait,
        )
        try:
            async for chunk in stream:
                if chunk.finish_reason in _REFUSALS:
                    chunk = StreamChunk(chunk.text, chunk.usage, "refused")
                yield chunk
        finally:
            await stream.aclose()

    async def list_models(self) -> list[ModelInfo]:
        models = await self._models.list_models()
        return self._model_kinds(models) if self._model_kinds is not None else models
