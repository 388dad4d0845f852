"""A big bot database, fast: the schema from the bot's own migrations, rows by bulk inserts.

Most users have a short history (10 messages); one in a hundred has a long one (about a
thousand), so both the typical request and the worst realistic one can be timed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.storage.sqlite import SQLiteStorage
from services.tokens import estimate_message_tokens

FIRST_USER = 10_000_000  # far from the ids the other scenarios use
TYPICAL_MESSAGES = 10

_QUESTIONS = (
    "How do I reverse a list in Python without changing the original one?",
    "Translate 'good morning, how are you today' into Spanish, please.",
    "What is the difference between a process and a thread, in two sentences?",
    "Give me three ideas for a birthday present for a friend who likes hiking.",
)
_ANSWERS = (
    "Use slicing: `items[::-1]` returns a new list in reverse order and leaves the original "
    "untouched. If you only need to iterate, `reversed(items)` avoids the copy altogether.",
    "Buenos días, ¿cómo estás hoy? In a more formal setting you could say: Buenos días, "
    "¿cómo está usted hoy?",
    "A process has its own memory space and resources; a thread runs inside a process and "
    "shares its memory with the other threads of that process, which makes it cheaper but "
    "requires synchronisation.",
    "1. A lightweight trekking pole set. 2. A good headlamp with a red-light mode. "
    "3. A guidebook or map set for a region they have not explored yet.",
)


@dataclass(frozen=True, slots=True)
class BigDatabase:
    path: Path
    users: int
    messages: int
    heavy_users: int
    heavy_messages: int  # messages in each heavy user's conversation
    seconds: float  # how long generation took

    def typical_user(self, index: int) -> int:
        return FIRST_USER + self.heavy_users + index % (self.users - self.heavy_users)

    def heavy_user(self, index: int) -> int:
        return FIRST_USER + index % self.heavy_users


async def generate(path: Path, users: int, messages: int) -> BigDatabase:
    started = time.perf_counter()
    path.unlink(missing_ok=True)  # noqa: ASYNC240 - once, before anything runs
    # The schema exactly as the bot creates it.
    storage = SQLiteStorage(path)
    await storage.connect()
    await storage.close()

    heavy_users = max(1, users // 100)
    typical_total = TYPICAL_MESSAGES * (users - heavy_users)
    heavy_messages = max(2, (messages - typical_total) // heavy_users)
    heavy_messages -= heavy_messages % 2  # whole exchanges

    db = sqlite3.connect(path, isolation_level=None)
    try:
        # WAL is a persistent property of the file; plain bulk loading is much faster
        # without a journal, and the bot's WAL mode is restored at the end.
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA cache_size = -262144")
        db.execute("BEGIN")
        now = time.time() - 86400 * 30
        db.executemany(
            "INSERT INTO users (user_id, username, first_name, language_code, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                (FIRST_USER + i, f"user{i}", "User", "ru" if i % 3 == 0 else "en", now + i)
                for i in range(users)
            ),
        )
        db.executemany(
            "INSERT INTO conversations (id, chat_id, thread_id, created_at) VALUES (?, ?, 0, ?)",
            ((i + 1, FIRST_USER + i, now + i) for i in range(users)),
        )
        db.executemany(
            "INSERT INTO messages (conversation_id, user_id, role, content, tokens, status, "
            "created_at) VALUES (?, ?, ?, ?, ?, 'complete', ?)",
            _message_rows(users, heavy_users, heavy_messages, now),
        )
        db.execute("COMMIT")
        total = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        db.execute("PRAGMA journal_mode = WAL")
    finally:
        db.close()
    return BigDatabase(
        path=path,
        users=users,
        messages=int(total),
        heavy_users=heavy_users,
        heavy_messages=heavy_messages,
        seconds=time.perf_counter() - started,
    )


def _message_rows(
    users: int, heavy_users: int, heavy_messages: int, now: float
) -> Iterator[tuple[int, int | None, str, str, int, float]]:
    questions = [(q, estimate_message_tokens("user", q)) for q in _QUESTIONS]
    answers = [(a, estimate_message_tokens("assistant", a)) for a in _ANSWERS]
    for index in range(users):
        conversation = index + 1
        user_id = FIRST_USER + index
        count = heavy_messages if index < heavy_users else TYPICAL_MESSAGES
        at = now + index
        for turn in range(count // 2):
            q, q_tokens = questions[(index + turn) % len(questions)]
            a, a_tokens = answers[(index + turn) % len(answers)]
            yield conversation, user_id, "user", q, q_tokens, at
            yield conversation, None, "assistant", a, a_tokens, at + 1
            at += 2
