"""Text length in Telegram's unit: UTF-16 code units.

Telegram counts message limits and entity offsets in UTF-16 code units, so a character
outside the Basic Multilingual Plane (most emoji, some CJK, math letters) counts twice.
Everything here runs in C (``str.isascii``, codecs, regex) because it is called on every
answer and every draft update.
"""

from __future__ import annotations

import re
from bisect import bisect_left

# Characters that take a surrogate pair in UTF-16.
_ASTRAL_RE = re.compile("[\U00010000-\U0010ffff]")


def utf16_len(text: str) -> int:
    """Length of `text` in UTF-16 code units (what Telegram's limits count)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def astral_positions(text: str) -> list[int]:
    """Sorted indices of the characters that count as two UTF-16 units ([] for most text)."""
    if text.isascii():
        return []
    return [m.start() for m in _ASTRAL_RE.finditer(text)]


class Utf16Index:
    """Answers "how many UTF-16 units is text[a:b]" in O(log n) after one O(n) scan."""

    __slots__ = ("_astral", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._astral = astral_positions(text)

    def span(self, start: int, end: int) -> int:
        """UTF-16 length of text[start:end]."""
        if not self._astral or end <= start:
            return max(0, end - start)
        extra = bisect_left(self._astral, end) - bisect_left(self._astral, start)
        return end - start + extra

    def window_end(self, start: int, limit: int) -> int:
        """The largest end such that text[start:end] fits in `limit` UTF-16 units."""
        end = min(len(self.text), start + limit)
        while True:
            over = self.span(start, end) - limit
            if over <= 0:
                return end
            # A character is one or two units, so dropping half the excess (rounded up)
            # never overshoots the best end and converges in a few steps.
            end -= (over + 1) // 2


def utf16_prefix_end(text: str, limit: int) -> int:
    """Index where the longest prefix of `text` within `limit` UTF-16 units ends."""
    return Utf16Index(text).window_end(0, limit)


def utf16_suffix_start(text: str, limit: int) -> int:
    """Index where the longest suffix of `text` within `limit` UTF-16 units starts."""
    if limit <= 0:
        return len(text)
    if text.isascii():
        return max(0, len(text) - limit)
    encoded = text.encode("utf-16-le")
    if len(encoded) <= 2 * limit:
        return 0
    tail = encoded[-2 * limit :]
    first = int.from_bytes(tail[:2], "little")
    if 0xDC00 <= first <= 0xDFFF:  # a low surrogate: its pair starts before the window
        tail = tail[2:]
    return len(text) - len(tail.decode("utf-16-le"))
