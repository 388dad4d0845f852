"""Plain data returned by the upstream client."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelInfo", "StreamChunk", "Usage", "parse_model_info", "parse_usage"]


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    credits: float | None = None  # the request's cost, where the provider says (VseGPT)
    energy: float | None = None  # MashaGPT's billing unit (usage.total_energy)


@dataclass(frozen=True, slots=True)
class StreamChunk:
    text: str = ""  # content delta (may be "")
    usage: Usage | None = None  # set on the final chunk only
    finish_reason: str | None = None


# What a model is for, as lists tell it (GigaChat's `type`, OpenRouter's and LiteLLM's
# modality fields): only "chat" models can answer a conversation.
CHAT = "chat"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    name: str
    context_length: int | None
    prompt_price: float | None = None
    completion_price: float | None = None
    kind: str = CHAT  # "chat", "image", "embedding", "audio", "video", or the list's own word

    @property
    def is_chat(self) -> bool:
        return self.kind == CHAT


def to_float(value: Any) -> float | None:
    """Lenient number: 1, 1.5, "1.5", " 1,5 " → float; anything else → None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "").replace("_", "")
        if "," in text and "." not in text:
            text = text.replace(",", ".")
        try:
            result = float(text)
        except ValueError:
            return None
    else:
        return None
    return None if math.isnan(result) or math.isinf(result) else result


def to_int(value: Any) -> int | None:
    """Lenient integer: 1024, 1024.0, "1024", "1,024", "128k" → int; anything else → None."""
    if isinstance(value, str):
        text = value.strip().lower().replace(",", "").replace("_", "").replace(" ", "")
        scale = 1
        if text.endswith("k"):
            text, scale = text[:-1], 1000
        elif text.endswith("m"):
            text, scale = text[:-1], 1_000_000
        number = to_float(text)
        return None if number is None else int(number * scale)
    number = to_float(value)
    return None if number is None else int(number)


def parse_usage(data: Any, credits: float | None = None) -> Usage:
    """Usage from an OpenAI `usage` object (missing or string fields tolerated)."""
    if not isinstance(data, dict):
        return Usage(credits=credits)
    prompt = to_int(data.get("prompt_tokens")) or 0
    completion = to_int(data.get("completion_tokens")) or 0
    total = to_int(data.get("total_tokens")) or prompt + completion
    energy = to_float(data.get("total_energy"))
    if energy is None:
        parts = [to_float(data.get(k)) for k in ("prompt_energy", "completion_energy")]
        if any(p is not None for p in parts):
            energy = sum(p or 0.0 for p in parts)
    return Usage(prompt, completion, total, credits, energy)


def parse_model_info(data: Any) -> ModelInfo | None:
    """One entry of GET /models, or None when it has no usable id."""
    if not isinstance(data, dict):
        return None
    model_id = data.get("id")
    if not isinstance(model_id, str) or not model_id.strip():
        return None
    model_id = model_id.strip()
    name = data.get("name")
    context = None
    # OpenAI-style lists say context_length; LiteLLM max_input_tokens; others context_window;
    # vLLM max_model_len.
    for key in ("context_length", "max_input_tokens", "context_window", "max_model_len"):
        context = to_int(data.get(key))
        if context is not None:
            break
    if context is None:
        top = data.get("top_provider")  # OpenRouter-style aggregators
        if isinstance(top, dict):
            context = to_int(top.get("context_length"))
    if context is not None and context <= 0:
        context = None
    pricing = data.get("pricing")
    if not isinstance(pricing, dict):
        pricing = {}
    return ModelInfo(
        id=model_id,
        name=name.strip() if isinstance(name, str) and name.strip() else model_id,
        context_length=context,
        prompt_price=to_float(pricing.get("prompt")),
        completion_price=to_float(pricing.get("completion")),
        kind=model_kind(data),
    )


# Words lists use for what a model does, mapped onto ModelInfo.kind.
_KIND_WORDS = {
    "chat": CHAT,
    "text": CHAT,
    "completion": CHAT,
    "completions": CHAT,
    "responses": CHAT,
    "llm": CHAT,
    "embedder": "embedding",
    "embedding": "embedding",
    "embeddings": "embedding",
    "image": "image",
    "image_generation": "image",
    "images": "image",
    "audio": "audio",
    "audio_transcription": "audio",
    "audio_speech": "audio",
    "transcription": "audio",
    "speech": "audio",
    "tts": "audio",
    "stt": "audio",
    "video": "video",
    "video_generation": "video",
    "rerank": "rerank",
    "moderation": "moderation",
}


def model_kind(data: dict[str, Any]) -> str:
    """What a list entry says the model is for; "chat" when it says nothing.

    GigaChat: `type` chat|embedder|aicheck|filter. LiteLLM: `mode` chat|embedding|
    image_generation|audio_transcription. OpenRouter: `architecture.output_modalities`
    (a chat model outputs text). Some servers: `type`/`model_type`/`task`.
    """
    for key in ("type", "mode", "model_type", "task"):
        value = data.get(key)
        if isinstance(value, str) and value.strip() and value.strip().lower() != "model":
            word = value.strip().lower()
            return _KIND_WORDS.get(word, word)
    architecture = data.get("architecture")
    if isinstance(architecture, dict):
        outputs = architecture.get("output_modalities")
        if isinstance(outputs, list) and outputs:
            words = {str(o).lower() for o in outputs}
            if "text" in words:
                return CHAT
            for word in ("image", "audio", "video", "embeddings"):
                if word in words:
                    return _KIND_WORDS[word]
    return CHAT
