from __future__ import annotations

import re
import time

import pytest

from services.formatting import markdown_split, preview_tail, split_markdown, utf16_len
from tests.unit.test_formatting_generators import non_ws, random_markdown

_FENCE_RE = re.compile(r"^[ >]*(`{3,}|~{3,})([^\n]*)$")
_DELIMITER_RE = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


@pytest.fixture
def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("Markdown was parsed")

    monkeypatch.setattr(markdown_split.BLOCK_PARSER, "parse", fail)


def _strip_added_lines(parts: list[str]) -> str:
    """Join parts without what splitting may add: fence lines and repeated table headers."""
    seen_headers: set[tuple[str, str]] = set()
    kept: list[str] = []
    for part in parts:
        lines = part.split("\n")
        if len(lines) >= 2 and _DELIMITER_RE.match(lines[1]):
            pair = (lines[0], lines[1])
            if pair in seen_headers:
                lines = lines[2:]
            seen_headers.add(pair)
        for i in range(len(lines) - 1):
            if _DELIMITER_RE.match(lines[i + 1]) and lines[i].startswith("|"):
                seen_headers.add((lines[i], lines[i + 1]))
        kept.extend(line for line in lines if not _FENCE_RE.match(line))
    return "\n".join(kept)


def _without_fences(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not _FENCE_RE.match(line))


def _fence_open_at_end(part: str) -> bool:
    opening: tuple[str, int] | None = None
    for line in part.split("\n"):
        match = _FENCE_RE.match(line)
        if not match:
            continue
        marker, rest = match.group(1), match.group(2)
        if opening is None:
            opening = (marker[0], len(marker))
        elif marker[0] == opening[0] and len(marker) >= opening[1] and not rest.strip():
            opening = None
    return opening is not None


# --- fast path -------------------------------------------------------------------------------


def test_short_text_is_returned_as_is_without_parsing(no_parsing: None) -> None:
    text = "# Title\n\nSome **bold** text with `code`.\n\n```python\nprint(1)\n```"
    assert split_markdown(text, 4096) == [text]
    assert split_markdown(text) == [text]


@pytest.mark.parametrize("blank", ["", "   ", "\n\n \t\n"])
def test_blank_input_gives_no_parts(blank: str) -> None:
    assert split_markdown(blank, 10) == []


def test_fast_path_is_fast() -> None:
    text = "Hello, **world**! " * 200
    start = time.perf_counter()
    for _ in range(20_000):
        split_markdown(text)
    assert time.perf_counter() - start < 1.0


# --- block packing ---------------------------------------------------------------------------


def test_packs_whole_blocks() -> None:
    blocks = ["# Heading", ("First paragraph " * 3).strip(), "- item one\n- item two", "Last one."]
    text = "\n\n".join(blocks)
    parts = split_markdown(text, 80)
    assert all(utf16_len(p) <= 80 for p in parts)
    assert "\n\n".join(parts) == text  # cut only at block boundaries
    assert len(parts) == 2


def test_list_larger_than_limit_is_split_between_items() -> None:
    items = [f"{n}. item number {n} with some words" for n in range(1, 21)]
    text = "\n".join(items)
    parts = split_markdown(text, 120)
    for part in parts:
        assert utf16_len(part) <= 120
        assert re.match(r"\d+\. item", part), part  # every part starts at an item
    assert "\n".join(parts) == text


def test_long_fence_is_closed_and_reopened_with_info_string() -> None:
    code = "\n".join(f"print({n})  # line {n}" for n in range(200))
    text = f"Intro paragraph.\n\n```python\n{code}\n```\n\nOutro."
    parts = split_markdown(text, 500)
    assert len(parts) > 3
    for part in parts:
        assert utf16_len(part) <= 500
        assert not _fence_open_at_end(part)
    for part in parts[1:-1]:
        assert part.startswith("```python\n") and part.endswith("\n```")
    assert non_ws(_without_fences("\n".join(parts))) == non_ws(_without_fences(text))


def test_fence_opener_is_not_stranded_at_the_end_of_a_part() -> None:
    text = "p" * 90 + "\n\n```js\n" + "\n".join(["let x = 1;"] * 30) + "\n```"
    parts = split_markdown(text, 100)
    assert all(p.strip() not in ("```js", "```js\n```") for p in parts)
    assert all(not p.endswith("```js") for p in parts)


def test_long_table_repeats_its_header() -> None:
    header = "| Name | Value |\n|------|------:|"
    rows = "\n".join(f"| row {n} | {n * 7} |" for n in range(100))
    parts = split_markdown(f"{header}\n{rows}", 300)
    assert len(parts) > 2
    for part in parts:
        assert part.startswith(header + "\n| row ")
        assert utf16_len(part) <= 300


