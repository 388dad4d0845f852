"""Every text the bot shows, in Russian and English.

Texts live in Fluent files, ``locales/<lang>/*.ftl`` beside this module: every file of a
language's directory is loaded once, at import, and message ids are the keys `t()` takes.
Fluent gives plural forms from CLDR (via Babel: English one/other, Russian
one/few/many/other) and needs no compile step.

`t(lang, key, **values)` picks the user's language and falls back to English, so a missing
translation shows English rather than a key name; a key no language has is a KeyError.
Values that come from users must be HTML-escaped by the caller, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Final

from fluent.runtime import FluentBundle, FluentResource
from fluent.runtime.errors import FluentReferenceError
from fluent.syntax import ast as ftl
from fluent.syntax.visitor import Visitor

log = logging.getLogger(__name__)

LOCALES_DIR: Final = Path(__file__).with_name("locales")
FALLBACK_LANG: Final = "en"
LANGUAGES: Final = ("en", "ru")
LANG_NAMES: Final = MappingProxyType({"ru": "Русский", "en": "English"})


class FluentFilesError(ValueError):
    """A .ftl file that Fluent would only partly load (a syntax error, an id used twice)."""


@dataclass(frozen=True)
class Catalog:
    """Every language's bundle and its messages' syntax trees (for checks), read-only."""

    bundles: Mapping[str, FluentBundle]
    messages: Mapping[str, Mapping[str, ftl.Message]]

    @classmethod
    def load(cls, directory: Path, languages: Iterable[str] = LANGUAGES) -> Catalog:
        bundles: dict[str, FluentBundle] = {}
        messages: dict[str, Mapping[str, ftl.Message]] = {}
        for lang in languages:
            bundles[lang], messages[lang] = _load_language(lang, directory / lang)
        return cls(MappingProxyType(bundles), MappingProxyType(messages))

    def text(self, lang: str, key: str, values: Mapping[str, object]) -> str:
        for candidate in (lang, FALLBACK_LANG):
            if key in self.messages.get(candidate, {}):
                return self._format(candidate, key, values)
        raise KeyError(key)

    def keys(self) -> frozenset[str]:
        return frozenset(key for messages in self.messages.values() for key in messages)

    def languages_of(self, key: str) -> frozenset[str]:
        found = frozenset(lang for lang, messages in self.messages.items() if key in messages)
        if not found:
            raise KeyError(key)
        return found

    def variables_of(self, lang: str, key: str) -> frozenset[str]:
        """The `$names` a message uses (in any variant), to check translations agree."""
        finder = _VariableFinder()
        finder.visit(self.messages[lang][key])
        return frozenset(finder.names)

    def _format(self, lang: str, key: str, values: Mapping[str, object]) -> str:
        bundle = self.bundles[lang]
        pattern = bundle.get_message(key).value
        if pattern is None:  # a message with attributes only: nothing to show
            raise KeyError(key)
        args = {name: _fluent_value(value) for name, value in values.items()}
        text, errors = bundle.format_pattern(pattern, args)
        if errors:
            # Best effort: Fluent has put the variable's name where a value was missing.
            # Log the key and what went wrong, never the values (they hold users' text).
            kinds = ", ".join(
                str(e) if isinstance(e, FluentReferenceError) else type(e).__name__ for e in errors
            )
            log.warning("text %r formatted with errors: %s", key, kinds)
        return text if isinstance(text, str) else (text.name or key)  # a cyclic reference


def _load_language(lang: str, directory: Path) -> tuple[FluentBundle, Mapping[str, ftl.Message]]:
    """One language's bundle from every .ftl file in its directory (sorted by name).

    A syntax error or an id defined twice fails the import: Fluent itself would skip the
    broken entry (or keep the first of two) and a text would silently be missing or wrong.
    """
    # No Unicode isolation marks around values: Telegram would keep them inside model ids
    # and commands that users copy from the text.
    bundle = FluentBundle([lang], use_isolating=False)
    messages: dict[str, ftl.Message] = {}
    where: dict[str, Path] = {}
    for path in sorted(directory.glob("*.ftl")):
        resource = FluentResource(path.read_text(encoding="utf-8"))
        for entry in resource.body:
            if isinstance(entry, ftl.Junk):
                problems = "; ".join(str(a.message) for a in entry.annotations)
                start = (entry.content or "").strip().partition("\n")[0]
                raise FluentFilesError(f"{path}: {problems} in {start!r}")
            if isinstance(entry, ftl.Message):
                name = entry.id.name
                if name in messages:
                    raise FluentFilesError(f"{path}: {name!r} is already defined in {where[name]}")
                messages[name], where[name] = entry, path
        bundle.add_resource(resource)
    for name in messages:
        bundle.get_message(name)  # compile now: formatting later builds nothing
    return bundle, MappingProxyType(messages)


def _fluent_value(value: object) -> object:
    """What Fluent takes for `value`: numbers stay numbers (plural forms, locale grouping),
    anything else becomes the str() that str.format() used to show."""
    if isinstance(value, bool):  # an int to Python, but "True" to a reader
        return str(value)
    if isinstance(value, int | float | Decimal | date | str):
        return value
    return str(value)


class _VariableFinder(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def visit_VariableReference(self, node: ftl.VariableReference) -> None:
        self.names.add(node.id.name)


# Package data read once at import: a constant for the process's lifetime.
CATALOG: Final = Catalog.load(LOCALES_DIR)


def t(lang: str, key: str, /, **values: object) -> str:
    return CATALOG.text(lang, key, values)


def keys() -> frozenset[str]:
    return CATALOG.keys()


def languages_of(key: str) -> frozenset[str]:
    return CATALOG.languages_of(key)
