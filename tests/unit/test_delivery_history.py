"""History records what the user received: an undelivered answer is marked in storage and
left out of the model's context together with its question."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.conversation import UNDELIVERED, ConversationService
from services.storage import SQLiteStorage, StoredMessage


@pytest.fixture
async def storage() -> AsyncIterator[SQLiteStorage]:
    store = SQLiteStorage(":memory:")
    await store.connect()
    yield store
    await store.close()


def turn(role: str, content: str) -> StoredMessage:
    return StoredMessage(
        role=role, content=content, tokens=10, user_id=1 if role == "user" else None
    )


async def test_the_newest_matching_answer_is_marked(storage: SQLiteStorage) -> None:
    conversation = await storage.active_conversation(1, None)
    for question in ("q1", "q2"):
        await storage.add_exchange(conversation, turn("user", question), turn("assistant", "same"))
    assert await storage.set_answer_status(conversation, "same", UNDELIVERED)
    statuses = [m.status for m in await storage.recent_messages(conversation, 10)]
    assert statuses == ["complete", "complete", "complete", UNDELIVERED]
    assert not await storage.set_answer_status(conversation, "never said", UNDELIVERED)
    other = await storage.new_conversation(1, None)
    assert not await storage.set_answer_status(other, "same", UNDELIVERED)


class Catalog:
    async def context_length(self, model: str, default: int) -> int:
        return 200_000


async def history_sent(storage: SQLiteStorage) -> list[str]:
    service = ConversationService(
        storage,
        Catalog().context_length,
        max_tokens=1000,
        default_context_tokens=8192,
    )
    prepared = await service.prepare(
        chat_id=1, thread_id=None, user_id=1, model="m", system_prompt="s", user_text="now"
    )
    return [turn.text for turn in prepared.turns[1:-1]]


async def test_undelivered_answer_and_its_question_are_not_sent(storage: SQLiteStorage) -> None:
    conversation = await storage.active_conversation(1, None)
    for n in range(3):
        await storage.add_exchange(conversation, turn("user", f"q{n}"), turn("assistant", f"a{n}"))
    await storage.set_answer_status(conversation, "a1", UNDELIVERED)
    assert await history_sent(storage) == ["q0", "a0", "q2", "a2"]


class Pages:
    """Stored messages, oldest first, served newest-first in pages as SQLite does."""

    def __init__(self, messages: list[StoredMessage]) -> None:
        self.messages = messages
        self.pages = 0

    async def active_history(
        self, chat_id: int, thread_id: int | None, limit: int
    ) -> tuple[int, list[StoredMessage]]:
        return 1, await self.recent_messages(1, limit)

    async def recent_messages(
        self, conversation_id: int, limit: int, before_id: int | None = None
    ) -> list[StoredMessage]:
        self.pages += 1
        older = [m for m in self.messages if before_id is None or (m.id or 0) < before_id]
        return older[-limit:]


async def test_the_question_of_an_undelivered_answer_on_the_next_page_is_left_out() -> None:
    # 65 messages: the first page holds the newest 64, so the undelivered answer (id 2) ends
    # that page and its question (id 1) is read with the next one.
    messages = [
        StoredMessage(
            role="user" if i % 2 else "assistant",
            content=f"m{i}",
            tokens=10,
            status=UNDELIVERED if i == 2 else "complete",
            id=i,
        )
        for i in range(1, 66)
    ]
    storage = Pages(messages)
    sent = await history_sent(storage)  # type: ignore[arg-type]
    assert storage.pages == 2
    assert sent == [f"m{i}" for i in range(3, 66)]
