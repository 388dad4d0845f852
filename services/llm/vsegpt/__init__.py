"""What only VseGPT has: capability by model id prefix, and the cost of a request in a header.

VseGPT is reached through the OpenAI-compatible client like any such server (its media
endpoints, balance and video included: another server without them answers 404, which users
see as "not offered"). What is VseGPT's own convention lives here, so that the generic code
assumes nothing of it:

- a model's id says what it does (`img-`, `stt-`, `txt2vid-` ...; `vis-` is a chat model
  that reads images), where its `/models` list says nothing;
- the response header `x-used-credits` carries the request's cost.
"""

from __future__ import annotations

from dataclasses import replace

from services.llm.types import CHAT, ModelInfo

__all__ = [
    "CREDITS_HEADER",
    "HOST",
    "VISION_PREFIX",
    "kind_by_prefix",
    "with_prefix_kinds",
]

HOST = "api.vsegpt.ru"
CREDITS_HEADER = "x-used-credits"
# A chat model that also reads images.
VISION_PREFIX = "vis-"
# Id prefixes of models that are not chat models, and what they are. DALL·E ids come
# unprefixed (VseGPT maps them for OpenAI's clients).
_PREFIX_KINDS = (
    ("img2img-", "image"),
    ("img2vid-", "video"),
    ("img-", "image"),
    ("dall-e", "image"),
    ("stt-", "audio"),
    ("tts-", "audio"),
    ("tta-", "audio"),
    ("txt2sng-", "audio"),
    ("txt2vid-", "video"),
    ("emb-", "embedding"),
)


def kind_by_prefix(model_id: str) -> str:
    """What the id's prefix says the model is for; "chat" for any other id."""
    lowered = model_id.lower()
    for prefix, kind in _PREFIX_KINDS:
        if lowered.startswith(prefix):
            return kind
    return CHAT


def with_prefix_kinds(models: list[ModelInfo]) -> list[ModelInfo]:
    """The list with each model's kind taken from its id where the list itself said "chat"
    (or nothing): a list's own type field wins over the prefix."""
    result: list[ModelInfo] = []
    for model in models:
        kind = kind_by_prefix(model.id) if model.kind == CHAT else model.kind
        result.append(model if kind == model.kind else replace(model, kind=kind))
    return result
