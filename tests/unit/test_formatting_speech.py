from __future__ import annotations

import random
import re

import pytest

from services.formatting import chunk_for_tts, markdown_to_speech

# --- markdown_to_speech ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "speech"),
    [
        ("**Bold**, *italic*, __strong__, ~~struck~~.", "Bold, italic, strong, struck."),
        ("# Title\n\nBody text.", "Title.\nBody text."),
        ("## Why?\n\n### Step one:", "Why?\nStep one:"),
        ("Read [the docs](https://example.com/docs) first.", "Read the docs first."),
        ("See https://www.python.org/downloads/release/. Then go.", "See python.org. Then go."),
        ("<https://example.org/a?b=c>", "example.org."),
        ("Run `pip install httpx` now.", "Run pip install httpx now."),
        ("A ![cat photo](cat.png) here.", "A cat photo here."),
        ("> Quoted wisdom\n> continues here.", "Quoted wisdom continues here."),
        ("Tom &amp; Jerry &lt;3", "Tom & Jerry <3."),
        ("Text with <b>inline</b> html.", "Text with inline html."),
        ("Hello\nworld   with\t\tspaces", "Hello world with spaces."),
        ("Привет! Это *тест*.\nВторая строка", "Привет! Это тест. Вторая строка."),
        ("Party time 🎉", "Party time 🎉"),
        ("---\n\nafter the rule", "after the rule."),
        ("", ""),
        ("   \n\n  ", ""),
    ],
)  # fmt: skip
def test_markdown_to_speech(markdown: str, speech: str) -> None:
    assert markdown_to_speech(markdown) == speech


def test_lists_become_lines_and_ordered_lists_keep_numbers() -> None:
    text = "Shopping:\n\n- milk\n- eggs!\n  - brown ones\n\n3. first step\n4. second step"
    assert markdown_to_speech(text) == (
        "Shopping:\nmilk.\neggs!\nbrown ones.\n3. first step.\n4. second step."
    )


def test_tables_read_as_rows_with_their_headers() -> None:
    text = "| Name | Age |\n|------|----:|\n| Alice | 30 |\n| Bob | |\n\nDone."
    assert markdown_to_speech(text) == "Name: Alice, Age: 30.\nName: Bob.\nDone."
    assert markdown_to_speech("| a | b |\n|---|---|") == "a, b."


def test_code_blocks_short_ones_read_long_ones_left_out() -> None:
    text = (
        "Install it:\n\n```bash\npip install httpx\n```\n\nThen:\n\n"
        "```python\nimport httpx\n\nprint(httpx.get('https://x.org').text)\n```\n\nDone."
    )
    assert markdown_to_speech(text) == "Install it:\npip install httpx.\nThen:\nDone."
    assert markdown_to_speech(text, code_placeholder="(code in the text)") == (
        "Install it:\npip install httpx.\nThen:\n(code in the text).\nDone."
    )
    assert markdown_to_speech("    one indented line\n") == "one indented line."
    assert markdown_to_speech("    two indented\n    lines\n") == ""
    assert markdown_to_speech("```\n" + "x = 1\n" * 20 + "```") == ""


def test_code_keeps_its_characters() -> None:
    # Operators inside code and between digits are content, not stray emphasis markers.
    assert markdown_to_speech("Use `a**b` or `__init__`; 2**10 is 1024.") == (
        "Use a**b or __init__; 2**10 is 1024."
    )


def test_cut_off_markdown_is_still_clean() -> None:
    # A streamed answer stopped mid-way: unclosed emphasis, fence and link.
    assert markdown_to_speech("This is **very import") == "This is very import."
    assert markdown_to_speech("Look [here](https://exa") == "Look here."
    assert markdown_to_speech("Note [1] applies.") == "Note [1] applies."  # not a link
    assert markdown_to_speech("Code:\n\n```py\nprint(1)") == "Code:\nprint(1)."