def test_long_line_is_split_at_spaces() -> None:
    text = " ".join(f"word{n}" for n in range(500))
    parts = split_markdown(text, 100)
    assert all(utf16_len(p) <= 100 for p in parts)
    assert " ".join(parts) == text


def test_line_without_spaces_is_cut_hard_and_counts_emoji_twice() -> None:
    text = "😀" * 300
    parts = split_markdown(text, 101)
    assert all(utf16_len(p) <= 101 for p in parts)
    assert "".join(parts) == text
    assert [len(p) for p in parts] == [50] * 6


def test_cut_code_line_inside_fence_keeps_fence_balanced() -> None:
    text = "```\n" + "x" * 1000 + "\n```"
    parts = split_markdown(text, 200)
    assert all(utf16_len(p) <= 200 and not _fence_open_at_end(p) for p in parts)
    assert non_ws(_without_fences("".join(parts))) == "x" * 1000


def test_unclosed_fence_stays_unclosed_only_in_the_last_part() -> None:
    text = "```python\n" + "\n".join(f"value_{n} = {n}" for n in range(100))
    parts = split_markdown(text, 300)
    assert all(not _fence_open_at_end(p) for p in parts[:-1])
    assert _fence_open_at_end(parts[-1])


def test_crlf_input_is_split_like_lf() -> None:
    text = "\r\n\r\n".join(["para " * 10] * 10)
    parts = split_markdown(text, 120)
    assert all(utf16_len(p) <= 120 for p in parts)
    assert non_ws("".join(parts)) == non_ws(text)


# --- property: nothing lost, every part fits --------------------------------------------------


@pytest.mark.parametrize("seed", range(300))
def test_split_markdown_property(seed: int) -> None:
    text = random_markdown(seed)
    limit = [60, 97, 150, 400, 1000, 4096][seed % 6]
    parts = split_markdown(text, limit)
    assert parts, "non-blank input must give parts"
    for part in parts:
        assert part.strip(), "empty part"
        assert utf16_len(part) <= limit, (limit, part)
    for part in parts[:-1]:
        assert not _fence_open_at_end(part), part
    assert non_ws(_strip_added_lines(parts)) == non_ws(_without_fences(text))


@pytest.mark.parametrize("seed", range(10))
def test_split_markdown_large_answers(seed: int) -> None:
    text = "\n\n".join(random_markdown(1000 + seed * 7 + k, blocks=25) for k in range(8))
    parts = split_markdown(text, 4096)
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert non_ws(_strip_added_lines(parts)) == non_ws(_without_fences(text))


# --- preview_tail ------------------------------------------------------------------------------


def test_preview_returns_text_when_it_fits(no_parsing: None) -> None:
    text = "short answer 😀"
    assert preview_tail(text, 100) is text


def test_preview_starts_at_a_block_boundary(no_parsing: None) -> None:
    text = "\n\n".join(f"Paragraph {n} " + "words " * 10 for n in range(50))
    tail = preview_tail(text, 500)
    assert utf16_len(tail) <= 500
    assert text.endswith(tail)
    assert tail.startswith("Paragraph ")


def test_preview_reopens_a_fence_it_cut_into(no_parsing: None) -> None:
    code = "\n".join(f"x{n} = {n}" for n in range(500))
    text = f"Here is code:\n\n```python\n{code}"
    tail = preview_tail(text, 300)
    assert utf16_len(tail) <= 300
    assert tail.startswith("```python\nx")
    assert text.endswith(tail[len("```python\n") :])


def test_preview_after_a_closed_fence_adds_nothing(no_parsing: None) -> None:
    text = "```\ncode\n```\n\n" + "\n\n".join(["plain paragraph text"] * 100)
    tail = preview_tail(text, 200)
    assert not tail.startswith("```")
    assert text.endswith(tail)


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50, 333])
def test_preview_respects_the_limit_with_astral_characters(limit: int) -> None:
    text = "a😀" * 400 + "\n" + "б👍🏽 " * 300
    tail = preview_tail(text, limit)
    assert utf16_len(tail) <= limit
    assert text.endswith(tail)


def test_preview_is_linear_on_long_drafts(no_parsing: None) -> None:
    text = ("A paragraph of a long answer. " * 20 + "\n\n") * 2000  # ~1.2 MB
    start = time.perf_counter()
    for _ in range(20):
        preview_tail(text, 4096)
    assert (time.perf_counter() - start) / 20 < 0.05
