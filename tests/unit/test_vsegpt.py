"""VseGPT's own conventions: capability by id prefix."""

from __future__ import annotations

import pytest

from services.llm.types import ModelInfo
from services.llm.vsegpt import kind_by_prefix, with_prefix_kinds


@pytest.mark.parametrize(
    ("model_id", "kind"),
    [
        ("openai/gpt-4o-mini", "chat"),
        ("anthropic/claude-3-haiku", "chat"),
        ("vis-google/gemini-flash-1.5", "chat"),
        ("img-dummy/image", "image"),
        ("img2img-x/y", "image"),
        ("dall-e-3", "image"),
        ("stt-openai/whisper-1", "audio"),
        ("tts-openai/tts-1", "audio"),
        ("tta-stable/audio", "audio"),
        ("txt2sng-suno/v3", "audio"),
        ("txt2vid-kling/standart", "video"),
        ("img2vid-kling/standart", "video"),
        ("emb-openai/text-embedding-3-small", "embedding"),
        ("EMB-openai/upper", "embedding"),
    ],
)
def test_kind_by_prefix(model_id: str, kind: str) -> None:
    assert kind_by_prefix(model_id) == kind


def test_a_list_s_own_kind_wins_over_the_prefix() -> None:
    models = [
        ModelInfo("img-x", "x", None),
        ModelInfo("gpt-image-1", "g", None, kind="image"),
        ModelInfo("plain", "p", None),
    ]
    assert [(m.id, m.kind) for m in with_prefix_kinds(models)] == [
        ("img-x", "image"),
        ("gpt-image-1", "image"),
        ("plain", "chat"),
    ]
