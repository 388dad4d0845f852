"""Shared test tools for the formatting tests: a Telegram-HTML validator and a generator of
LLM-like Markdown. The tests at the bottom check the tools themselves."""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser

import pytest

# Telegram's HTML subset (Bot API "formatting options").
ALLOWED_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    }
)
_STYLE_TAGS = frozenset({"b", "strong", "i", "em", "u", "ins", "s", "strike", "del"})
_TAG_RE = re.compile(r'<(/?)([a-z-]+)((?:\s+[a-z-]+(?:="[^"<>]*")?)*)>')
_ENTITY_RE = re.compile(r"&(?:lt|gt|amp|quot);")
_WORD_RE = re.compile(r"\w+")


class _Validator(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []
        self.attr_values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.attr_values.extend(v for v in attributes.values() if v)
        if tag not in ALLOWED_TAGS:
            self.errors.append(f"tag <{tag}> is not allowed")
        inside_code = [t for t in self.stack if t in ("pre", "code")]
        if inside_code:
            language_code = (
                tag == "code"
                and self.stack[-1] == "pre"
                and str(attributes.get("class", "")).startswith("language-")
            )
            if not language_code:
                self.errors.append(f"<{tag}> inside <{inside_code[-1]}>")
        if tag == "a":
            if "a" in self.stack:
                self.errors.append("<a> inside <a>")
            if not attributes.get("href"):
                self.errors.append("<a> without href")
        if tag == "code" and "a" in self.stack:
            self.errors.append("<code> inside <a>")
        if tag == "blockquote" and "blockquote" in self.stack:
            self.errors.append("nested <blockquote>")
        if tag == "pre" and any(t in _STYLE_TAGS or t == "a" for t in self.stack):
            self.errors.append("<pre> inside inline formatting")
        if tag in _STYLE_TAGS and tag in self.stack:
            self.errors.append(f"<{tag}> inside itself")
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.errors.append(f"self-closing <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            self.errors.append(f"</{tag}> without an open tag")
        elif self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1]}>")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def validate_telegram_html(html_text: str) -> tuple[str, list[str]]:
    """(visible text, attribute values) of valid Telegram HTML; AssertionError otherwise."""
    leftover = _ENTITY_RE.sub("", _TAG_RE.sub("", html_text))
    assert "<" not in leftover and ">" not in leftover, f"unescaped < or > in {html_text!r}"
    assert "&" not in leftover, f"unescaped & in {html_text!r}"
    validator = _Validator()
    validator.feed(html_text)
    validator.close()
    if validator.stack:
        validator.errors.append(f"unclosed {validator.stack}")
    assert not validator.errors, f"{validator.errors} in {html_text!r}"
    return "".join(validator.text), validator.attr_values


def non_ws(text: str) -> str:
    return "".join(text.split())


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text)


# --------------------------------------------------------------------------------------------
# A generator of LLM-like Markdown
# --------------------------------------------------------------------------------------------

_EN = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "answer",
    "model",
    "token",
    "stream",
    "request",
    "python",
    "function",
    "value",
    "error",
    "context",
    "message",
    "telegram",
    "limit",
    "split",
    "part",
    "block",
]
_RU = [
    "привет",
    "мир",
    "ответ",
    "модель",
    "поток",
    "запрос",
    "функция",
    "значение",
    "ошибка",
    "контекст",
    "сообщение",
]
_ODD = ["😀", "👍🏽", "🇷🇺", "東京", "a<b", "x>y", "Q&A", "𝔘𝔫𝔦", "naïve", "—", "«ёлка»"]
_LANGS = ["python", "js", "", "bash", "c++", "json"]


