"""The Fluent catalog behind t(): loading .ftl files, falling back, and failing safely."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from handlers.ui.texts import LOCALES_DIR, Catalog, FluentFilesError, t


def write(root: Path, lang: str, name: str, source: str) -> None:
    (root / lang).mkdir(parents=True, exist_ok=True)
    (root / lang / name).write_text(source, encoding="utf-8")


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    write(tmp_path, "en", "a.ftl", "greet = Hi, { $name }!\nonly-en = English only\n")
    write(tmp_path, "en", "b.ftl", "part-b = From the second file\n")
    write(tmp_path, "ru", "a.ftl", "greet = Привет, { $name }!\n")
    return Catalog.load(tmp_path)


def test_every_file_of_a_language_is_loaded(catalog: Catalog) -> None:
    assert catalog.text("en", "part-b", {}) == "From the second file"
    assert catalog.keys() == {"greet", "only-en", "part-b"}


def test_a_missing_translation_falls_back_to_english(catalog: Catalog) -> None:
    assert catalog.text("ru", "greet", {"name": "Аня"}) == "Привет, Аня!"
    assert catalog.text("ru", "only-en", {}) == "English only"
    assert catalog.text("de", "greet", {"name": "Max"}) == "Hi, Max!"
    assert catalog.languages_of("only-en") == {"en"}


def test_an_unknown_key_is_a_key_error(catalog: Catalog) -> None:
    with pytest.raises(KeyError):
        catalog.text("en", "nope", {})
    with pytest.raises(KeyError):
        catalog.languages_of("nope")
    with pytest.raises(KeyError):
        t("en", "no-such-text")


def test_no_isolation_marks_around_values(catalog: Catalog) -> None:
    # Fluent's default wraps values in U+2068/U+2069, which Telegram keeps in copied text.
    text = catalog.text("en", "greet", {"name": "gpt-4o"})
    assert "\u2068" not in text and "\u2069" not in text


def test_a_missing_value_logs_the_key_but_never_the_values(
    catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="handlers.ui.texts"):
        text = t("en", "model_replaced")  # needs $model
        shown = t("en", "start", name="SECRET-NAME")  # needs $model too
    assert "model" in text  # best effort: the variable's name stands in for it
    assert "SECRET-NAME" in shown
    assert "'model_replaced'" in caplog.text and "'start'" in caplog.text
    assert "SECRET-NAME" not in caplog.text


def test_values_that_are_not_text_or_numbers_show_as_str(catalog: Catalog) -> None:
    assert catalog.text("en", "greet", {"name": True}) == "Hi, True!"
    assert catalog.text("en", "greet", {"name": Path("a")}) == "Hi, a!"
    assert catalog.text("en", "greet", {"name": None}) == "Hi, None!"


def test_a_syntax_error_fails_loading_with_the_file_named(tmp_path: Path) -> None:
    write(tmp_path, "en", "broken.ftl", "fine = ok\nbroken = { $oops\n")
    write(tmp_path, "ru", "a.ftl", "fine = ок\n")
    with pytest.raises(FluentFilesError, match=r"broken\.ftl"):
        Catalog.load(tmp_path)


def test_an_id_defined_in_two_files_fails_loading(tmp_path: Path) -> None:
    write(tmp_path, "en", "one.ftl", "same = first\n")
    write(tmp_path, "en", "two.ftl", "same = second\n")
    with pytest.raises(FluentFilesError, match="already defined"):
        Catalog.load(tmp_path, languages=["en"])


def test_the_locales_ship_as_package_data() -> None:
    # pyproject's package-data takes locales/*/*.ftl; a new file must fit that pattern.
    files = sorted(LOCALES_DIR.glob("*/*.ftl"))
    assert {f.parent.name for f in files} == {"en", "ru"}
    assert not list(LOCALES_DIR.glob("*/*/*.ftl")), "nested folders are not packaged"
