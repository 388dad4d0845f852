from __future__ import annotations

import html
import re
from collections import Counter

import pytest

from services.formatting import (
    html_visible_len,
    markdown_to_html_parts,
    markdown_to_telegram_html,
    utf16_len,
)
from tests.unit.test_formatting_generators import (
    non_ws,
    random_markdown,
    validate_telegram_html,
    words,
)


def render(text: str) -> str:
    out = markdown_to_telegram_html(text)
    validate_telegram_html(out)
    return out


# --- inline formatting and escaping ----------------------------------------------------------


def test_inline_formatting() -> None:
    assert render("**bold** *italic* ~~gone~~ `code`") == (
        "<b>bold</b> <i>italic</i> <s>gone</s> <code>code</code>"
    )


def test_escapes_text_code_and_attributes() -> None:
    out = render('a < b && c > d `x<y && z>w` [q](https://x.io/?a=1&b="2")')
    assert out.startswith("a &lt; b &amp;&amp; c &gt; d <code>x&lt;y &amp;&amp; z&gt;w</code>")
    assert '<a href="https://x.io/?a=1&amp;b=%222%22">q</a>' in out


def test_code_block_is_escaped_and_keeps_its_language() -> None:
    out = render('```python\nif a < b and c > d:\n    print("&")\n```')
    assert out == (
        '<pre><code class="language-python">if a &lt; b and c &gt; d:\n'
        "    print(&quot;&amp;&quot;)</code></pre>".replace("&quot;", '"')
    )


def test_code_block_without_language_and_indented_code() -> None:
    assert render("```\nplain\n```") == "<pre>plain</pre>"
    assert render("para\n\n    indented <code>") == "para\n\n<pre>indented &lt;code&gt;</pre>"


def test_raw_html_is_shown_as_text() -> None:
    assert render("<b>not bold</b> <script>x</script>") == (
        "&lt;b&gt;not bold&lt;/b&gt; &lt;script&gt;x&lt;/script&gt;"
    )
    assert render("<div>\nblock html\n</div>") == "&lt;div&gt;\nblock html\n&lt;/div&gt;"


def test_math_is_left_as_text() -> None:
    out = render("Energy: $E = mc^2$, sum $a_1 + a_2 < b$ and $$\\int_0^1 x\\,dx$$")
    assert "$E = mc^2$" in out
    assert "$a_1 + a_2 &lt; b$" in out
    assert "\\int_0^1 x\\,dx" in out


def test_links_and_images() -> None:
    assert render("[site](https://example.com)") == '<a href="https://example.com">site</a>'
    assert render("[tg](tg://resolve?domain=x)") == '<a href="tg://resolve?domain=x">tg</a>'
    # Relative and script links cannot be text links in Telegram: their text stays.
    assert render("[anchor](#part-2) [x](javascript:alert(1))") == (
        "anchor [x](javascript:alert(1))"
    )
    assert render("![a cat](https://img.io/cat.png)") == (
        '<a href="https://img.io/cat.png">a cat</a>'
    )
    # No <code> and no second <a> inside a link.
    assert render("[`api` docs ![i](https://i.io/x.png)](https://docs.io)") == (
        '<a href="https://docs.io">api docs i</a>'
    )


# --- blocks ----------------------------------------------------------------------------------


def test_headings_become_bold_paragraphs() -> None:
    assert render("# Title **with bold**\n\nText\n## Sub") == (
        "<b>Title with bold</b>\n\nText\n\n<b>Sub</b>"
    )


def test_nested_lists() -> None:
    text = "- one\n- two\n  - two.a `code`\n    - deep\n- three\n\n3. c\n4. d\n   1. d.1"
    assert render(text) == (
        "• one\n• two\n  ◦ two.a <code>code</code>\n    ▪ deep\n• three\n\n3. c\n4. d\n   1. d.1"
    )


def test_task_list_items_get_boxes() -> None:
    assert render("- [x] done\n- [ ] todo **now**\n- [link](https://x.io)") == (
        '☑ done\n☐ todo <b>now</b>\n• <a href="https://x.io">link</a>'
    )


