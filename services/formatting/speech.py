"""Markdown answers → text a speech synthesiser can read aloud, in request-sized chunks.

A TTS voice reads every character it is given: "asterisk asterisk", whole URLs, a Python
listing line by line. So formatting is dropped, links keep their words, bare URLs shrink to
their host name, long code is left out, and each block becomes one line that ends with
punctuation, so the voice pauses between a heading, list items and table rows instead of
running them into one sentence.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

_PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])

# A code block is read aloud only when it is one short line (a command, a value); anything
# longer is noise when spoken.
_SPOKEN_CODE_CHARS = 60
_WS_RE = re.compile(r"\s+")
_TAG_RE = re.compile(r"<[^>]*>")
# Emphasis markers the parser left as text (an unclosed **bold in a cut-off answer): only
# at the edge of a word, so "2**3" keeps its operator. Stray backticks always go.
_STRAY_MARKUP_RE = re.compile(r"(?<!\w)(?:\*\*+|__+|~~+)(?=\S)|(?<=\S)(?:\*\*+|__+|~~+)(?!\w)|`+")
# Link syntax the parser could not take as a link: cut off by a stopped stream
# ("[docs](https://exa") or malformed. The words stay, the target goes.
_BROKEN_LINK_RE = re.compile(r"\[([^\[\]]*)\]\([^()\s]*(?:\)|$)")
# Trailing sentence punctuation is not part of the URL ("see https://x.org/a.").
_URL_RE = re.compile(r"\bhttps?://[^\s<>\"]*[^\s<>\"'.,;:!?)\]}]", re.IGNORECASE)
_NEEDS_STOP_RE = re.compile(r"[\w)\]\"'»”’]$")

# Where a TTS chunk may end: after a run of sentence punctuation (plus closing quotes or
# brackets) that is followed by whitespace, after CJK full stops, or at a line break.
_SENTENCE_END_RE = re.compile(r"[.!?…]+[\"'»”’)\]]*(?=\s)|[。！？]+|\n")


def markdown_to_speech(text: str, *, code_placeholder: str = "") -> str:
    """Plain text for text-to-speech from an LLM's Markdown answer; "" when nothing is left.

    Blocks (paragraphs, headings, list items, table rows, quotes) become one line each,
    ending in punctuation; whitespace inside a block is collapsed. Code blocks of one short
    line are read; longer ones are replaced by `code_placeholder` (default: left out; pass a
    localized "code is in the text message" to mention them).
    """
    lines: list[str] = []
    tokens = _PARSER.parse(text)
    # Ordered lists count their items (the number matters in step-by-step answers);
    # bullets are just dropped. None marks a bullet list.
    counters: list[int | None] = []
    prefix = ""
    header: list[str] = []
    row: list[str] = []
    in_head = in_cell = False
    table_rows = 0
    for token in tokens:
        kind = token.type
        if kind == "bullet_list_open":
            counters.append(None)
        elif kind == "ordered_list_open":
            counters.append(_int(token.attrGet("start"), 1))
        elif kind in ("bullet_list_close", "ordered_list_close"):
            counters.pop()
        elif kind == "list_item_open":
            number = counters[-1] if counters else None
            if number is not None:
                prefix = f"{number}. "
                counters[-1] = number + 1
        elif kind == "inline":
            spoken = _inline_text(token.children or [])
            if in_cell:
                row.append(_clean(spoken))
            else:
                lines.append(prefix + spoken)
                prefix = ""
        elif kind in ("fence", "code_block"):
            code = token.content.strip()
            if code and "\n" not in code and len(code) <= _SPOKEN_CODE_CHARS:
                lines.append(prefix + code)
            elif code and code_placeholder:
                lines.append(prefix + code_placeholder)
            prefix = ""
        elif kind == "html_block":
            lines.append(prefix + _TAG_RE.sub(" ", token.content))
            prefix = ""
        elif kind == "table_open":
            header, table_rows = [], 0
        elif kind == "thead_open":
            in_head = True
        elif kind == "thead_close":
            in_head = False
        elif kind in ("th_open", "td_open"):
            in_cell = True
        elif kind in ("th_close", "td_close"):
            in_cell = False
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close":
            if in_head:
                header = row
            else:
                lines.append(_table_row(header, row))
                table_rows += 1
        elif kind == "table_close" and not table_rows:
            lines.append(", ".join(cell for cell in header if cell))
    spoken_lines = (_finish(line) for line in lines)
    return "\n".join(line for line in spoken_lines if line)


def chunk_for_tts(text: str, limit: int = 4096) -> list[str]:
    """Split speech text into TTS requests of at most `limit` characters each.

    Each chunk is filled as far as the limit allows and ends at the last sentence end
    (. ! ? … or a line break) that fits, else at the last space, else anywhere (not before
    a combining mark). Chunks are stripped; only whitespace at the cuts is lost.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    chunks: list[str] = []
    start = 0
    end = len(text)
    while True:
        while start < end and text[start].isspace():
            start += 1
        if start >= end:
            return chunks
        if end - start <= limit:
            chunks.append(text[start:].rstrip())
            return chunks
        cut = _cut(text, start, start + limit)
        chunks.append(text[start:cut].rstrip())
        start = cut


def _cut(text: str, start: int, stop: int) -> int:
    """Best end (exclusive, > start, ≤ stop) for a chunk starting at `start`."""
    # endpos one past stop lets the lookahead see the character right after the window.
    best = -1
    for match in _SENTENCE_END_RE.finditer(text, start, stop + 1):
        # A line break is dropped at the cut, so the chunk may end right before it.
        end = match.start() if match.group() == "\n" else match.end()
        if end <= stop:
            best = end
    if best > start and text[start:best].strip():
        return best
    space = max(text.rfind(" ", start + 1, stop + 1), text.rfind("\t", start + 1, stop + 1))
    if space > start:
        return space
    cut = stop
    while cut > start + 1 and unicodedata.combining(text[cut]):
        cut -= 1
    return cut


def _inline_text(children: Sequence[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type == "text":
            parts.append(_STRAY_MARKUP_RE.sub("", child.content))
        elif child.type == "code_inline":
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)  # the alt text
        # Everything else is markup: emphasis/link open-close pairs and inline HTML tags.
    return "".join(parts)


def _table_row(header: Sequence[str], row: Sequence[str]) -> str:
    """ "Name: Alice, Age: 30" — a bare list of cells is hard to follow by ear."""
    spoken = []
    for index, cell in enumerate(row):
        if not cell:
            continue
        title = header[index] if index < len(header) else ""
        spoken.append(f"{title}: {cell}" if title and title != cell else cell)
    return ", ".join(spoken)


def _clean(text: str) -> str:
    text = _BROKEN_LINK_RE.sub(r"\1", text)
    text = _URL_RE.sub(_host, text)
    return _WS_RE.sub(" ", text).strip()


def _finish(line: str) -> str:
    line = _clean(line)
    if line and _NEEDS_STOP_RE.search(line):
        line += "."
    return line


def _host(match: re.Match[str]) -> str:
    host = urlsplit(match.group(0)).hostname or ""
    return host.removeprefix("www.") or match.group(0)


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default
