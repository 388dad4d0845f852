from __future__ import annotations

import random

import pytest

from services.formatting import split_plain, utf16_len
from tests.unit.test_formatting_generators import non_ws


def test_short_text_is_one_part() -> None:
    assert split_plain("\n\nhello world \n") == ["hello world"]
    assert split_plain("    indented code") == ["    indented code"]  # indentation is content


@pytest.mark.parametrize("blank", ["", " ", "\n\n\t "])
def test_blank_text_gives_no_parts(blank: str) -> None:
    assert split_plain(blank, 10) == []


def test_prefers_paragraph_boundaries() -> None:
    paragraphs = ["first paragraph " * 3, "second one " * 4, "third " * 6]
    text = "\n\n".join(p.strip() for p in paragraphs)
    assert split_plain(text, 60) == [p.strip() for p in paragraphs]


def test_falls_back_to_lines_then_spaces_then_hard_cuts() -> None:
    lines = "\n".join(f"line number {n}" for n in range(20))
    parts = split_plain(lines, 50)
    assert all(utf16_len(p) <= 50 for p in parts)
    assert "\n".join(parts) == lines  # cut only at line ends

    spaced = " ".join(f"w{n}" for n in range(100))
    parts = split_plain(spaced, 30)
    assert all(utf16_len(p) <= 30 for p in parts)
    assert " ".join(parts) == spaced

    solid = "x" * 95
    assert split_plain(solid, 30) == ["x" * 30, "x" * 30, "x" * 30, "x" * 5]


def test_a_far_boundary_is_not_worth_a_tiny_part() -> None:
    # A paragraph break right at the start would waste a message: fill the part instead.
    text = "Hi.\n\n" + " ".join(["word"] * 100)
    parts = split_plain(text, 100)
    assert parts[0].startswith("Hi.\n\nword word")
    assert all(utf16_len(p) <= 100 for p in parts)


def test_counts_utf16_units() -> None:
    text = "😀" * 100
    parts = split_plain(text, 21)
    assert all(utf16_len(p) <= 21 for p in parts)
    assert "".join(parts) == text
    assert parts[0] == "😀" * 10


def test_hard_cut_keeps_emoji_sequences_together() -> None:
    family = "👨\u200d👩\u200d👧"  # ZWJ sequence
    text = family * 20
    for part in split_plain(text, 17):
        assert not part.startswith("\u200d") and not part.endswith("\u200d")
        assert utf16_len(part) <= 17
    toned = "👍🏽" * 30
    for part in split_plain(toned, 9):
        assert part.startswith("👍") and utf16_len(part) <= 9


def test_keeps_indentation_of_a_continued_line() -> None:
    text = "def f():\n" + "\n".join("    return 1" for _ in range(20))
    parts = split_plain(text, 60)
    assert all(p.startswith(("def", "    return")) for p in parts)


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_plain("text", 0)


@pytest.mark.parametrize("seed", range(200))
def test_split_plain_property(seed: int) -> None:
    rng = random.Random(seed)
    pieces = ["word", "слово", "😀", "👍🏽", " ", " ", " ", "\n", "\n\n", "x" * 50, "\t", "東京"]
    text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 600)))
    limit = rng.choice([1, 2, 3, 5, 17, 64, 200, 4096])
    parts = split_plain(text, limit)
    for part in parts:
        assert part.strip(), "empty part"
        assert utf16_len(part) <= max(limit, 2)  # one astral character cannot be cut
        assert part == part.rstrip()
    assert non_ws("".join(parts)) == non_ws(text)
