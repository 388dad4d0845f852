"""Recent images per conversation, so a follow-up question can re-send them.

History stores only a short placeholder for an image turn ("[image] caption"), never
megabytes of image data. The images themselves stay here, in memory, for a few turns;
after that, or after a restart, the model is told plainly that the image is gone.
Memory is bounded by total bytes, oldest conversations evicted first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

IMAGE_MARK = "[image]"


def image_placeholder(count: int, caption: str) -> str:
    mark = IMAGE_MARK if count == 1 else f"[{count} images]"
    return f"{mark} {caption}".strip()


def is_image_placeholder(content: str) -> bool:
    return content.startswith(IMAGE_MARK) or (
        content.startswith("[") and " images]" in content[:16]
    )


@dataclass(slots=True)
class RememberedImages:
    placeholder: str  # the stored user message these images belong to
    images: tuple[bytes, ...]  # JPEG bytes
    size: int
    turns_since: int = 0


class ImageMemory:
    def __init__(self, *, max_bytes: int = 64 * 1024 * 1024, max_turns: int = 3) -> None:
        self._entries: OrderedDict[Hashable, RememberedImages] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes
        self.max_turns = max_turns

    def remember(self, key: Hashable, placeholder: str, images: tuple[bytes, ...]) -> None:
        self.forget(key)
        size = sum(len(i) for i in images)
        if size > self._max_bytes:
            return
        self._entries[key] = RememberedImages(placeholder, images, size)
        self._bytes += size
        while self._bytes > self._max_bytes and self._entries:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.size

    def recent(self, key: Hashable) -> RememberedImages | None:
        """The images of this conversation if they are within the last `max_turns` exchanges."""
        entry = self._entries.get(key)
        if entry is None or entry.turns_since >= self.max_turns:
            return None
        self._entries.move_to_end(key)
        return entry

    def exchange_done(self, key: Hashable, placeholder: str | None) -> None:
        """Count an exchange; the one that introduced the images does not count."""
        entry = self._entries.get(key)
        if entry is not None and placeholder != entry.placeholder:
            entry.turns_since += 1
            if entry.turns_since >= self.max_turns:
                self.forget(key)

    def forget(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    @property
    def total_bytes(self) -> int:
        return self._bytes
