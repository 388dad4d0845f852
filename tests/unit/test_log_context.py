"""Log lines carry the update they were written for, also from the tasks the handling starts,
and each answer leaves one line with its status, model and latency (never its text)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiogram.types import Chat, Update, User

from bot.log_context import LogContext, log_answer
from bot.logging_setup import setup_logging
from services.chat import ChatInput, Reply, ReplyOutcome, ReplyStatus


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging("INFO", ["123456:SECRET-BOT-TOKEN"], "json")
    out = io.StringIO()
    root.handlers[0].setStream(out)  # type: ignore[attr-defined]
    try:
        yield out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def records(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_lines_written_for_an_update_carry_its_id_chat_and_user(lines: io.StringIO) -> None:
    log = logging.getLogger("bot.test")

    async def handler(event: Any, data: dict[str, Any]) -> None:
        log.info("in the handler")

        async def later() -> None:  # an answer's task, started by the handler
            await asyncio.sleep(0)
            log.info("in a task the handler started")

        await asyncio.create_task(later())

    data = {
        "event_chat": Chat(id=-100, type="supergroup"),
        "event_from_user": User(id=42, is_bot=False, first_name="A"),
    }
    await LogContext()(handler, Update(update_id=7), data)
    log.info("after the update")
    first, second, after = records(lines)
    for line in (first, second):
        assert (line["update_id"], line["chat"], line["user"]) == (7, -100, 42)
    assert "update_id" not in after


def test_one_line_per_answer_with_status_model_and_latency(lines: io.StringIO) -> None:
    request = ChatInput(chat_id=5, thread_id=None, user_id=6, text="a private question")
    reply = Reply(1, request, "openai/gpt-4o-mini")
    outcome = ReplyOutcome(ReplyStatus.COMPLETE, "a private answer", reply.model)
    log_answer(reply, outcome)
    (line,) = records(lines)
    assert line["message"].startswith("answer complete in ")
    assert (line["chat"], line["user"], line["model"]) == (5, 6, "openai/gpt-4o-mini")
    assert isinstance(line["latency"], float)
    assert "private" not in json.dumps(line)  # neither the question nor the answer
