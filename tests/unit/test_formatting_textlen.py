from __future__ import annotations

import pytest

from services.formatting import utf16_len
from services.formatting.textlen import (
    Utf16Index,
    utf16_prefix_end,
    utf16_suffix_start,
)


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("", 0),
        ("hello", 5),
        ("привет", 6),  # Cyrillic is in the BMP: one unit each
        ("東京", 2),
        ("😀", 2),  # astral: a surrogate pair
        ("👍🏽", 4),  # emoji + skin tone modifier, both astral
        ("🇷🇺", 4),  # two regional indicators
        ("a😀b", 4),
        ("𝔘𝔫𝔦", 6),
        ("e\u0301", 2),  # combining accent counts on its own
    ],
)
def test_utf16_len(text: str, units: int) -> None:
    assert utf16_len(text) == units
    assert utf16_len(text) == len(text.encode("utf-16-le")) // 2


def test_index_spans_and_windows() -> None:
    text = "ab😀c😀😀d"
    index = Utf16Index(text)
    for start in range(len(text) + 1):
        for end in range(start, len(text) + 1):
            assert index.span(start, end) == utf16_len(text[start:end])
        for limit in range(1, 12):
            end = index.window_end(start, limit)
            assert utf16_len(text[start:end]) <= limit
            if end < len(text):
                assert utf16_len(text[start : end + 1]) > limit


def test_window_on_emoji_only_text_does_not_undershoot() -> None:
    text = "😀" * 300
    assert Utf16Index(text).window_end(0, 101) == 50
    assert Utf16Index(text).window_end(10, 100) == 60


@pytest.mark.parametrize("limit", range(0, 9))
def test_prefix_and_suffix_never_split_a_surrogate_pair(limit: int) -> None:
    text = "a😀b😀😀c"
    end = utf16_prefix_end(text, limit)
    assert utf16_len(text[:end]) <= limit
    assert end == len(text) or utf16_len(text[: end + 1]) > limit
    start = utf16_suffix_start(text, limit)
    assert utf16_len(text[start:]) <= limit
    assert start == 0 or utf16_len(text[start - 1 :]) > limit


def test_suffix_of_ascii_and_short_text() -> None:
    assert utf16_suffix_start("abcdef", 4) == 2
    assert utf16_suffix_start("abc", 10) == 0
    assert utf16_suffix_start("привет", 2) == 4
