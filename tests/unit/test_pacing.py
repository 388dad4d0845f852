from __future__ import annotations

from services.pacing import DraftBudget, KeyedPacer, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_burst_then_spaces_requests() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=1.0, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == 1.0
    assert bucket.reserve() == 2.0  # queued in arrival order
    clock.now = 10
    assert bucket.reserve() == 0.0


def test_pacer_applies_global_and_per_chat_limits() -> None:
    clock = Clock()
    pacer = KeyedPacer(30, 1.0, key_burst=1, clock=clock)
    assert pacer.delay_for(1) == 0.0
    assert pacer.delay_for(1) == 1.0  # same chat: one per second
    assert pacer.delay_for(2) == 0.0  # another chat is not held up
    delays = [pacer.delay_for(100 + i) for i in range(40)]
    assert max(delays) > 0.2  # past the global burst of 30, sends are spread out


def test_group_chats_get_twenty_per_minute() -> None:
    clock = Clock()
    pacer = KeyedPacer(30, 1.0, clock=clock)
    delays = [pacer.delay_for(-5, group=True) for _ in range(21)]
    assert delays[:20] == [0.0] * 20 or max(delays[:20]) < 1
    assert delays[20] >= 2.9


def test_idle_chat_state_is_forgotten() -> None:
    clock = Clock()
    pacer = KeyedPacer(1000, 1.0, max_keys=100, clock=clock)
    for chat in range(100):
        pacer.delay_for(chat)
    clock.now = 100  # everyone idle: buckets refilled
    pacer.delay_for(10_000)
    assert len(pacer) <= 2


def test_draft_budget_skips_instead_of_waiting() -> None:
    clock = Clock()
    budget = DraftBudget(4, 1, clock=clock)
    assert [budget.allow() for _ in range(6)] == [True] * 4 + [False] * 2
    assert budget.skipped == 2
    clock.now = 0.5
    assert [budget.allow() for _ in range(3)] == [True, True, False]


def test_progress_drafts_take_a_small_share() -> None:
    clock = Clock()
    budget = DraftBudget(10, 2, clock=clock)
    # A crowd of waiting users gets two progress drafts a second ...
    assert sum(budget.allow(progress=True) for _ in range(300)) == 2
    # ... and answers being written still have the rest of the drafts' budget.
    assert sum(budget.allow() for _ in range(300)) == 8
    sent = 0
    for tick in range(1, 101):  # 10 s of 300 waiters asking every 0.1 s
        clock.now = 1 + tick / 10
        sent += sum(budget.allow(progress=True) for _ in range(300))
    assert 19 <= sent <= 21


def test_drafts_use_only_what_messages_leave_of_the_overall_budget() -> None:
    clock = Clock()
    pacer = KeyedPacer(30, 1.0, clock=clock)
    budget = DraftBudget(100, 100, overall=pacer, clock=clock)
    assert sum(budget.allow() for _ in range(100)) == 30  # the overall burst, then nothing
    clock.now = 1.0
    # Messages waiting for their turn have booked the overall budget ahead: no drafts.
    for chat in range(40):
        pacer.delay_for(chat)
    assert not budget.allow()
    clock.now = 3.0
    assert budget.allow()