def test_no_markdown_symbols_survive_in_typical_answer() -> None:
    answer = (
        "## Summary\n\n**Python** is *great*. Key points:\n\n"
        "1. **Readable** — see [PEP 8](https://peps.python.org/pep-0008/).\n"
        "2. _Batteries_ included.\n\n"
        "| Feature | Value |\n|---|---|\n| Typing | `gradual` |\n\n> Tip: use ~~2~~ 3.12.\n"
    )
    speech = markdown_to_speech(answer)
    assert not re.search(r"[*_`#|>\[\]~]|https?:", speech), speech
    assert speech.splitlines() == [
        "Summary.",
        "Python is great. Key points:",
        "1. Readable — see PEP 8.",
        "2. Batteries included.",
        "Feature: Typing, Value: gradual.",
        "Tip: use 2 3.12.",
    ]


# --- chunk_for_tts ----------------------------------------------------------------------------


def non_ws(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_short_text_is_one_chunk_and_blank_is_none() -> None:
    assert chunk_for_tts("  Hello there.  ") == ["Hello there."]
    assert chunk_for_tts("") == []
    assert chunk_for_tts(" \n\t ") == []


def test_packs_whole_sentences_up_to_the_limit() -> None:
    text = "One two three. Four five six! Seven eight? Nine… Ten."
    assert chunk_for_tts(text, 30) == ["One two three. Four five six!", "Seven eight? Nine… Ten."]
    assert chunk_for_tts(text, 15) == [
        "One two three.",
        "Four five six!",
        "Seven eight?",
        "Nine… Ten.",
    ]


def test_line_breaks_are_boundaries_and_closing_quotes_stay() -> None:
    text = 'He said "stop." Then left\nheading line\nlast'
    assert chunk_for_tts(text, 22) == ['He said "stop."', "Then left\nheading line", "last"]


def test_no_cut_inside_numbers_or_words_when_avoidable() -> None:
    text = "Pi is 3.14159 and e is 2.71828 roughly speaking"
    chunks = chunk_for_tts(text, 20)
    assert chunks == ["Pi is 3.14159 and e", "is 2.71828 roughly", "speaking"]


def test_falls_back_to_hard_cuts() -> None:
    assert chunk_for_tts("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]
    # Not between a letter and its combining accent.
    text = "e\u0301" * 6
    chunks = chunk_for_tts(text, 5)
    assert "".join(chunks) == text
    assert all(len(c) <= 5 and not c.startswith("\u0301") for c in chunks)


def test_cjk_full_stops_are_boundaries() -> None:
    assert chunk_for_tts("你好。世界很大。再见", 5) == ["你好。", "世界很大。", "再见"]


def test_invalid_limit() -> None:
    with pytest.raises(ValueError):
        chunk_for_tts("text", 0)


@pytest.mark.parametrize("seed", range(30))
def test_random_text_respects_limit_and_loses_nothing(seed: int) -> None:
    rng = random.Random(seed)
    pieces = ["word", "слово", "a", "longerwordwithoutbreaks" * rng.randint(1, 4), "3.5", "e\u0301"]
    seps = [" ", " ", " ", ". ", "! ", "? ", "… ", "\n", "\n\n", ", "]
    text = "".join(rng.choice(pieces) + rng.choice(seps) for _ in range(rng.randint(0, 400)))
    limit = rng.choice([5, 17, 64, 200, 4096])
    chunks = chunk_for_tts(text, limit)
    assert all(0 < len(c) <= limit for c in chunks)
    assert all(c == c.strip() for c in chunks)
    assert non_ws("".join(chunks)) == non_ws(text)


def test_long_answer_at_openai_limit() -> None:
    sentence = "This sentence is about forty-five characters. "
    text = sentence * 300  # ~13,800 characters
    chunks = chunk_for_tts(text)
    assert len(chunks) == 4
    assert all(len(c) <= 4096 and c.endswith(".") for c in chunks)
    assert non_ws("".join(chunks)) == non_ws(text)
