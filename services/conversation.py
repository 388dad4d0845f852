"""Conversation history: what goes into each request, and what is stored after it.

A request carries the system prompt plus as many of the most recent turns as fit
the model's context window minus the answer's `max_tokens` and a safety margin.
Token counts are estimated once, when a message is stored, so building a request
only adds integers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from services.image_memory import RememberedImages, is_image_placeholder
from services.llm import ContextTooLong
from services.llm.turns import Role, Turn
from services.storage import Storage, StoredMessage, UsageRecord
from services.tokens import estimate_message_tokens

# Messages in the first storage round trip while filling the context budget; each further
# page is four times larger.
HISTORY_PAGE = 64
# Never fetch more than this many messages for one request, whatever the budget.
HISTORY_MAX_MESSAGES = 1024
# What an image costs in a vision request: providers bill roughly 250-1100 tokens for
# an image of up to 2048 px; the higher figure keeps trimmed requests inside the window.
IMAGE_TOKENS = 1100
GONE_NOTE = " (the image itself is no longer available; ask the user to send it again if needed)"
# An answer whose final message Telegram never took: kept in storage (its usage was paid),
# but left out of what the model is told, with its question (see `_recent_within`).
UNDELIVERED = "undelivered"
# An answer some of whose parts did not reach the user (who was told so).
PARTLY_DELIVERED = "partly_delivered"


# The model's context window in tokens, given its id and a default (the registry's).
ContextLength = Callable[[str, int], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class ContextBudget:
    context_tokens: int
    max_tokens: int
    history_tokens: int  # what the system prompt and all turns may take together


def plan_budget(context_tokens: int, max_tokens: int) -> ContextBudget:
    """Split a context window between the prompt and the answer.

    A model with a small window still gets room for history: the answer gets at
    most a quarter of the window. The margin absorbs the estimator's error and the
    per-request overhead that no estimate sees.
    """
    answer = max(16, min(max_tokens, context_tokens // 4))
    margin = max(64, context_tokens // 32)
    return ContextBudget(context_tokens, answer, max(0, context_tokens - answer - margin))


def select_recent(newest_first: Sequence[StoredMessage], budget: int) -> list[StoredMessage]:
    """Take whole messages, newest first, while they fit; return them oldest first.

    The kept history never starts with an assistant turn: an answer without its
    question only confuses the model.
    """
    kept: list[StoredMessage] = []
    used = 0
    for message in newest_first:
        if used + message.tokens > budget:
            break
        used += message.tokens
        kept.append(message)
    kept.reverse()
    while kept and kept[0].role != "user":
        kept.pop(0)
    return kept


def _is_image_turn(content: str) -> bool:
    """A stored image turn: "[image] …", or "Name: [image] …" in a group. (Checked as it is
    first: a private caption may hold ": " itself, as in "[image] Translate: …".)"""
    return is_image_placeholder(content) or is_image_placeholder(content.split(": ", 1)[-1])


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    conversation_id: int
    turns: list[Turn]  # provider-neutral: each provider builds its own wire shape
    max_tokens: int
    prompt_tokens: int  # estimated
    user_message: StoredMessage
    reattached_images: bool = False
    history_tokens: int = 0  # estimated tokens of the history turns sent


class ConversationService:
    def __init__(
        self,
        storage: Storage,
        context_length: ContextLength,
        *,
        max_tokens: int,
        default_context_tokens: int,
    ) -> None:
        self._storage = storage
        self._context_length = context_length
        self._max_tokens = max_tokens
        self._default_context = default_context_tokens

    async def prepare(
        self,
        *,
        chat_id: int,
        thread_id: int | None,
        user_id: int,
        model: str,
        system_prompt: str,
        user_text: str,
        images: Sequence[bytes] = (),
        speaker: str | None = None,
        stored_text: str | None = None,
        reattach: RememberedImages | None = None,
        history_limit: int | None = None,
    ) -> PreparedRequest:
        """Build the request. `stored_text` is what history keeps instead of `user_text`
        (a placeholder for an image turn); `reattach` re-sends recent images; `speaker` names
        who asks, where several people share the chat."""
        context = await self._context_length(model, self._default_context)
        budget = plan_budget(context, self._max_tokens)
        system_tokens = estimate_message_tokens("system", system_prompt)
        question = Turn("user", user_text, speaker, tuple(images))
        user_tokens = estimate_message_tokens("user", question.spoken_text()) + IMAGE_TOKENS * len(
            images
        )
        remaining = budget.history_tokens - system_tokens - user_tokens
        if reattach is not None:
            remaining -= IMAGE_TOKENS * len(reattach.images)
        if remaining < 0:
            raise ContextTooLong(
                None, f"message needs ~{user_tokens} tokens; the model's window is {context}"
            )
        # The conversation and its first page of history in one call.
        conversation_id, first_page = await self._storage.active_history(
            chat_id, thread_id, min(HISTORY_PAGE, HISTORY_MAX_MESSAGES)
        )
        if history_limit is not None:
            remaining = min(remaining, history_limit)
        history = await self._recent_within(conversation_id, remaining, first_page)
        turns: list[Turn] = [Turn("system", system_prompt)]
        reattached = False
        for m in history:
            role: Role = "assistant" if m.role == "assistant" else "user"
            if role == "user" and reattach is not None and m.content == reattach.placeholder:
                turns.append(Turn("user", m.content, images=reattach.images))
                reattached = True
            elif role == "user" and _is_image_turn(m.content):
                turns.append(Turn("user", m.content + GONE_NOTE))
            else:
                turns.append(Turn(role, m.content))
        turns.append(question)
        history_tokens = sum(m.tokens for m in history)
        used = system_tokens + user_tokens + history_tokens
        if reattached and reattach is not None:
            used += IMAGE_TOKENS * len(reattach.images)
        stored = stored_text if stored_text is not None else question.spoken_text()
        user_message = StoredMessage(
            role="user",
            content=stored,
            tokens=estimate_message_tokens("user", stored),
            user_id=user_id,
        )
        return PreparedRequest(
            conversation_id,
            turns,
            budget.max_tokens,
            used,
            user_message,
            reattached,
            history_tokens,
        )

    async def _recent_within(
        self, conversation_id: int, budget: int, first_page: list[StoredMessage]
    ) -> list[StoredMessage]:
        """The newest messages within `budget` tokens; `first_page` is the newest
        min(HISTORY_PAGE, HISTORY_MAX_MESSAGES), read already."""
        newest_first: list[StoredMessage] = []
        before_id: int | None = None
        used = 0
        size = HISTORY_PAGE
        # Set after an undelivered answer: its question (the next older message) goes too.
        # The user never saw the answer and was told to ask again; a question left without
        # its answer would also break the user/assistant alternation some providers require.
        skip_question = False
        while len(newest_first) < HISTORY_MAX_MESSAGES:
            size = min(size, HISTORY_MAX_MESSAGES - len(newest_first))
            if before_id is None:
                page = first_page
            else:
                page = await self._storage.recent_messages(
                    conversation_id, size, before_id=before_id
                )
            if not page:
                break
            for message in reversed(page):
                if message.role == "assistant" and message.status == UNDELIVERED:
                    skip_question = True
                    continue
                if skip_question:
                    skip_question = False
                    if message.role == "user":
                        continue
                newest_first.append(message)
                used += message.tokens
            if used > budget or len(page) < size:
                break
            before_id = page[0].id
            # A history longer than one page is likely much longer: each page fetches four
            # times more, so 1,000 messages take 3 round trips, not 16.
            size *= 4
        return select_recent(newest_first, budget)

    async def save_exchange(
        self,
        prepared: PreparedRequest,
        answer: str,
        *,
        status: str = "complete",
        usage: UsageRecord | None = None,
    ) -> None:
        """Store the question and its answer; with `usage`, the answer's usage record too, in
        the same write."""
        assistant = StoredMessage(
            role="assistant",
            content=answer,
            tokens=estimate_message_tokens("assistant", answer),
            status=status,
        )
        await self._storage.add_exchange(
            prepared.conversation_id, prepared.user_message, assistant, usage
        )

    async def mark_answer(self, conversation_id: int, answer: str, status: str) -> None:
        """Record what became of a stored answer's delivery (UNDELIVERED, PARTLY_DELIVERED)."""
        await self._storage.set_answer_status(conversation_id, answer, status)

    async def start_new(self, chat_id: int, thread_id: int | None) -> None:
        await self._storage.new_conversation(chat_id, thread_id)
