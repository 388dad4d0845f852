"""Cutting text into Telegram-sized parts at the most natural boundary available.

`cut_ranges` is the shared engine: it works on any string (a plain answer, or the visible
text of rendered HTML) and returns index ranges, so callers that carry markup alongside
the text (telegram_html) can re-balance their tags at the same cut points.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence

from services.formatting.textlen import Utf16Index

_NON_SPACE_RE = re.compile(r"\S")

# A boundary must leave the part at least this full before a finer boundary is preferred:
# a paragraph cut at 10% of the window would waste a message (and a flood-limit slot),
# whereas a line cut at 95% of it reads almost as well.
_PARAGRAPH_FILL = 0.5
_LINE_FILL = 0.3
_SPACE_FILL = 0.3
# How far a hard cut may back off so it does not split an emoji sequence or accent.
_MAX_CLUSTER_BACKOFF = 16


def split_plain(text: str, limit: int = 4096) -> list[str]:
    """Split plain text into parts of at most `limit` UTF-16 units.

    Cuts at a paragraph boundary, else a line, else a space, else anywhere (never inside a
    surrogate pair, and not inside an emoji sequence when avoidable). No part is empty and
    only the whitespace at a cut is dropped.
    """
    return [text[a:b] for a, b in cut_ranges(text, limit)]


def cut_ranges(text: str, limit: int, boundaries: Sequence[int] = ()) -> list[tuple[int, int]]:
    """Index ranges of `text` for parts of at most `limit` UTF-16 units each.

    `boundaries` (sorted indices where top-level blocks start) are the preferred cuts: whole
    blocks are packed greedily. A block that cannot fit one part on its own is not moved to a
    fresh part but filled in and cut at paragraphs, lines or spaces like plain text.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    index = Utf16Index(text)
    end = len(text.rstrip())
    ranges: list[tuple[int, int]] = []
    start = _part_start(text, 0, end)
    while start < end:
        window = index.window_end(start, limit)
        if window >= end:
            ranges.append((start, end))
            break
        if window <= start:  # one astral character wider than a tiny limit: cannot do better
            window = start + 1
        cut, resume = _choose_cut(text, index, start, window, end, boundaries, limit)
        stop = start + len(text[start:cut].rstrip())
        if stop > start:
            ranges.append((start, stop))
        start = _part_start(text, max(resume, start + 1), end)
    return ranges


def _part_start(text: str, pos: int, end: int) -> int:
    """Where the next part begins: skip blank space but keep the first line's indentation."""
    match = _NON_SPACE_RE.search(text, pos, end)
    if match is None:
        return end
    first = match.start()
    # Indentation is meaningful in code, so a part starts at its line start, not its first glyph.
    return max(pos, text.rfind("\n", pos, first) + 1)


def _choose_cut(
    text: str,
    index: Utf16Index,
    start: int,
    window: int,
    end: int,
    boundaries: Sequence[int],
    limit: int,
) -> tuple[int, int]:
    """(end of this part, where the next part may begin) for a part starting at `start`."""
    span = window - start
    if boundaries:
        i = bisect_right(boundaries, window) - 1
        if i >= 0 and boundaries[i] > start:
            block = boundaries[i]
            block_end = boundaries[i + 1] if i + 1 < len(boundaries) else end
            # Moving a block that will be split anyway to a fresh part only costs a message.
            fits_alone = index.span(block, block_end) <= limit
            if fits_alone or block - start >= span * _PARAGRAPH_FILL:
                return block, block
    pos = text.rfind("\n\n", start, window)
    if pos > start and pos - start >= span * _PARAGRAPH_FILL:
        return pos, pos
    pos = text.rfind("\n", start, window)
    if pos > start and pos - start >= span * _LINE_FILL:
        return pos, pos
    pos = _rfind_space(text, start, window)
    if pos > start and pos - start >= span * _SPACE_FILL:
        match = _NON_SPACE_RE.search(text, pos, end)
        return pos, match.start() if match else end
    cut = _cluster_safe(text, start, window)
    return cut, cut


def _rfind_space(text: str, start: int, end: int) -> int:
    return max(text.rfind(" ", start, end), text.rfind("\t", start, end))


def _cluster_safe(text: str, start: int, cut: int) -> int:
    """Move a hard cut back so it does not separate a character from its modifiers."""
    for pos in range(cut, max(start + 1, cut - _MAX_CLUSTER_BACKOFF) - 1, -1):
        if not _joins_previous(text[pos]) and text[pos - 1] != "\u200d":
            return pos
    return cut


def _joins_previous(ch: str) -> bool:
    code = ord(ch)
    return (
        ch == "\u200d"  # zero width joiner
        or 0xFE00 <= code <= 0xFE0F  # variation selectors (emoji presentation)
        or 0x1F3FB <= code <= 0x1F3FF  # skin tone modifiers
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
        or unicodedata.combining(ch) != 0
    )
