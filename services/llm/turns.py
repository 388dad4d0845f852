"""Provider-neutral requests: what the conversation service builds and every provider reads.

A turn is who said what, with the pictures that came with it, as plain bytes (JPEG, already
checked and scaled by `services.images.prepare_image`). Only a provider turns turns into its
own wire shape: data URLs for OpenAI-compatible APIs, uploaded file ids for GigaChat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Role", "Turn"]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    text: str
    # Who said it, where the chat has several people (a group): a provider that has a field
    # for it may use it; the others see it as a "Name: " prefix of the text.
    speaker: str | None = None
    images: tuple[bytes, ...] = ()  # JPEG bytes, oldest first

    def spoken_text(self) -> str:
        """The text with the speaker's name in front, for wire shapes without a name field."""
        return f"{self.speaker}: {self.text}" if self.speaker else self.text
