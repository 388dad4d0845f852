"""Offline token estimate for trimming conversation history (no tokenizer, no downloads).

Modern BPE vocabularies (o200k, cl100k) first split text into "pre-tokens" with a regex —
words (a lower→upper case change starts a new one), digit groups of up to three,
punctuation runs, whitespace — and then merge bytes inside each. The count is therefore
well predicted by how many pre-tokens of each kind there are, plus a per-character cost for
scripts the vocabulary covers less densely. The weights below were fitted against the real
o200k tokenizer on English, Russian, code, Markdown and JSON samples and then scaled up so
the estimate errs HIGH (measurements: /work/brief/tokens-accuracy.md): a trimmed request
must still fit the context.

Speed matters (every stored message is estimated): the text is encoded to UTF-8 and mapped
with one ``bytes.translate`` to a string of character classes, one byte per character
(continuation bytes deleted). Every feature is then a ``bytes.count`` over that class string
or over its 0/1 image for one class, where the number of runs is the number of run ends.
No Python code runs per character or per word, and no regex is involved.
"""

from __future__ import annotations

import math

# Per-message framing of chat formats (<|start|>role<|message|> ... <|end|>): about 4 tokens.
MESSAGE_OVERHEAD = 4


def _class_table() -> bytes:
    table = bytearray(b"?" * 256)  # "?" never occurs as a class of interest
    for byte in range(0x21, 0x7F):
        table[byte] = ord(".")  # ASCII punctuation and symbols
    for byte in b"abcdefghijklmnopqrstuvwxyz":
        table[byte] = ord("a")
    for byte in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        table[byte] = ord("A")
    for byte in b"0123456789":
        table[byte] = ord("0")
    for byte in b" \t\f\v":
        table[byte] = ord(" ")
    for byte in b"\r\n":
        table[byte] = ord("\n")
    # UTF-8 lead bytes identify the Unicode block well enough for a token estimate.
    for lead in range(0xC2, 0xE0):
        table[lead] = ord("o")  # other 2-byte characters: Greek, Hebrew, Arabic, «», ...
    for lead in range(0xC3, 0xCA):
        table[lead] = ord("l")  # U+00C0..U+027F: accented Latin letters
    for lead in range(0xD0, 0xD4):
        table[lead] = ord("c")  # U+0400..U+04FF: Cyrillic
    for lead in range(0xE0, 0xF0):
        table[lead] = ord("p")  # other BMP characters: typographic punctuation, symbols
    for lead in range(0xE3, 0xEE):
        table[lead] = ord("k")  # U+3000..U+DFFF: CJK, kana, hangul
    for lead in range(0xF0, 0xF5):
        table[lead] = ord("e")  # outside the BMP: mostly emoji
    return bytes(table)


def _binary_table(classes: bytes) -> bytes:
    return bytes(0x31 if byte in classes else 0x30 for byte in range(256))


_CLASSES = _class_table()
_CONTINUATION = bytes(range(0x80, 0xC0))
_LATIN = _binary_table(b"aAl")
_CYRILLIC = _binary_table(b"c")
_DIGITS = _binary_table(b"0")
_PUNCT = _binary_table(b".")
_ACCENTED = _binary_table(b"l")
# Word characters become "1" and line breaks "\n", so one count finds "newline after a word".
_WORD_END = bytes(
    0x31 if byte in b"aA0c" else 0x0A if byte == 0x0A else 0x30 for byte in range(256)
)
_UKRAINIAN = "іїєґІЇЄҐ"