def _word(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(_EN)
    if roll < 0.9:
        return rng.choice(_RU)
    return rng.choice(_ODD)


def _inline(rng: random.Random, n_words: int) -> str:
    out = []
    for _ in range(n_words):
        word = _word(rng)
        roll = rng.random()
        if roll < 0.05:
            word = f"**{word}**"
        elif roll < 0.1:
            word = f"*{word}*"
        elif roll < 0.15:
            word = f"`{word}`"
        elif roll < 0.18:
            word = f"[{word}](https://example.com/{rng.choice(_EN)})"
        elif roll < 0.2:
            word = f"$x_{rng.randint(1, 9)}^2$"
        out.append(word)
    return " ".join(out)


def _paragraph(rng: random.Random) -> str:
    if rng.random() < 0.15:  # a long single line, as models write paragraphs
        return _inline(rng, rng.randint(80, 400))
    return "\n".join(_inline(rng, rng.randint(3, 15)) for _ in range(rng.randint(1, 3)))


def _code_lines(rng: random.Random, count: int) -> list[str]:
    lines = []
    for _ in range(count):
        indent = " " * rng.choice([0, 0, 4, 8])
        if rng.random() < 0.05:
            body = "x = " + " + ".join(_word(rng) for _ in range(rng.randint(40, 120)))
        else:
            body = " ".join(_word(rng) for _ in range(rng.randint(1, 8)))
        lines.append(indent + body + rng.choice(["", " < 3 && y > 2", "  # комментарий"]))
    return lines


def _fence(rng: random.Random, indent: str = "") -> str:
    marker = rng.choice(["```", "```", "~~~", "````"])
    info = rng.choice(_LANGS)
    body = _code_lines(rng, rng.randint(1, 40))
    lines = [indent + marker + info, *(indent + line for line in body), indent + marker]
    return "\n".join(lines)


def _list(rng: random.Random, depth: int = 0, counter: list[int] | None = None) -> str:
    ordered = rng.random() < 0.4
    lines = []
    for n in range(1, rng.randint(2, 6)):
        marker = f"{n}. " if ordered else "- "
        pad = " " * (depth * 3)
        lines.append(pad + marker + _inline(rng, rng.randint(2, 20)))
        if depth < 2 and rng.random() < 0.3:
            lines.append(_list(rng, depth + 1))
        if depth == 0 and rng.random() < 0.1:
            lines.append(_fence(rng, indent=" " * len(marker)))
    return "\n".join(lines)


def _table(rng: random.Random, serial: int) -> str:
    columns = rng.randint(2, 4)
    header = "| " + " | ".join(f"h{serial}x{c} {_word(rng)}" for c in range(columns)) + " |"
    delimiter = "|" + "|".join(rng.choice(["---", ":--", "--:", ":-:"]) for _ in range(columns))
    rows = [
        "| " + " | ".join(_inline(rng, rng.randint(1, 4)) for _ in range(columns)) + " |"
        for _ in range(rng.randint(1, 30))
    ]
    return "\n".join([header, delimiter + "|", *rows])


def _quote(rng: random.Random) -> str:
    return "\n".join("> " + _inline(rng, rng.randint(2, 12)) for _ in range(rng.randint(1, 6)))


def random_markdown(seed: int, blocks: int | None = None) -> str:
    """An LLM-like answer: paragraphs, headings, lists, fences, tables, quotes, rules."""
    rng = random.Random(seed)
    out: list[str] = []
    for serial in range(blocks if blocks is not None else rng.randint(1, 25)):
        kind = rng.random()
        if kind < 0.35:
            out.append(_paragraph(rng))
        elif kind < 0.45:
            out.append("#" * rng.randint(1, 3) + " " + _inline(rng, rng.randint(1, 6)))
        elif kind < 0.6:
            out.append(_list(rng))
        elif kind < 0.75:
            out.append(_fence(rng))
        elif kind < 0.85:
            out.append(_table(rng, serial))
        elif kind < 0.93:
            out.append(_quote(rng))
        elif kind < 0.96:
            out.append("---")
        else:
            out.append("".join(rng.choice("abcdefghij0123456789😀") for _ in range(700)))
    text = "\n\n".join(out)
    if rng.random() < 0.1:  # a stream cut mid-way: unclosed fence or emphasis
        text += rng.choice(["\n\n```python\nprint('unfinished", "\n\nsome **bold and more"])
    return text


# --------------------------------------------------------------------------------------------
# Self-checks of the tools
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "<b>x",
        "<b>x</i>",
        "<b><i>x</b></i>",
        "<div>x</div>",
        "a < b",
        "a & b",
        "<pre><b>x</b></pre>",
        "<a href='x'><a href='y'>z</a></a>",
        "<blockquote><blockquote>x</blockquote></blockquote>",
        '<a href="https://x"><code>x</code></a>',
        "<br/>",
    ],
)
def test_validator_rejects_invalid_html(bad: str) -> None:
    with pytest.raises(AssertionError):
        validate_telegram_html(bad)


def test_validator_accepts_telegram_html() -> None:
    text, attrs = validate_telegram_html(
        '<b>bold <i>it</i></b> &lt;tag&gt; &amp; <a href="https://t.me/x?a=1&amp;b=2">link</a>'
        '\n<pre><code class="language-python">x &lt; 1</code></pre><blockquote>q</blockquote>'
    )
    assert text == "bold it <tag> & link\nx < 1q"
    assert attrs == ["https://t.me/x?a=1&b=2", "language-python"]


def test_generator_is_deterministic_and_varied() -> None:
    assert random_markdown(1) == random_markdown(1)
    corpus = "\n".join(random_markdown(seed) for seed in range(40))
    for feature in ("```", "~~~", "| h", "> ", "- ", "1. ", "#", "😀", "привет", "**", "$x_"):
        assert feature in corpus
