"""The "typing…" loop of private answers: it sleeps until something changes, never polls
an answer that is already on screen, and keeps its timing (issue 12)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from handlers.ui.answer import RenderConfig, Target, stream_private
from services.chat import ChatInput, Reply, ReplyOutcome, ReplyStatus

CHAT = 4242
DELAY = 0.1


class RecordingBot:
    """The two Bot methods a private answer uses while it streams, timestamped."""

    def __init__(self) -> None:
        self.actions: list[float] = []
        self.drafts: list[float] = []

    async def send_chat_action(self, chat_id: int, action: str, **_: Any) -> bool:
        self.actions.append(time.monotonic())
        return True

    async def send_rich_message_draft(self, **_: Any) -> bool:
        self.drafts.append(time.monotonic())
        return True


def _reply() -> Reply:
    return Reply(7, ChatInput(chat_id=CHAT, thread_id=None, user_id=CHAT, text="q"), "m")


def _typing_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__name__", "") == "_typing_until"
    ]


async def _until(condition: Any, timeout: float = 2.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - a test watching a fake's records
            await asyncio.sleep(0.005)


def _render(bot: RecordingBot, reply: Reply) -> asyncio.Task[ReplyOutcome]:
    config = RenderConfig(draft_interval=0.01, typing_delay=DELAY)
    return asyncio.create_task(stream_private(bot, reply, Target(CHAT), "en", config))  # type: ignore[arg-type]


async def _finish(reply: Reply, render: asyncio.Task[ReplyOutcome]) -> None:
    reply._finish(ReplyOutcome(ReplyStatus.COMPLETE, reply.text, reply.model))
    await asyncio.wait_for(render, 2)


async def test_typing_ends_as_soon_as_there_is_text_to_draw() -> None:
    # Not at its next wake-up: with one waiting per question in a backlog, a loop that wakes
    # only to find the answer on screen was a quarter of the bot's CPU (issue 12's profile).
    bot = RecordingBot()
    reply = _reply()
    reply._start_work()
    render = _render(bot, reply)
    await asyncio.sleep(0.01)
    assert len(_typing_tasks()) == 1
    reply._append("Hello")
    await _until(lambda: bot.drafts)
    await asyncio.sleep(0)  # the cancellation is delivered on the task's next step
    assert _typing_tasks() == []
    await _finish(reply, render)
    assert bot.actions == []  # the text came well within the delay: no chat action


async def test_a_queued_answer_shows_typing_a_delay_after_its_work_starts() -> None:
    bot = RecordingBot()
    reply = _reply()  # queued: working_since is not set yet
    render = _render(bot, reply)
    await asyncio.sleep(2.5 * DELAY)
    assert bot.actions == []  # nothing while queued: the earlier answer is on screen
    reply._start_work()
    started = reply.working_since
    await _until(lambda: bot.actions)
    # The start of work is awaited, not polled for: the action is timed from the start.
    assert started is not None
    assert DELAY * 0.9 <= bot.actions[0] - started <= DELAY + 0.05
    reply._append("Hi")
    await _until(lambda: bot.drafts)
    await _finish(reply, render)
    assert len(bot.actions) == 1
    assert _typing_tasks() == []
