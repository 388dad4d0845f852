"""GigaChat as a `ChatBackend`: turns in GigaChat's message shape, streamed through `LLMClient`.

GigaChat's chat API is OpenAI-like with a few rules of its own, all handled here:
- one system message only, and it must come first (422 otherwise): every system turn is merged
  into one, in order, placed first;
- pictures are uploaded files named by id in a message's `attachments`, one per message and
  ten per request: a user turn with several pictures becomes several consecutive user
  messages, and only the newest ten pictures of a conversation are attached;
- it knows no `stream_options` and sends usage in the last chunk by itself;
- a refused topic ends with `finish_reason: "blacklist"` (told to the user, never retried);
- each key may run only so many requests at once (one for individuals), so every stream holds
  a slot of the provider's `FairSlots` from before its uploads until its last chunk: users
  queue fairly instead of running into 429s.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from services.llm.client import LLMClient
from services.llm.gigachat.account import GigaChatAccount
from services.llm.gigachat.files import GigaChatFiles
from services.llm.provider import OnWait
from services.llm.slots import FairSlots
from services.llm.turns import Role, Turn
from services.llm.types import ModelInfo, StreamChunk

__all__ = [
    "MAX_IMAGES",
    "PROGRESS_ROLES",
    "Draft",
    "GigaChatChat",
    "display_model",
    "draft_messages",
    "neutral_finish",
]

# GigaChat's limit of attached pictures per request (and one per message).
MAX_IMAGES = 10

# GigaChat's finish reasons in the neutral spelling; "function_call" and anything new read as
# an answer that simply ended ("error" is a failure, raised by LLMClient).
_FINISH = {"stop": "stop", "length": "length", "blacklist": "refused"}

# GigaChat's status notes of its built-in functions ("N seconds left"): not answer text.
PROGRESS_ROLES = frozenset({"function_in_progress"})


def display_model(name: str) -> str:
    """A model name as answers spell it ("GigaChat:2.0.28.2") without its version suffix."""
    return name.partition(":")[0]


def neutral_finish(reason: str | None) -> str | None:
    return None if reason is None else _FINISH.get(reason, "stop")


@dataclass(frozen=True, slots=True)
class Draft:
    """One GigaChat message before its picture (if any) is uploaded."""

    role: Role
    content: str
    image: bytes | None = None


def _image_label(number: int) -> str:
    # GigaChat rejects an empty content; a message that only carries a picture says which.
    return f"(image {number})"


def draft_messages(turns: Sequence[Turn], *, max_images: int = MAX_IMAGES) -> list[Draft]:
    """GigaChat's messages for `turns`, pictures still as bytes.

    System turns become one system message, first, their texts joined by blank lines. The
    pictures of user turns are attached one per message: the turn's text carries its first
    picture, each further picture gets a message of its own right after. Only the newest
    `max_images` pictures are attached; the messages of older ones keep their text only.
    Only users' pictures are attached: an assistant turn's (the bot's own drawing) is not
    shown to the model again.
    """
    system = [turn.spoken_text() for turn in turns if turn.role == "system"]
    system_text = "\n\n".join(text for text in system if text.strip())
    pictures = [
        (index, number)
        for index, turn in enumerate(turns)
        if turn.role == "user"
        for number in range(len(turn.images))
    ]
    kept = set(pictures[max(0, len(pictures) - max_images) :]) if max_images > 0 else set()
    drafts: list[Draft] = [Draft("system", system_text)] if system_text else []
    for index, turn in enumerate(turns):
        if turn.role == "system":
            continue
        text = turn.spoken_text()
        # The newest pictures are kept, so a turn's kept pictures are its last ones.
        attached = [
            (number, image)
            for number, image in enumerate(turn.images, start=1)
            if (index, number - 1) in kept
        ]
        if not attached:
            drafts.append(Draft(turn.role, text))
            continue
        (first_number, first), *others = attached
        drafts.append(Draft(turn.role, text or _image_label(first_number), first))
        drafts.extend(Draft(turn.role, _image_label(number), image) for number, image in others)
    return drafts


class GigaChatChat:
    """`ChatBackend` for GigaChat."""

    def __init__(
        self,
        client: LLMClient,
        *,
        files: GigaChatFiles,
        slots: FairSlots,
        account: GigaChatAccount,
    ) -> None:
        self._client = client
        self._files = files
        self._slots = slots
        self._account = account

    def __repr__(self) -> str:
        return f"GigaChatChat({self._client!r})"

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
        async with self._slots.hold(user_key, on_wait):
            messages = await self._wire_messages(draft_messages(turns), user_key)
            stream = self._client.stream_chat(
                model=model,
                messages=messages,
                max_tokens=max_tokens,
                temperature=temperature,
                user_key=user_key,
                include_usage=False,
            )
            try:
                async for chunk in stream:
                    if chunk.finish_reason is not None:
                        chunk = StreamChunk(
                            chunk.text, chunk.usage, neutral_finish(chunk.finish_reason)
                        )
                    yield chunk
            finally:
                await stream.aclose()

    async def list_models(self) -> list[ModelInfo]:
        return await self._account.list_models()

    async def _wire_messages(
        self, drafts: Sequence[Draft], user_key: Hashable
    ) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        # One upload after another: usually only the newest picture is not stored yet, and a
        # failed upload ends the request before anything else is sent.
        for draft in drafts:
            message: dict[str, Any] = {"role": draft.role, "content": draft.content}
            if draft.image is not None:
                file_id = await self._files.upload_image(draft.image, user_key=user_key)
                message["attachments"] = [file_id]
            messages.append(message)
        return messages
