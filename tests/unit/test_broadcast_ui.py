"""The Telegram side of broadcasts: texts, and how Telegram's answers map to outcomes."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import CopyMessage

from handlers.ui.broadcast import (
    TelegramBroadcaster,
    duration_text,
    finished_text,
    progress_text,
)
from services.broadcast import DeliveryOutcome, RetryLater, SourceMissing
from services.storage import Broadcast

METHOD = CopyMessage(chat_id=1, from_chat_id=2, message_id=3)


def broadcast(**fields: Any) -> Broadcast:
    values: dict[str, Any] = {
        "id": 7,
        "admin_id": 2,
        "from_chat_id": 2,
        "message_id": 3,
        "lang": "en",
        "state": "running",
        "total": 1000,
        "cursor": 0,
        "delivered": 0,
        "blocked": 0,
        "failed": 0,
        "progress_message_id": 9,
        "created_at": 1000.0,
        "updated_at": 1000.0,
        "finished_at": None,
    }
    values.update(fields)
    return Broadcast(**values)


@pytest.mark.parametrize(
    ("seconds", "en", "ru"),
    [
        (0.2, "1 s", "1 с"),
        (42, "42 s", "42 с"),
        (60, "1 min", "1 мин"),
        (400, "7 min", "7 мин"),
        (3 * 3600 + 12 * 60, "3 h 12 min", "3 ч 12 мин"),
    ],
)
def test_durations(seconds: float, en: str, ru: str) -> None:
    assert duration_text("en", seconds) == en
    assert duration_text("ru", seconds) == ru


def test_progress_counts_everyone_handled_and_the_time_left() -> None:
    text = progress_text(broadcast(total=10_000, delivered=2400, blocked=80, failed=20), rate=25)
    assert text.startswith("📣 Broadcast #7: 2,500 of 10,000 (25%)")
    assert "delivered 2,400" in text and "blocked the bot 80" in text and "failed 20" in text
    assert "about 5 min left" in text  # 7,500 more at 25/s


def test_progress_never_passes_100_percent_when_users_join_midway() -> None:
    text = progress_text(broadcast(total=10, delivered=12), rate=25)
    assert "12 of 12 (100%)" in text


def test_progress_of_an_empty_broadcast() -> None:
    assert "0 of 0 (100%)" in progress_text(broadcast(total=0), rate=25)


def test_final_reports() -> None:
    done = finished_text(broadcast(state="done", delivered=990, blocked=10, finished_at=1400.0))
    assert done.startswith("✅ Broadcast #7 finished (7 min).")
    assert "delivered 990" in done and "blocked the bot 10" in done
    stopped = finished_text(broadcast(state="stopped", lang="ru", finished_at=1030.0))
    assert stopped.startswith("⏹ Рассылка №7 остановлена (30 с).")
    failed = finished_text(broadcast(state="failed", finished_at=1001.0))
    assert "broke off" in failed and "was deleted" in failed


class StubBot:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.calls: list[tuple[int, int, int]] = []

    async def copy_message(self, chat_id: int, from_chat_id: int, message_id: int) -> object:
        self.calls.append((chat_id, from_chat_id, message_id))
        if self.error is not None:
            raise self.error
        return object()


async def copy_with(error: Exception | None) -> DeliveryOutcome:
    bot = StubBot(error)
    broadcaster = TelegramBroadcaster(bot, rate=25)  # type: ignore[arg-type]
    outcome = await broadcaster.copy(1, 2, 3)
    assert bot.calls == [(1, 2, 3)]
    return outcome


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, DeliveryOutcome.DELIVERED),
        (TelegramForbiddenError(METHOD, "Forbidden: bot was blocked by the user"), "blocked"),
        (TelegramForbiddenError(METHOD, "Forbidden: user is deactivated"), "blocked"),
        (TelegramBadRequest(METHOD, "Bad Request: chat not found"), "blocked"),
        (TelegramBadRequest(METHOD, "Bad Request: PEER_ID_INVALID"), "blocked"),
        (TelegramBadRequest(METHOD, "Bad Request: message is too long"), "failed"),
    ],
)
async def test_telegram_answers_map_to_outcomes(error: Exception | None, outcome: str) -> None:
    assert await copy_with(error) == outcome


async def test_a_429_and_network_trouble_ask_to_retry_later() -> None:
    with pytest.raises(RetryLater) as wait:
        await copy_with(TelegramRetryAfter(METHOD, "Too Many Requests", retry_after=7))
    assert wait.value.seconds == 7
    for error in (
        TelegramNetworkError(METHOD, "connection reset"),
        TelegramServerError(METHOD, "Internal Server Error"),
    ):
        with pytest.raises(RetryLater):
            await copy_with(error)


async def test_a_deleted_source_is_reported() -> None:
    with pytest.raises(SourceMissing):
        await copy_with(TelegramBadRequest(METHOD, "Bad Request: message to copy not found"))
