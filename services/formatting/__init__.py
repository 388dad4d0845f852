"""Pure text logic for Telegram: lengths, Markdown/plain splitting and Telegram HTML."""

from __future__ import annotations

from services.formatting.markdown_split import preview_tail, split_markdown
from services.formatting.plain_split import split_plain
from services.formatting.speech import chunk_for_tts, markdown_to_speech
from services.formatting.telegram_html import (
    html_visible_len,
    markdown_to_html_parts,
    markdown_to_telegram_html,
)
from services.formatting.textlen import utf16_len

__all__ = [
    "chunk_for_tts",
    "html_visible_len",
    "markdown_to_html_parts",
    "markdown_to_speech",
    "markdown_to_telegram_html",
    "preview_tail",
    "split_markdown",
    "split_plain",
    "utf16_len",
]
