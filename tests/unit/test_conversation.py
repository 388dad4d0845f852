from __future__ import annotations

from services.conversation import plan_budget, select_recent
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
