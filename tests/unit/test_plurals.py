"""Plural forms of counted phrases (CLDR rules through Fluent) and how numbers are shown."""

from __future__ import annotations

import pytest

from handlers.ui.texts import CATALOG, t

# Russian has three forms for whole numbers: 1, 21 -> one; 2, 22 -> few; 5, 11, 25 -> many.
RU_FORM = {1: 0, 2: 1, 5: 2, 11: 2, 21: 0, 22: 1, 25: 2}
EN_FORM = {1: 0, 2: 1}

# key, the counted variables, what the English text holds for one/other and the Russian
# text for one/few/many ({n} is the number).
PLURALS: list[tuple[str, tuple[str, ...], tuple[str, str], tuple[str, str, str]]] = [
    (
        "usage_requests",
        ("count",),
        ("{n} request", "{n} requests"),
        ("{n} запрос", "{n} запроса", "{n} запросов"),
    ),
    (
        "usage_tokens",
        ("count",),
        ("{n} token", "{n} tokens"),
        ("{n} токен", "{n} токена", "{n} токенов"),
    ),
    (
        "balance",
        ("credits",),
        ("Balance: {n} credit\n", "Balance: {n} credits\n"),
        ("Баланс: {n} кредит\n", "Баланс: {n} кредита\n", "Баланс: {n} кредитов\n"),
    ),
    (
        "stats",
        ("tokens",),
        ("Last 30 days: {n} token,", "Last 30 days: {n} tokens,"),
        ("За 30 дней: {n} токен,", "За 30 дней: {n} токена,", "За 30 дней: {n} токенов,"),
    ),
    (
        "broadcast_ask",
        ("count",),
        ("for the {n} user.", "for all {n} users."),
        ("для {n} пользователя.", "для всех пользователей ({n}).", "для всех пользователей ({n})."),
    ),
    (
        "broadcast_confirm",
        ("count",),
        ("to {n} user?", "to {n} users?"),
        (
            "сообщение {n} пользователю?",
            "сообщение {n} пользователям?",
            "сообщение {n} пользователям?",
        ),
    ),
    (
        "broadcast_progress",
        ("failed",),
        ("⚠️ failed {n}\n", "⚠️ failed {n}\n"),
        ("⚠️ {n} ошибка\n", "⚠️ {n} ошибки\n", "⚠️ {n} ошибок\n"),
    ),
    (
        "broadcast_finished",
        ("failed",),
        ("⚠️ failed {n}x", "⚠️ failed {n}x"),
        ("⚠️ {n} ошибкаx", "⚠️ {n} ошибкиx", "⚠️ {n} ошибокx"),
    ),
    (
        "audio_too_long",
        ("minutes",),
        ("(the limit is {n} minute).", "(the limit is {n} minutes)."),
        ("(предел — {n} минута).", "(предел — {n} минуты).", "(предел — {n} минут)."),
    ),
    (
        "video_too_many",
        ("limit",),
        ("have {n} video in progress", "have {n} videos in progress"),
        (
            "уже генерируется {n} видео.",
            "уже генерируются {n} видео.",
            "уже генерируются {n} видео.",
        ),
    ),
    (
        "image_too_many",
        ("limit",),
        ("have {n} picture or video in", "have {n} pictures or videos in"),
        (
            "в работе {n} картинка или видео.",
            "в работе {n} картинки или видео.",
            "в работе {n} картинок или видео.",
        ),
    ),
]


def render(lang: str, key: str, counted: tuple[str, ...], n: int) -> str:
    values: dict[str, object] = dict.fromkeys(CATALOG.variables_of(lang, key), "x")
    values.update(dict.fromkeys(counted, n))
    return t(lang, key, **values)


@pytest.mark.parametrize(("key", "counted", "en", "ru"), PLURALS, ids=[p[0] for p in PLURALS])
def test_plural_forms(
    key: str, counted: tuple[str, ...], en: tuple[str, str], ru: tuple[str, str, str]
) -> None:
    for n, form in EN_FORM.items():
        text = render("en", key, counted, n)
        assert en[form].format(n=n) in text, (n, text)
    for n, form in RU_FORM.items():
        text = render("ru", key, counted, n)
        assert ru[form].format(n=n) in text, (n, text)


def test_whole_phrases_read_right() -> None:
    # The forms above are parts; these are the sentences an admin and a user read.
    assert t("en", "usage_requests", count=1) == "1 request"
    assert t("ru", "broadcast_confirm", count=21, duration="1 с") == (
        "Отправить это сообщение 21 пользователю? Это займёт около 1 с."
    )
    assert t("en", "broadcast_confirm", count=1, duration="1 s") == (
        "Send this message to 1 user? It takes about 1 s."
    )


def test_big_numbers_are_grouped_the_way_each_language_writes_them() -> None:
    assert t("en", "usage_tokens", count=1_234_567) == "1,234,567 tokens"
    # Russian groups with a no-break space, so a number never wraps across lines.
    assert t("ru", "usage_tokens", count=1_234_567) == "1\u00a0234\u00a0567 токенов"


def test_fractions_keep_their_digits_and_take_the_fraction_form() -> None:
    # Credits are always shown with two decimals, in the user's language.
    assert t("en", "usage_credits", amount=0.5) == "0.50 credits"
    assert t("en", "usage_credits", amount=1234.5) == "1,234.50 credits"
    assert t("ru", "usage_credits", amount=0.5) == "0,50 кредита"
    assert t("ru", "usage_credits", amount=1.25) == "1,25 кредита"


def test_a_count_passed_as_text_is_shown_as_it_was() -> None:
    # Call sites that format numbers themselves ("1 234") get the plural of "many" in
    # Russian and "other" in English: the texts as they were before plural forms.
    assert t("en", "usage_requests", count="1 234") == "1 234 requests"
    assert t("ru", "usage_requests", count="1 234") == "1 234 запросов"
    assert t("ru", "broadcast_confirm", count="5", duration="1 с").startswith(
        "Отправить это сообщение 5 пользователям?"
    )


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_broadcast_numbers_are_not_grouped(lang: str) -> None:
    # "#12345" is a name for the broadcast, not a quantity.
    assert "12345" in t(lang, "broadcast_busy", id=12345)