def test_loose_list_with_paragraphs_and_code() -> None:
    text = "1. First\n\n   More about first.\n\n   ```sh\n   ls -la\n   ```\n2. Second"
    assert render(text) == (
        '1. First\n   More about first.\n<pre><code class="language-sh">ls -la</code></pre>\n'
        "2. Second"
    )


def test_blockquote_nested_is_flattened() -> None:
    out = render("> quote **bold**\n>\n> > inner\n\nafter")
    assert out == "<blockquote>quote <b>bold</b>\n\ninner</blockquote>\n\nafter"


def test_table_becomes_monospace_grid() -> None:
    text = (
        "| Name | Qty | Note |\n|:-----|----:|:----:|\n"
        "| `apple` | 3 | **fresh** |\n| Груша 🍐 | 12 | a<b |"
    )
    out = render(text)
    assert out == (
        "<pre>Name     | Qty | Note\n"
        "---------+-----+------\n"
        "apple    |   3 | fresh\n"
        "Груша 🍐 |  12 |  a&lt;b</pre>"
    )


def test_horizontal_rule() -> None:
    assert render("above\n\n---\n\nbelow") == "above\n\n" + "—" * 10 + "\n\nbelow"


def test_llm_style_answer_renders_nicely() -> None:
    text = (
        "## Steps\n\n1. Install the package:\n   ```bash\n   pip install httpx\n   ```\n"
        "2. Use it:\n   - **sync**: `httpx.get(url)`\n   - **async**: `await client.get(url)`\n\n"
        "> Note: timeouts default to 5 s.\n\n| Option | Default |\n|---|---|\n| `timeout` | 5 |"
    )
    assert render(text) == (
        "<b>Steps</b>\n\n"
        '1. Install the package:\n<pre><code class="language-bash">pip install httpx</code></pre>\n'
        "2. Use it:\n   • <b>sync</b>: <code>httpx.get(url)</code>\n"
        "   • <b>async</b>: <code>await client.get(url)</code>\n\n"
        "<blockquote>Note: timeouts default to 5 s.</blockquote>\n\n"
        "<pre>Option  | Default\n--------+--------\ntimeout | 5</pre>"
    )


# --- partial Markdown (a stream cut mid-way) --------------------------------------------------


@pytest.mark.parametrize(
    "partial",
    [
        "```python\ndef f(x):\n    return x <",
        "Some **bold text that never clo",
        "Some *italic and `code that never",
        "[link text that is cut](https://exa",
        "| a | b |\n|---|---|\n| 1 |",
        "> quote\n> - list in quote\n>   - deeper `x",
        "1. one\n2. two\n   ```js\n   let a = 1",
        "~~strike **bold *italic",
        "<b>raw html never closed",
        "*",
        "**",
        "`",
        "```",
        "# ",
    ],
)
def test_partial_markdown_gives_valid_html(partial: str) -> None:
    for end in range(1, len(partial) + 1):
        render(partial[:end])


def test_unclosed_fence_renders_as_code() -> None:
    assert render("Text\n\n```python\nx = 1 < 2") == (
        'Text\n\n<pre><code class="language-python">x = 1 &lt; 2</code></pre>'
    )


def test_blank_input() -> None:
    assert markdown_to_telegram_html("") == ""
    assert markdown_to_telegram_html(" \n\n ") == ""
    assert markdown_to_html_parts("  \n") == []
    assert markdown_to_html_parts("```\n```") == []


# --- html_visible_len ---------------------------------------------------------------------------


def test_html_visible_len() -> None:
    assert html_visible_len("<b>ab</b> &lt;c&gt; &amp;") == len("ab <c> &")
    assert html_visible_len('<a href="https://x.io/very/long">x</a>😀') == 3
    assert html_visible_len("") == 0


# --- splitting -------------------------------------------------------------------------------


