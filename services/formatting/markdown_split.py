"""Splitting Markdown answers for rich messages, and the tail shown in live drafts.

Parts are cut from the source text itself (never re-rendered), at the line ranges
markdown-it reports for top-level blocks, so a part is exactly what the model wrote
apart from whitespace at the cut and the fence/table-header lines re-opened in the
next part when a single block has to be cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token

from services.formatting.plain_split import cut_ranges, split_plain
from services.formatting.textlen import utf16_len, utf16_suffix_start

# Splitting needs block structure only: the inline phase (most of the parsing cost) is off.
# Configured once at import and only read afterwards (parse keeps no state between calls).
BLOCK_PARSER = MarkdownIt("commonmark").enable(["table"]).disable(["inline", "text_join"])

_NEWLINE_RE = re.compile(r"\r\n?")
# A line that can open or close a fence (CommonMark: up to 3 spaces of indentation). Led by
# a literal newline rather than a MULTILINE "^", which the regex engine scans 4x faster.
_FENCE_LINE_RE = re.compile(r"\n {0,3}(`{3,}|~{3,})([^\n]*)")
_CONTAINERS = frozenset({"bullet_list_open", "ordered_list_open", "blockquote_open"})
# A fence is re-opened in the next part only while that costs at most this share of a part.
_MAX_REOPEN_SHARE = 0.5
# preview_tail looks this far into the tail for a block or line boundary to start at.
_PREVIEW_BLOCK_SHARE = 0.25
_PREVIEW_SPACE_SHARE = 0.1


def split_markdown(text: str, limit: int = 32768) -> list[str]:
    """Split Markdown into parts of at most `limit` UTF-16 units at top-level block boundaries.

    Blocks (paragraphs, lists, fences, tables, headings, quotes) are packed whole. A block
    larger than `limit` is split between list items or quoted blocks, else by lines: a fenced
    code block is closed and re-opened with the same fence and info string, a table repeats
    its header. A line longer than a part is cut at spaces, else anywhere. Every non-whitespace
    character of the input appears in the parts, in order. Blank input gives [].
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    if not text or text.isspace():
        return []
    if utf16_len(text) <= limit:
        return [text]  # the common case: no parsing at all
    source = _NEWLINE_RE.sub("\n", text)
    lines = source.split("\n")
    tokens = BLOCK_PARSER.parse(source)
    packer = _Packer(limit)
    _pack(packer, lines, tokens)
    parts = packer.finish()
    # Safety net: every path above respects the limit, but a part must never be rejected.
    if any(utf16_len(part) > limit for part in parts):
        parts = [piece for part in parts for piece in _ensure_fits(part, limit)]
    return parts


def preview_tail(text: str, limit: int) -> str:
    """The last part of `text` that fits `limit` UTF-16 units, for a live draft.

    Starts at a block boundary (blank line) or a line start when one is near the cut, and
    re-opens a fenced code block that the cut fell into, so the visible tail keeps rendering
    as code. O(len(text)) with no Markdown parsing; `text` itself when it fits.
    """
    if utf16_len(text) <= limit:
        return text
    if limit < 1:
        return ""
    start = _tail_start(text, limit)
    fence = _open_fence_at(text, start)
    if fence is not None:
        head = fence + "\n"
        room = limit - utf16_len(head)
        if room >= limit * _MAX_REOPEN_SHARE:
            start = _tail_start(text, room)
            if _open_fence_at(text, start) == fence:
                return head + text[start:]
    return text[start:]


def _tail_start(text: str, limit: int) -> int:
    start = utf16_suffix_start(text, limit)
    if start > 0 and text[start - 1] == "\n":
        return start
    span = len(text) - start
    pos = text.find("\n\n", start, start + int(span * _PREVIEW_BLOCK_SHARE))
    if pos != -1:
        return pos + 2
    pos = text.find("\n", start, start + int(span * _PREVIEW_BLOCK_SHARE))
    if pos != -1:
        return pos + 1
    pos = text.find(" ", start, start + int(span * _PREVIEW_SPACE_SHARE))
    if pos != -1:
        return pos + 1
    return start


def _open_fence_at(text: str, pos: int) -> str | None:
    """The opening line of the fenced code block that `pos` falls inside, if any."""
    if text.find("```", 0, pos) == -1 and text.find("~~~", 0, pos) == -1:
        return None
    opening: str | None = None
    char = ""
    width = 0
    for match in _FENCE_LINE_RE.finditer("\n" + text):  # offsets are shifted by one
        if match.end() - 1 > pos:  # a fence line reaching past pos is (partly) in the tail
            break
        marker, rest = match.group(1), match.group(2)
        if opening is None:
            if marker[0] == "`" and "`" in rest:
                continue  # not a fence: backtick fences cannot have backticks in the info
            opening, char, width = match.group(0)[1:].rstrip(), marker[0], len(marker)
        elif marker[0] == char and len(marker) >= width and not rest.strip():
            opening = None
    return opening


