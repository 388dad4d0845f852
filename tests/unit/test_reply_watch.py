"""Reply.watch: when the renderer is told to redraw."""

from __future__ import annotations

import asyncio

from services.chat import ChatInput, Reply, ReplyOutcome, ReplyStatus


def _reply() -> Reply:
    return Reply(1, ChatInput(chat_id=5, thread_id=None, user_id=5, text="hi"), "m")


async def test_first_draft_is_not_held_back_by_the_interval() -> None:
    reply = _reply()
    redraws: list[str] = []
    redrawn = asyncio.Event()

    async def render() -> None:
        async for _ in reply.watch(interval=3600):
            redraws.append(reply.text)
            redrawn.set()

    task = asyncio.create_task(render())
    for _ in range(5):
        await asyncio.sleep(0)
    # Nothing to draw yet: a redraw now would also start the interval and hold the first
    # real draft back by a whole interval.
    assert redraws == []
    reply._append("Hel")
    await asyncio.wait_for(redrawn.wait(), 5)  # far below the 3600 s interval
    assert redraws == ["Hel"]
    reply._append("lo")  # within the interval: no redraw until the reply is done
    for _ in range(5):
        await asyncio.sleep(0)
    assert redraws == ["Hel"]
    reply._finish(ReplyOutcome(ReplyStatus.COMPLETE, "Hello", "m"))
    await asyncio.wait_for(task, 5)