def test_short_answer_is_one_part() -> None:
    text = "# Hi\n\nShort **answer**."
    assert markdown_to_html_parts(text, 4096) == [markdown_to_telegram_html(text)]


def test_blocks_are_packed_whole() -> None:
    paragraphs = [f"Paragraph {n} " + "word " * 15 for n in range(12)]
    parts = markdown_to_html_parts("\n\n".join(paragraphs), 300)
    for part in parts:
        visible, _ = validate_telegram_html(part)
        assert utf16_len(visible) <= 300
        assert visible.startswith("Paragraph ")
        assert visible.endswith("word")


def test_long_code_block_continues_with_its_language() -> None:
    code = "\n".join(f"print({n} < {n + 1})" for n in range(400))
    parts = markdown_to_html_parts(f"Intro **text**.\n\n```python\n{code}\n```\n\nDone.", 1000)
    assert len(parts) > 5
    for part in parts:
        validate_telegram_html(part)
        assert html_visible_len(part) <= 1000
    for part in parts[1:-1]:
        assert part.startswith('<pre><code class="language-python">print(')
        assert part.endswith("</code></pre>")
    assert parts[0].startswith("Intro <b>text</b>.\n\n<pre>")  # the code starts right away
    joined = "".join(html.unescape(re.sub("<[^>]+>", "", p)) for p in parts)
    assert non_ws(joined) == non_ws("Intro text." + code + "Done.")


def test_formatting_cut_in_two_is_reopened() -> None:
    text = "**" + " ".join(f"bold{n}" for n in range(300)) + "**"
    parts = markdown_to_html_parts(text, 200)
    assert len(parts) > 3
    for part in parts:
        validate_telegram_html(part)
        assert part.startswith("<b>") and part.endswith("</b>")
        assert html_visible_len(part) <= 200


def test_visible_length_counts_utf16_and_entities() -> None:
    text = ("😀 & < > " * 40 + "\n\n") * 20
    for part in markdown_to_html_parts(text, 100):
        visible, _ = validate_telegram_html(part)
        assert utf16_len(visible) <= 100


def test_huge_table_is_split_into_valid_pre_parts() -> None:
    rows = "\n".join(f"| r{n} | {'x' * (n % 40)} |" for n in range(300))
    parts = markdown_to_html_parts(f"| a | b |\n|---|---|\n{rows}", 500)
    assert len(parts) > 5
    for part in parts:
        validate_telegram_html(part)
        assert part.startswith("<pre>") and part.endswith("</pre>")
        assert html_visible_len(part) <= 500


# --- property: valid, within limit, nothing lost ---------------------------------------------


def _visible_and_attrs(parts: list[str]) -> tuple[str, list[str]]:
    visible: list[str] = []
    attrs: list[str] = []
    for part in parts:
        text, values = validate_telegram_html(part)
        visible.append(text)
        attrs.extend(values)
    return "\n".join(visible), attrs


@pytest.mark.parametrize("seed", range(200))
def test_html_parts_property(seed: int) -> None:
    text = random_markdown(seed)
    limit = [50, 97, 200, 500, 1000, 4096][seed % 6]
    whole = markdown_to_telegram_html(text)
    whole_visible, whole_attrs = validate_telegram_html(whole)
    parts = markdown_to_html_parts(text, limit)
    assert parts
    for part in parts:
        visible, _ = validate_telegram_html(part)
        assert visible.strip(), "empty part"
        assert utf16_len(visible) <= limit
        assert html_visible_len(part) == utf16_len(visible)
    visible, _ = _visible_and_attrs(parts)
    # Splitting loses only whitespace at the cuts.
    assert non_ws(visible) == non_ws(whole_visible)
    # Rendering keeps every word of the source (URLs and languages live in attributes;
    # list numbers are renumbered like CommonMark does, so numbers are not compared).
    shown = Counter(words(whole_visible + " " + " ".join(whole_attrs)))
    missing = Counter(w for w in words(text) if not w.isdigit()) - shown
    assert not missing, missing
