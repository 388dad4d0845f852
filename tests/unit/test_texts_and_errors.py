from __future__ import annotations

import re

import pytest

from handlers.ui.errors import error_key, error_text
from handlers.ui.keyboards import models_keyboard
from handlers.ui.texts import CATALOG, keys, languages_of, t
from services.llm import (
    AuthFailed,
    ContextTooLong,
    InsufficientFunds,
    ModelUnavailable,
    ModerationRefused,
    ServiceUnavailable,
)
from services.users import language_for


def test_every_text_has_russian_and_english_with_the_same_placeholders() -> None:
    assert len(keys()) > 100  # the bot's own texts are loaded, not only a part's
    for key in keys():
        assert languages_of(key) == {"ru", "en"}, key
        assert CATALOG.variables_of("ru", key) == CATALOG.variables_of("en", key), key


_TAG = re.compile(r"<(/?)(b|i|u|s|code|pre|a|blockquote|tg-spoiler)\b[^>]*>")


@pytest.mark.parametrize("lang", ["en", "ru"])
@pytest.mark.parametrize("number", [1, 2, 5])
def test_html_tags_are_balanced_in_every_variant(lang: str, number: int) -> None:
    # Telegram rejects a message whose tags do not nest, so every text and every plural
    # variant must stay balanced; numbers pick the variants, "x" the default ones.
    for key in keys():
        names = CATALOG.variables_of(lang, key)
        for value in (number, "x"):
            text = t(lang, key, **dict.fromkeys(names, value))
            open_tags: list[str] = []
            for closing, tag in _TAG.findall(text):
                if closing:
                    assert open_tags and open_tags.pop() == tag, (key, text)
                else:
                    open_tags.append(tag)
            assert not open_tags, (key, text)
            assert "{" not in text and "}" not in text, (key, text)


@pytest.mark.parametrize(
    ("code", "lang"),
    [
        ("ru", "ru"),
        ("uk", "ru"),
        ("be", "ru"),
        ("kk", "ru"),
        ("en", "en"),
        ("de", "en"),
        (None, "en"),
        ("ru-RU", "ru"),
    ],
)
def test_language_from_telegram_code(code: str | None, lang: str) -> None:
    assert language_for(code) == lang


@pytest.mark.parametrize(
    ("error", "key"),
    [
        (ContextTooLong(400, "x"), "err_context"),
        (AuthFailed(400, "x"), "err_auth"),
        (InsufficientFunds(400, "x"), "err_funds"),
        (ModelUnavailable(400, "x"), "err_model"),
        (ModerationRefused(403, "x"), "err_moderation"),
        (ServiceUnavailable(502, "x"), "err_unavailable"),
        (None, "err_unexpected"),
    ],
)
def test_error_messages(error: object, key: str) -> None:
    assert error_key(error) == key  # type: ignore[arg-type]


def test_admins_see_upstream_detail_escaped_users_do_not() -> None:
    error = AuthFailed(400, "User with this API key not found <b>")
    user = error_text(error, "en", model="m", is_admin=False)
    admin = error_text(error, "en", model="m", is_admin=True)
    assert "not found" not in user
    assert "User with this API key not found &lt;b&gt;" in admin


def test_models_keyboard_pages_and_marks_current() -> None:
    ids = [f"vendor/model-{i:02d}" for i in range(20)]
    markup, page, pages = models_keyboard(ids, "vendor/model-09", 1)
    assert (page, pages) == (1, 3)
    labels = [b.text for row in markup.inline_keyboard for b in row]
    assert "✅ vendor/model-09" in labels
    assert "vendor/model-08" in labels and "vendor/model-16" not in labels
    for row in markup.inline_keyboard:
        for button in row:
            assert len(button.callback_data.encode()) <= 64
    _, page, _ = models_keyboard(ids, "x", 99)
    assert page == 2
