from __future__ import annotations

from services.conversation import ConversationService, plan_budget, select_recent
from services.storage import StoredMessage


def msg(role: str, tokens: int, i: int) -> StoredMessage:
    return StoredMessage(role=role, content=f"{role}{i}", tokens=tokens, id=i)


def test_budget_leaves_room_for_answer_and_margin() -> None:
    b = plan_budget(128_000, 2048)
    assert b.max_tokens == 2048
    assert b.history_tokens == 128_000 - 2048 - 4000
    small = plan_budget(1024, 2048)
    assert small.max_tokens == 256  # a quarter of a small window, not more than it
    assert 0 < small.history_tokens < 1024 - 256


def test_select_recent_keeps_newest_whole_messages_in_order() -> None:
    history = [msg("user" if i % 2 == 0 else "assistant", 10, i) for i in range(10)]
    newest_first = list(reversed(history))
    kept = select_recent(newest_first, 45)
    # 4 newest fit (40 tokens); the oldest of them would be an assistant turn... ids 6..9
    assert [m.id for m in kept] == [6, 7, 8, 9]
    kept = select_recent(newest_first, 35)
    # ids 7,8,9 fit, but history must not start with an answer: id 7 is an assistant turn
    assert [m.id for m in kept] == [8, 9]
    assert select_recent(newest_first, 5) == []
    assert [m.id for m in select_recent(newest_first, 10_000)] == list(range(10))


class PagedStorage:
    """A conversation of `count` 10-token messages; records the size of each page asked."""

    def __init__(self, count: int) -> None:
        self.messages = [  # oldest first, starting with a question
            msg("user" if i % 2 else "assistant", 10, i) for i in range(1, count + 1)
        ]
        self.pages: list[int] = []

    async def active_history(
        self, chat_id: int, thread_id: int | None, limit: int
    ) -> tuple[int, list[StoredMessage]]:
        return 1, await self.recent_messages(1, limit)

    async def recent_messages(
        self, conversation_id: int, limit: int, before_id: int | None = None
    ) -> list[StoredMessage]:
        self.pages.append(limit)
        older = [m for m in self.messages if before_id is None or (m.id or 0) < before_id]
        return older[-limit:]


class Catalog:
    async def context_length(self, model: str, default: int) -> int:
        return 200_000


async def prepare_with(storage: PagedStorage) -> int:
    service = ConversationService(
        storage,  # type: ignore[arg-type]
        Catalog().context_length,
        max_tokens=1000,
        default_context_tokens=8192,
    )
    prepared = await service.prepare(
        chat_id=1, thread_id=None, user_id=1, model="m", system_prompt="s", user_text="q"
    )
    return len(prepared.turns) - 2  # without the system prompt and the question


async def test_a_long_history_is_read_in_growing_pages() -> None:
    storage = PagedStorage(1010)
    assert await prepare_with(storage) == 1010
    assert storage.pages == [64, 256, 704]  # 3 round trips, capped at HISTORY_MAX_MESSAGES


async def test_a_short_history_is_one_round_trip() -> None:
    storage = PagedStorage(10)
    assert await prepare_with(storage) == 10
    assert storage.pages == [64]
