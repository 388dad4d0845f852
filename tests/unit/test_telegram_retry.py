"""DeliveryRetry: which calls are sent again, on which errors, after which waits, how often."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import (
    CopyMessage,
    EditMessageText,
    GetUpdates,
    SendChatAction,
    SendMessage,
    SendMessageDraft,
    SendRichMessage,
    SendVoice,
    TelegramMethod,
)
from aiogram.types import BufferedInputFile, InputRichMessage

from bot.telegram_retry import ANSWER_METHODS, DeliveryRetry, backoff_delays

TOKEN = "42:SeCrEt"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Script:
    """make_request that raises the scripted errors in turn, then succeeds."""

    def __init__(self, *errors: Exception, clock: Clock | None = None, cost: float = 0.0) -> None:
        self.errors = list(errors)
        self.attempts = 0
        self.clock = clock
        self.cost = cost  # seconds each attempt takes on `clock`

    async def __call__(self, bot: Bot, method: TelegramMethod[Any]) -> Any:
        self.attempts += 1
        if self.clock is not None:
            self.clock.now += self.cost
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture
def bot() -> Bot:
    return Bot(TOKEN)


def retry(sleeps: list[float], **kwargs: Any) -> DeliveryRetry:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return DeliveryRetry(sleep=sleep, **kwargs)


SEND = SendMessage(chat_id=5, text="answer")


def network(method: TelegramMethod[Any] = SEND) -> TelegramNetworkError:
    return TelegramNetworkError(method=method, message="ServerDisconnectedError: gone")


def server(status: int, method: TelegramMethod[Any] = SEND) -> TelegramServerError:
    return TelegramServerError(method=method, message=f"Internal Server Error {status}")


def test_backoff_doubles() -> None:
    assert backoff_delays(0.5, 3) == (0.5, 1.0, 2.0)
    assert backoff_delays(0.5, 0) == ()


async def test_transport_errors_and_5xx_are_retried_with_backoff(bot: Bot) -> None:
    sleeps: list[float] = []
    script = Script(server(500), server(502), network())
    assert await retry(sleeps)(script, bot, SEND) == "ok"
    assert script.attempts == 4
    assert sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    "method",
    [
        SEND,
        SendRichMessage(chat_id=5, rich_message=InputRichMessage(markdown="**a**")),
        EditMessageText(chat_id=-100, message_id=3, text="final"),
        SendVoice(chat_id=5, voice=BufferedInputFile(b"ogg", "a.ogg")),
    ],
)
async def test_answer_carrying_methods_are_retried(bot: Bot, method: TelegramMethod[Any]) -> None:
    script = Script(network(method))
    assert await retry([])(script, bot, method) == "ok"
    assert script.attempts == 2


def test_the_answer_carrying_methods() -> None:
    assert {"sendMessage", "sendRichMessage", "editMessageText", "sendVoice", "sendPhoto"} <= (
        ANSWER_METHODS
    )
    assert not {"sendMessageDraft", "sendRichMessageDraft", "sendChatAction"} & ANSWER_METHODS
    assert not {"copyMessage", "getUpdates"} & ANSWER_METHODS


@pytest.mark.parametrize(
    "method",
    [
        SendMessageDraft(chat_id=5, draft_id=1, text="dra"),
        SendChatAction(chat_id=5, action="typing"),
        CopyMessage(chat_id=5, from_chat_id=6, message_id=1),
        GetUpdates(offset=1, timeout=30),
    ],
)
async def test_other_methods_are_not_retried(bot: Bot, method: TelegramMethod[Any]) -> None:
    sleeps: list[float] = []
    script = Script(network(method))
    with pytest.raises(TelegramNetworkError):
        await retry(sleeps)(script, bot, method)
    assert (script.attempts, sleeps) == (1, [])


@pytest.mark.parametrize(
    "error",
    [
        TelegramBadRequest(method=SEND, message="Bad Request: message is too long"),
        TelegramRetryAfter(method=SEND, message="Too Many Requests", retry_after=3),
    ],
)
async def test_other_errors_are_not_retried(bot: Bot, error: Exception) -> None:
    script = Script(error)
    with pytest.raises(type(error)):
        await retry([])(script, bot, SEND)
    assert script.attempts == 1


async def test_gives_up_after_the_last_retry_with_one_warning(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    sleeps: list[float] = []
    script = Script(*(server(500) for _ in range(10)))
    caplog.set_level(logging.INFO, logger="bot.telegram_retry")
    with pytest.raises(TelegramServerError):
        await retry(sleeps)(script, bot, SEND)
    assert script.attempts == 4 and sleeps == [0.5, 1.0, 2.0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and len(infos) == 3
    line = warnings[0].getMessage()
    assert "sendMessage" in line and "chat 5" in line and "4 attempts" in line
    assert "TelegramServerError" in line and "500" in line
    assert all(
        "SeCrEt" not in r.getMessage() and "answer" not in r.getMessage() for r in caplog.records
    )


async def test_total_time_is_bounded(bot: Bot) -> None:
    # Each attempt times out after 10 s: with a 15 s bound only one retry fits.
    clock = Clock()
    sleeps: list[float] = []
    script = Script(*(network() for _ in range(10)), clock=clock, cost=10.0)
    with pytest.raises(TelegramNetworkError):
        await retry(sleeps, max_total=15.0, clock=clock)(script, bot, SEND)
    assert script.attempts == 2 and sleeps == [0.5]
