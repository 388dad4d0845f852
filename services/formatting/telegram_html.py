"""Markdown → Telegram's HTML subset, and splitting it into valid message-sized parts.

The renderer walks markdown-it's token stream and produces two things: the visible text
and a list of tag open/close marks positioned in it. Telegram's limit counts the visible
text, so splitting happens there (with the same cutter as plain text); each part is then
serialised with the tags open at its start re-opened and those still open at its end
closed. A part is therefore always tag-balanced, whatever the cut, and a code block or a
bold phrase cut in two simply continues in the next message.

Telegram's nesting rules are enforced while rendering: nothing inside <pre>/<code>, no
<code> or second <a> inside <a>, no <blockquote> inside <blockquote>, no repeated tag
inside itself (headings are <b>, so **bold** in a heading adds nothing).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

from services.formatting.plain_split import cut_ranges
from services.formatting.textlen import utf16_len

_BULLETS = ("•", "◦", "▪")
_HR = "—" * 10
# Schemes Telegram accepts in text links; other absolute links (mailto:, tel:) are shown as text.
_SAFE_URL_RE = re.compile(r"^(?:https?://|tg://|ftp://)", re.IGNORECASE)
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.\-]*:", re.IGNORECASE)
_LANGUAGE_RE = re.compile(r"[^\w+#.\-]")
_TAG_RE = re.compile(r"<[^>]*>")
_ALIGN_RE = re.compile(r"text-align:\s*(left|right|center)")


def _math(state: StateInline, silent: bool) -> bool:
    """Keep $...$, $$...$$, \\(...\\) and \\[...\\] verbatim: LaTeX backslashes are not escapes."""
    src = state.src
    pos = state.pos
    end = _math_end(src, pos)
    if end < 0:
        return False
    if not silent:
        token = state.push("text", "", 0)
        token.content = src[pos:end]
    state.pos = end
    return True


def _math_end(src: str, pos: int) -> int:
    """End of the math span starting at `pos`, or -1 (Pandoc's rules, so "$5 and $6" is text)."""
    if src.startswith("$$", pos):
        close = src.find("$$", pos + 2)
        return close + 2 if close > pos + 2 else -1
    if src.startswith("$", pos):
        if pos + 1 >= len(src) or src[pos + 1].isspace():
            return -1
        close = src.find("$", pos + 1)
        while close != -1 and src[close - 1] == "\\":
            close = src.find("$", close + 1)
        if close == -1 or src[close - 1].isspace():
            return -1
        if close + 1 < len(src) and src[close + 1].isdigit():
            return -1
        return close + 1
    if src.startswith(("\\(", "\\["), pos):
        close = src.find("\\)" if src[pos + 1] == "(" else "\\]", pos + 2)
        return close + 2 if close != -1 else -1
    return -1


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    md.inline.ruler.before("escape", "math", _math)
    return md


# Configured once at import and only read afterwards (parse keeps no state between calls).
MARKDOWN = _parser()


def markdown_to_telegram_html(text: str) -> str:
    """Render Markdown as Telegram HTML (b, i, s, code, pre, a, blockquote only).

    Headings become bold lines, lists "• " / "1. " lines (nested ones indented), tables a
    monospace grid in <pre>, a rule a line of "—", images links; raw HTML shows as text.
    Unclosed or cut Markdown (a stream stopped mid-way) still gives valid HTML.
    """
    doc = _render(text)
    if not doc.text.strip():
        return ""
    stripped_end = len(doc.text.rstrip())
    start = doc.text.rfind("\n", 0, len(doc.text) - len(doc.text.lstrip())) + 1
    return _serialize(doc, [(start, stripped_end)])[0]


def markdown_to_html_parts(text: str, limit: int = 4096) -> list[str]:
    """Telegram HTML parts whose visible text is at most `limit` UTF-16 units each.

    Whole top-level blocks are packed into a part; a block too large for one part is cut at
    a blank line, a line or a space of its visible text, and every part re-opens the tags
    still open at its start (a code block continues as a code block with its language).
    Every part is tag-balanced; nothing but whitespace at a cut is lost. Blank input gives [].
    """
    doc = _render(text)
    ranges = cut_ranges(doc.text, limit, doc.blocks)
    return _serialize(doc, ranges)


def html_visible_len(html_text: str) -> int:
    """Length in UTF-16 units of what Telegram shows for `html_text` (tags out, entities in)."""
    return utf16_len(html.unescape(_TAG_RE.sub("", html_text)))


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


class _Elem:
    """One tag instance; identity matters when parts re-open what is still open."""

    __slots__ = ("close", "open")

    def __init__(self, name: str, open_tag: str) -> None:
        self.open = open_tag
        self.close = f"</{name}>"


class _Container:
    __slots__ = ("has_content", "indent", "sep")

    def __init__(self, sep: str, indent: str) -> None:
        self.sep = sep  # written between two blocks of this container
        self.indent = indent  # the indentation to restore when it closes
        self.has_content = False


class _Doc:
    """Visible text plus positioned tag marks and the start of each top-level block."""

    __slots__ = (
        "active",
        "at_line_start",
        "blocks",
        "chunks",
        "containers",
        "in_pre",
        "indent",
        "link_depth",
        "link_notes",
        "marks",
        "pos",
        "stack",
        "text",
    )

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.pos = 0
        self.marks: list[tuple[int, _Elem, bool]] = []  # (position, element, is_open)
        self.blocks: list[int] = []
        self.containers = [_Container("\n\n", "")]
        self.indent = ""
        self.at_line_start = True
        self.in_pre = False
        self.link_depth = 0
        # Per open link: (address to show after its text, index of its first chunk).
        self.link_notes: list[tuple[str, int]] = []
        self.stack: list[tuple[str, _Elem | None]] = []
        self.active: dict[str, int] = {}
        self.text = ""

    # --- text ---------------------------------------------------------------------------

    def write(self, text: str) -> None:
        if not text:
            return
        if self.indent and not self.in_pre:
            out: list[str] = []
            for i, line in enumerate(text.split("\n")):
                if i:
                    out.append("\n")
                    self.at_line_start = True
                if line:
                    if self.at_line_start:
                        out.append(self.indent)
                    out.append(line)
                    self.at_line_start = False
            text = "".join(out)
        else:
            self.at_line_start = text[-1] == "\n"
        self.chunks.append(text)
        self.pos += len(text)

    # --- tags ---------------------------------------------------------------------------

    def open(self, name: str, open_tag: str, allowed: bool = True) -> None:
        """Open a tag; a tag Telegram would not accept here is tracked but not emitted."""
        elem: _Elem | None = None
        if allowed and not self.active.get(name) and not self.in_pre:
            elem = _Elem(name, open_tag)
            self.marks.append((self.pos, elem, True))
        self.active[name] = self.active.get(name, 0) + 1
        self.stack.append((name, elem))

    def close(self) -> None:
        if not self.stack:
            return
        name, elem = self.stack.pop()
        self.active[name] -= 1
        if elem is not None:
            self.marks.append((self.pos, elem, False))

    # --- blocks -------------------------------------------------------------------------

    def begin_block(self) -> None:
        container = self.containers[-1]
        if container.has_content:
            self.write(container.sep)
        container.has_content = True
        if len(self.containers) == 1:
            self.blocks.append(self.pos)

    def push_container(self, sep: str) -> None:
        self.containers.append(_Container(sep, self.indent))

    def pop_container(self) -> None:
        if len(self.containers) > 1:
            self.indent = self.containers.pop().indent


def _render(text: str) -> _Doc:
    doc = _Doc()
    tokens = MARKDOWN.parse(text)
    lists: list[list[int]] = []  # per open list: [is_ordered, next number]
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        kind = tok.type
        if kind == "inline":
            _inline(doc, tok.children or [])
        elif kind == "paragraph_open":
            doc.begin_block()
        elif kind == "heading_open":
            doc.begin_block()
            doc.open("b", "<b>")
        elif kind == "heading_close":
            doc.close()
        elif kind == "blockquote_open":
            doc.begin_block()
            doc.open("blockquote", "<blockquote>")
            doc.push_container("\n\n")
        elif kind == "blockquote_close":
            doc.pop_container()
            doc.close()
        elif kind in ("bullet_list_open", "ordered_list_open"):
            doc.begin_block()
            ordered = kind == "ordered_list_open"
            start = _int_attr(tok, "start", 1) if ordered else 0
            lists.append([int(ordered), start])
            doc.push_container("\n")
        elif kind in ("bullet_list_close", "ordered_list_close"):
            doc.pop_container()
            if lists:
                lists.pop()
        elif kind == "list_item_open":
            doc.begin_block()
            marker = _task_marker(tokens, i) or _list_marker(lists, tok)
            doc.write(marker + " ")
            doc.push_container("\n")
            doc.indent += " " * (len(marker) + 1)
        elif kind == "list_item_close":
            doc.pop_container()
        elif kind in ("fence", "code_block"):
            _code(doc, tok)
        elif kind == "hr":
            doc.begin_block()
            doc.write(_HR)
        elif kind == "html_block":
            if tok.content.strip():
                doc.begin_block()
                doc.write(tok.content.rstrip("\n"))
        elif kind == "table_open":
            j = i
            while j < n and tokens[j].type != "table_close":
                j += 1
            _table(doc, tokens[i:j])
            i = j
        i += 1
    doc.text = "".join(doc.chunks)
    return doc


def _int_attr(tok: Token, name: str, default: int) -> int:
    value = tok.attrGet(name)
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _list_marker(lists: list[list[int]], item: Token) -> str:
    if not lists:
        return _BULLETS[0]
    current = lists[-1]
    if current[0]:
        number = current[1]
        current[1] += 1
        return f"{number}{item.markup or '.'}"
    depth = sum(1 for entry in lists if not entry[0]) - 1
    return _BULLETS[depth % len(_BULLETS)]


def _task_marker(tokens: Sequence[Token], item: int) -> str | None:
    """ "- [x] done" / "- [ ] todo" become ☑ / ☐ items (the box is taken off the text)."""
    if item + 2 >= len(tokens) or tokens[item + 1].type != "paragraph_open":
        return None
    children = tokens[item + 2].children
    if not children or children[0].type != "text":
        return None
    first = children[0]
    box = first.content[:4]
    if box not in ("[ ] ", "[x] ", "[X] "):
        return None
    first.content = first.content[4:]
    return "☐" if box == "[ ] " else "☑"


def _code(doc: _Doc, tok: Token) -> None:
    content = tok.content[:-1] if tok.content.endswith("\n") else tok.content
    if not content.strip():
        return
    doc.begin_block()
    language = _LANGUAGE_RE.sub("", tok.info.split()[0])[:64] if tok.info.strip() else ""
    doc.open("pre", "<pre>")
    if language:
        doc.open("code", f'<code class="language-{language}">')
    doc.in_pre = True
    doc.write(content)
    doc.in_pre = False
    if language:
        doc.close()
    doc.close()


def _inline(doc: _Doc, children: Sequence[Token]) -> None:
    for tok in children:
        kind = tok.type
        if kind == "text" or kind == "text_special":
            doc.write(tok.content)
        elif kind == "softbreak" or kind == "hardbreak":
            doc.write("\n")
        elif kind == "code_inline":
            # Telegram lets no entity contain another except b/i/u/s: code in a link is text.
            doc.open("code", "<code>", allowed=not doc.link_depth)
            doc.write(tok.content)
            doc.close()
        elif kind == "strong_open":
            doc.open("b", "<b>")
        elif kind == "em_open":
            doc.open("i", "<i>")
        elif kind == "s_open":
            doc.open("s", "<s>")
        elif kind in ("strong_close", "em_close", "s_close"):
            doc.close()
        elif kind == "link_open":
            href = tok.attrGet("href")
            href = href if isinstance(href, str) else ""
            allowed = not doc.link_depth and bool(_SAFE_URL_RE.match(href))
            doc.open("a", f'<a href="{_attr(href)}">', allowed=allowed)
            doc.link_depth += 1
            # An address that cannot be a text link (mailto:, tel:) is kept as visible text;
            # relative links ("#section") mean nothing in Telegram and keep only their text.
            note = "" if allowed or not _SCHEME_RE.match(href) else _display_address(href)
            doc.link_notes.append((note, len(doc.chunks)))
        elif kind == "link_close":
            doc.close()
            doc.link_depth -= 1
            if doc.link_notes:
                note, start = doc.link_notes.pop()
                if note and "".join(doc.chunks[start:]).strip() != note:
                    doc.write(f" ({note})")
        elif kind == "image":
            _image(doc, tok)
        elif tok.content:  # html_inline and anything unknown: shown as text
            doc.write(tok.content)


def _display_address(href: str) -> str:
    address = MARKDOWN.normalizeLinkText(href)
    return address[len("mailto:") :] if address.lower().startswith("mailto:") else address


def _image(doc: _Doc, tok: Token) -> None:
    alt = _plain(tok.children or []) or tok.content
    src = tok.attrGet("src")
    src = src if isinstance(src, str) else ""
    if doc.link_depth or not _SAFE_URL_RE.match(src):
        doc.write(alt)
        return
    doc.open("a", f'<a href="{_attr(src)}">')
    doc.write(alt or src)
    doc.close()


def _plain(children: Sequence[Token], *, with_urls: bool = False) -> str:
    """Inline content as plain text (table cells, image captions).

    With `with_urls`, a link keeps its address after its text, since a <pre> grid cannot
    hold a link and the address would otherwise be lost.
    """
    out: list[str] = []
    href = ""
    start = 0
    for tok in children:
        if tok.type in ("softbreak", "hardbreak"):
            out.append(" ")
        elif tok.type == "image":
            out.append(_plain(tok.children or []) or tok.content)
        elif tok.type == "link_open" and with_urls:
            value = tok.attrGet("href")
            href = value if isinstance(value, str) else ""
            start = len(out)
        elif tok.type == "link_close" and href:
            if "".join(out[start:]).strip() != href:
                out.append(f" ({href})")
            href = ""
        elif tok.content:
            out.append(tok.content)
    return "".join(out)


def _table(doc: _Doc, tokens: Sequence[Token]) -> None:
    rows: list[list[str]] = []
    aligns: list[str] = []
    for tok in tokens:
        if tok.type == "tr_open":
            rows.append([])
        elif tok.type in ("th_open", "td_open") and len(rows) == 1:
            style = tok.attrGet("style")
            match = _ALIGN_RE.search(style) if isinstance(style, str) else None
            aligns.append(match.group(1) if match else "left")
        elif tok.type == "inline" and rows:
            rows[-1].append(_plain(tok.children or [], with_urls=True).strip())
    if not rows:
        return
    columns = max(len(row) for row in rows)
    aligns += ["left"] * (columns - len(aligns))
    for row in rows:
        row += [""] * (columns - len(row))
    widths = [max(_width(row[c]) for row in rows) for c in range(columns)]
    lines = [_grid_row(rows[0], widths, aligns)]
    lines.append("-+-".join("-" * w for w in widths))
    lines.extend(_grid_row(row, widths, aligns) for row in rows[1:])
    doc.begin_block()
    doc.open("pre", "<pre>")
    doc.in_pre = True
    doc.write("\n".join(line.rstrip() for line in lines))
    doc.in_pre = False
    doc.close()


def _grid_row(cells: list[str], widths: list[int], aligns: list[str]) -> str:
    out = []
    for cell, width, align in zip(cells, widths, aligns, strict=True):
        pad = width - _width(cell)
        if align == "right":
            out.append(" " * pad + cell)
        elif align == "center":
            out.append(" " * (pad // 2) + cell + " " * (pad - pad // 2))
        else:
            out.append(cell + " " * pad)
    return " | ".join(out)


def _width(text: str) -> int:
    """Monospace display width: wide East Asian characters take two cells."""
    if text.isascii():
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or ch in "\u200d\ufe0f":
            continue
        width += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
    return width


# --------------------------------------------------------------------------------------------
# Serialising ranges of the visible text with balanced tags
# --------------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(value: str) -> str:
    return _escape(value).replace('"', "&quot;")


def _serialize(doc: _Doc, ranges: Sequence[tuple[int, int]]) -> list[str]:
    """HTML for each [start, end) range of the visible text, tags re-balanced per range."""
    text = doc.text
    marks = doc.marks
    total = len(marks)
    cursor = 0
    wanted: list[_Elem] = []  # tags open at the current position of the document
    parts: list[str] = []

    def apply(mark: tuple[int, _Elem, bool]) -> None:
        _, elem, is_open = mark
        if is_open:
            wanted.append(elem)
        elif elem in wanted:
            del wanted[len(wanted) - 1 - wanted[::-1].index(elem) :]

    for start, end in ranges:
        while cursor < total and marks[cursor][0] <= start:
            apply(marks[cursor])
            cursor += 1
        out: list[str] = []
        emitted: list[_Elem] = []
        pos = start
        while pos < end:
            stop = min(marks[cursor][0], end) if cursor < total else end
            if stop > pos:
                _sync(out, emitted, wanted)
                out.append(_escape(text[pos:stop]))
                pos = stop
            while cursor < total and marks[cursor][0] == pos and pos < end:
                apply(marks[cursor])
                cursor += 1
        for elem in reversed(emitted):
            out.append(elem.close)
        part = "".join(out)
        if part:
            parts.append(part)
    return parts


def _sync(out: list[str], emitted: list[_Elem], wanted: list[_Elem]) -> None:
    """Close and open tags so that exactly `wanted` is open (tags open lazily, never empty)."""
    keep = 0
    limit = min(len(emitted), len(wanted))
    while keep < limit and emitted[keep] is wanted[keep]:
        keep += 1
    while len(emitted) > keep:
        out.append(emitted.pop().close)
    for elem in wanted[keep:]:
        out.append(elem.open)
        emitted.append(elem)