# Fitted weights (tokens per feature) before the safety margin.
_W_LATIN_WORD = 1.07
_W_CAMEL_SPLIT = 0.36  # "useState": o200k starts a new pre-token at a lower-to-upper change
_W_LONG_LATIN = 0.68  # per 12 letters in a row: long identifiers and glued words split more
_W_ACCENTED_WORD = 2.7  # extra: words with accents are rarer in the vocabulary (de, pl, fr)
_W_CYRILLIC_WORD = 1.07
_W_CYRILLIC_CHAR = 0.094
_W_LONG_CYRILLIC = 1.0  # per 10 letters in a row
_W_UKRAINIAN_CHAR = 1.46  # extra: Ukrainian letters mark text the vocabulary covers worse
_W_NUMBER = 1.24
_W_LONG_NUMBER = 1.0  # per 4 digits: numbers are cut into groups of up to three digits
_W_PUNCT_CHAR = 0.23
_W_PUNCT_RUN = 0.63
_W_INDENT = 0.41
_W_WORD_NEWLINE = 0.86  # a newline after a word is its own token (after punctuation it merges)
_W_CJK_CHAR = 0.83
_W_ASTRAL_CHAR = 2.0  # emoji: one token when common, three byte-tokens when rare
_W_OTHER_CHAR = 0.7  # Greek, Hebrew, typographic punctuation, symbols...
# Floors for text without word structure (glued words, long identifiers): the vocabulary
# cannot do better than about this many characters per token.
_FLOOR_ASCII_CHARS = 4.5
_FLOOR_CYRILLIC_CHARS = 3.2
# Places English and Russian prose about 5-10% above o200k (never below it on the samples).
_MARGIN = 1.08


def estimate_tokens(text: str) -> int:
    """Estimated token count of `text` for o200k/cl100k-like tokenizers, erring slightly high."""
    if not text:
        return 0
    return max(1, math.ceil(_score(text) * _MARGIN))


def estimate_message_tokens(role: str, content: str) -> int:
    """Tokens one chat message costs: its content plus the role and framing tokens."""
    del role  # every chat role name is a single token, counted in MESSAGE_OVERHEAD
    return estimate_tokens(content) + MESSAGE_OVERHEAD


def _runs(classes: bytes, binary_table: bytes) -> int:
    """Number of maximal runs of the classes that `binary_table` maps to "1"."""
    bits = classes.translate(binary_table)
    # Every run but a final one ends with "10"; a two-byte count is fastest when its first
    # byte is rare, which "1" is for every class but Latin letters (counted separately).
    return bits.count(b"10") + (bits[-1:] == b"1")


def _score(text: str) -> float:
    raw = text.encode("utf-8", "surrogatepass")
    classes = raw.translate(_CLASSES, _CONTINUATION)
    latin = classes.translate(_LATIN)
    score = (
        _W_LATIN_WORD * (latin.count(b"01") + (latin[:1] == b"1"))
        + _W_CAMEL_SPLIT * classes.count(b"aA")
        + _W_LONG_LATIN * latin.count(b"1" * 12)
        + _W_NUMBER * _runs(classes, _DIGITS)
        + _W_LONG_NUMBER * classes.count(b"0000")
        + _W_PUNCT_CHAR * classes.count(b".")
        + _W_PUNCT_RUN * _runs(classes, _PUNCT)
        + _W_INDENT * classes.count(b"\n ")
        + _W_WORD_NEWLINE * classes.translate(_WORD_END).count(b"1\n")
    )
    dense = (latin.count(b"1") + classes.count(b"0") + classes.count(b".")) / _FLOOR_ASCII_CHARS
    if text.isascii():
        return max(score, dense)
    cyrillic = classes.count(b"c")
    if cyrillic:
        score += _W_CYRILLIC_WORD * _runs(classes, _CYRILLIC) + _W_CYRILLIC_CHAR * cyrillic
        score += _W_LONG_CYRILLIC * classes.count(b"c" * 10)
        score += _W_UKRAINIAN_CHAR * sum(text.count(letter) for letter in _UKRAINIAN)
    if classes.count(b"l"):
        score += _W_ACCENTED_WORD * _runs(classes, _ACCENTED)
    score += _W_CJK_CHAR * classes.count(b"k")
    score += _W_ASTRAL_CHAR * classes.count(b"e")
    score += _W_OTHER_CHAR * (classes.count(b"o") + classes.count(b"p"))
    return max(score, dense + cyrillic / _FLOOR_CYRILLIC_CHARS)