# --------------------------------------------------------------------------------------------
# Packing source lines into parts
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Reopen:
    """Lines that make a cut block continue correctly in the next part."""

    head: list[str]  # repeated at the start of the next part (fence opener, table header)
    head_size: int
    close: str | None  # appended before the cut (closing fence)
    close_size: int


class _Packer:
    """Accumulates source lines into parts of at most `limit` UTF-16 units."""

    __slots__ = ("limit", "lines", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.lines: list[str] = []
        self.size = 0  # UTF-16 length of "\n".join(self.lines)

    def room(self) -> int:
        return self.limit - self.size - (1 if self.lines else 0)

    def add(self, text: str, size: int) -> None:
        if self.lines:
            self.size += 1
        self.lines.append(text)
        self.size += size

    def flush(self) -> None:
        text = "\n".join(self.lines).rstrip()
        first = len(text) - len(text.lstrip())
        # Drop leading blank lines only: the first line's indentation can be meaningful.
        text = text[text.rfind("\n", 0, first) + 1 :]
        if text:
            self.parts.append(text)
        self.lines = []
        self.size = 0

    def finish(self) -> list[str]:
        self.flush()
        return self.parts


def _ensure_fits(part: str, limit: int) -> list[str]:
    return [part] if utf16_len(part) <= limit else split_plain(part, limit)


def _pack(packer: _Packer, lines: list[str], tokens: list[Token]) -> None:
    starts = _child_starts(tokens, 0, len(tokens), level=0)
    if not starts or starts[0][0] > 0:
        starts.insert(0, (0, -1))  # text before the first block (reference definitions)
    _pack_segments(packer, lines, tokens, starts, len(lines), nested=False)


def _child_starts(tokens: list[Token], lo: int, hi: int, level: int) -> list[tuple[int, int]]:
    """(first source line, token index) of each block at `level` within tokens[lo:hi]."""
    starts: list[tuple[int, int]] = []
    for i in range(lo, hi):
        tok = tokens[i]
        if tok.level != level or tok.nesting < 0 or tok.map is None:
            continue
        if not starts or tok.map[0] > starts[-1][0]:
            starts.append((tok.map[0], i))
    return starts


def _pack_segments(
    packer: _Packer,
    lines: list[str],
    tokens: list[Token],
    starts: list[tuple[int, int]],
    stop: int,
    *,
    nested: bool,
) -> None:
    for k, (first, tok_index) in enumerate(starts):
        last = starts[k + 1][0] if k + 1 < len(starts) else stop
        block = "\n".join(lines[first:last])
        size = utf16_len(block.rstrip())
        if size <= packer.room():
            packer.add(block, utf16_len(block))
            continue
        if size <= packer.limit:
            packer.flush()
            packer.add(block, utf16_len(block))
            continue
        tok = tokens[tok_index] if tok_index >= 0 else None
        if not nested and tok is not None and tok.type in _CONTAINERS:
            close = _matching_close(tokens, tok_index)
            children = _child_starts(tokens, tok_index + 1, close, tok.level + 1)
            children = [c for c in children if first < c[0] < last]
            if children:
                _pack_segments(packer, lines, tokens, [(first, -1), *children], last, nested=True)
                continue
        _pack_lines(packer, lines, tokens, first, last, tok)


def _matching_close(tokens: list[Token], open_index: int) -> int:
    depth = 0
    for i in range(open_index, len(tokens)):
        depth += tokens[i].nesting
        if depth == 0:
            return i
    return len(tokens)


def _pack_lines(
    packer: _Packer,
    lines: list[str],
    tokens: list[Token],
    first: int,
    last: int,
    block: Token | None,
) -> None:
    """Pack one oversized block line by line, re-opening fences and table headers at cuts."""
    plan = _plan_continuations(packer.limit, lines, tokens, first, last, block)
    i = first
    while i < last:
        if i in plan.joined:  # a table's header and delimiter rows travel together
            line = lines[i] + "\n" + lines[i + 1]
            i += 1
        else:
            line = lines[i].rstrip() if i in plan.closers else lines[i]
        size = utf16_len(line)
        lead = plan.lead_in.get(i, 0)
        reopen = plan.reopen.get(i)
        i += 1
        # A fence opener or table header must not be stranded at the end of a part.
        if lead and size + lead > packer.room():
            packer.flush()
        reserve = reopen.close_size + 1 if reopen and reopen.close is not None else 0
        if size + reserve <= packer.room():
            packer.add(line, size)
            continue
        fresh_room = packer.limit - (reopen.head_size + 1 if reopen else 0) - reserve
        if size <= fresh_room:
            _cut_before(packer, reopen)
            packer.add(line, size)
            continue
        _pack_long_line(packer, line, reopen, reserve, fresh_room)


def _pack_long_line(
    packer: _Packer, line: str, reopen: _Reopen | None, reserve: int, fresh_room: int
) -> None:
    """A line longer than a whole part: fill the current part, continue in fresh ones."""
    room = packer.room() - reserve
    rest = line
    if packer.lines and room >= max(1, fresh_room // 4):
        ranges = cut_ranges(line, room)
        if not ranges:
            return  # only whitespace
        a, b = ranges[0]
        packer.add(line[a:b], utf16_len(line[a:b]))
        rest = line[ranges[1][0] :] if len(ranges) > 1 else ""
    if not rest.strip():
        return
    _cut_before(packer, reopen)
    for a, b in cut_ranges(rest, max(1, packer.room() - reserve)):
        piece = rest[a:b]
        piece_size = utf16_len(piece)
        if piece_size + reserve > packer.room():
            _cut_before(packer, reopen)
        packer.add(piece, piece_size)


def _cut_before(packer: _Packer, reopen: _Reopen | None) -> None:
    """End the current part here; the next part continues the open fence or table."""
    if not packer.lines:
        return
    if reopen is not None and reopen.close is not None:
        packer.add(reopen.close, reopen.close_size)
    packer.flush()
    if reopen is not None:
        for line in reopen.head:
            packer.add(line, utf16_len(line))


@dataclass(slots=True)
class _Plan:
    reopen: dict[int, _Reopen]  # content line -> what continues its block in a new part
    lead_in: dict[int, int]  # opener line -> room wanted after it (some content + close)
    closers: set[int]  # closing fence lines (trailing spaces dropped so the reserve holds)
    joined: set[int]  # table header lines packed together with the delimiter row below


def _plan_continuations(
    limit: int,
    lines: list[str],
    tokens: list[Token],
    first: int,
    last: int,
    block: Token | None,
) -> _Plan:
    plan = _Plan({}, {}, set(), set())
    budget = limit * _MAX_REOPEN_SHARE
    some_content = limit // 4  # an opener is worth starting only with this much after it
    if block is not None and block.type == "table_open" and block.level == 0:
        head = lines[first : first + 2]
        head_size = utf16_len("\n".join(head))
        end = min(last, block.map[1] if block.map else last)
        if len(head) == 2 and end > first + 2:
            plan.joined.add(first)
            plan.lead_in[first + 1] = 1 + min(utf16_len(lines[first + 2]), some_content)
            if head_size <= budget:
                reopen = _Reopen(head, head_size, None, 0)
                for i in range(first + 2, end):
                    plan.reopen[i] = reopen
        return plan
    for tok in tokens:
        if tok.type != "fence" or tok.map is None:
            continue
        open_line, end = tok.map
        if open_line < first or open_line >= last:
            continue
        opener = lines[open_line].rstrip()
        col = opener.find(tok.markup)
        if col < 0:
            continue
        # Keep quote markers; list markers become spaces so the re-opened fence stays in place.
        prefix = "".join(ch if ch == ">" or ch.isspace() else " " for ch in opener[:col])
        opener_line = prefix + opener[col:]
        close = prefix + tok.markup
        closed = end - 1 > open_line and _is_closing(lines[end - 1], tok.markup)
        content_end = min(end - 1 if closed else end, last)
        close_size = utf16_len(close)
        if closed:
            plan.closers.add(end - 1)
            close_size = max(close_size, utf16_len(lines[end - 1].rstrip()))
        head_size = utf16_len(opener_line)
        if head_size + close_size + 2 > budget:
            continue  # a huge info string: better a plain line split than parts of overhead
        reopen = _Reopen([opener_line], head_size, close, close_size)
        for i in range(open_line + 1, content_end):
            plan.reopen[i] = reopen
        if open_line + 1 < content_end:
            content = min(utf16_len(lines[open_line + 1]), some_content)
            plan.lead_in[open_line] = content + close_size + 2
    return plan


def _is_closing(line: str, markup: str) -> bool:
    body = line.lstrip(" >\t")
    stripped = body.rstrip()
    return len(stripped) >= len(markup) and stripped == markup[0] * len(stripped)
