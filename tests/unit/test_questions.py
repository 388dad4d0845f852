"""The question service's decisions: the prompt turn built from a question (quote, speaker,
pictures), the reply channels, which settings start the answer, what is recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.chat import ChatInput, DeliveryResult
from services.conversation import GONE_NOTE, ConversationService
from services.image_memory import is_image_placeholder
from services.questions import QUOTE_LIMIT, Question, QuestionService, Quote, chat_input
from services.storage import SQLiteStorage, StoredMessage, UserRecord


def question(text: str = "why?", **fields: Any) -> Question:
    return Question(chat_id=-100, thread_id=None, user_id=7, text=text, **fields)


def record(user_id: int, model: str | None = None) -> UserRecord:
    return UserRecord(
        user_id=user_id,
        username=None,
        first_name=None,
        language_code="en",
        language=None,
        model=model,
        system_prompt=None,
        temperature=None,
        created_at=0.0,
    )


def test_a_plain_question_is_its_text() -> None:
    built = chat_input(question("hello", speaker="Alice"))
    assert built == ChatInput(-100, None, 7, "hello", speaker="Alice")


def test_the_replied_to_message_comes_before_the_question_with_its_author() -> None:
    built = chat_input(question("is that true?", quote=Quote("Bob", "the moon is cheese")))
    assert built.text == '[In reply to Bob: "the moon is cheese"]\nis that true?'
    assert built.stored_text is None  # history keeps the same text (see chat_input)
    anonymous = chat_input(question("and?", quote=Quote(None, "  hi  ")))
    assert anonymous.text == '[In reply to: "hi"]\nand?'


def test_a_long_quote_is_capped_with_an_ellipsis() -> None:
    built = chat_input(question("summarise", quote=Quote("Bob", "word " * 1000)))
    quoted = built.text.split('"')[1]
    assert len(quoted) == QUOTE_LIMIT
    assert quoted.endswith("…")
    exact = "x" * QUOTE_LIMIT
    assert f'"{exact}"' in chat_input(question("q", quote=Quote("Bob", exact))).text


def test_a_picture_without_words_asks_the_implied_question_and_is_stored_as_a_placeholder() -> None:
    built = chat_input(question("", images=(b"jpeg",), implied="Describe the image."))
    assert built.text == "Describe the image."
    assert built.images == (b"jpeg",)
    assert built.stored_text == "[image]"
    album = chat_input(question("which is red?", images=(b"a", b"b"), implied="unused"))
    assert album.text == "which is red?"
    assert album.stored_text == "[2 images] which is red?"


def test_a_picture_replying_to_a_message_is_still_stored_as_an_image_turn() -> None:
    built = chat_input(
        question("", images=(b"jpeg",), implied="Describe.", quote=Quote("Bob", "x"))
    )
    assert built.text == '[In reply to Bob: "x"]\nDescribe.'
    assert built.stored_text == '[image] [In reply to Bob: "x"]'
    assert is_image_placeholder(built.stored_text)


class Voice:
    def __init__(self, can_speak: bool) -> None:
        self.can_speak = can_speak


class Chat:
    """Records what ChatService.start and record_delivery were given."""

    def __init__(self) -> None:
        self.started: list[tuple[ChatInput, UserRecord]] = []
        self.recorded: list[DeliveryResult] = []

    def start(self, request: ChatInput, user: UserRecord) -> str:
        self.started.append((request, user))
        return "reply"

    async def record_delivery(self, reply: object, result: DeliveryResult) -> None:
        self.recorded.append(result)


def service(*, can_speak: bool = True) -> tuple[QuestionService, Chat]:
    chat = Chat()
    return QuestionService(chat, Voice(can_speak)), chat  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "spoken", "can_speak", "expected"),
    [
        (None, False, True, (True, False)),  # auto: text for text
        (None, True, True, (False, True)),  # auto: voice for voice
        ("text", True, True, (True, False)),
        ("voice", False, True, (False, True)),
        ("both", False, True, (True, True)),
        # No provider speaks: whatever was chosen, the answer comes as text.
        (None, True, False, (True, False)),
        ("voice", False, False, (True, False)),
        ("both", True, False, (True, False)),
    ],
)
def test_reply_channels(
    mode: str | None, spoken: bool, can_speak: bool, expected: tuple[bool, bool]
) -> None:
    questions, _ = service(can_speak=can_speak)
    assert questions.channels(mode, spoken=spoken) == expected


def test_the_answer_starts_with_the_chats_settings_and_the_askers_reply_mode() -> None:
    questions, chat = service()
    group = record(-100, model="group-model")
    answer = questions.ask(question("hi", speaker="Alice", spoken=True), group, "both")
    [(request, settings)] = chat.started
    assert settings is group
    assert request.user_id == 7 and request.speaker == "Alice"
    assert (answer.text, answer.voice) == (True, True)
    assert answer.reply == "reply"


async def test_only_a_text_answer_that_did_not_fully_arrive_is_recorded() -> None:
    questions, chat = service()
    answer = questions.ask(question(), record(7), None)
    await questions.delivered(answer, DeliveryResult.FULL, spoken=False)
    # Spoken: the voice note was the whole answer, whatever became of the text.
    await questions.delivered(answer, DeliveryResult.NONE, spoken=True)
    assert chat.recorded == []
    await questions.delivered(answer, DeliveryResult.PARTIAL, spoken=False)
    assert chat.recorded == [DeliveryResult.PARTIAL]


# --- what history makes of these turns later ----------------------------------------


@pytest.fixture
async def storage() -> AsyncIterator[SQLiteStorage]:
    store = SQLiteStorage(":memory:")
    await store.connect()
    yield store
    await store.close()


async def context_length(model: str, default: int) -> int:
    return 200_000


@pytest.mark.parametrize(
    "stored",
    [
        "[image] Translate: bonjour",  # a private caption with ": " in it
        "Alice: [image] what is it?",  # a group turn
        '[image] [In reply to Bob: "look"]\nwhat: this?',
    ],
)
async def test_a_stored_image_turn_is_said_to_be_gone(storage: SQLiteStorage, stored: str) -> None:
    conversation = await storage.active_conversation(1, None)
    await storage.add_exchange(
        conversation,
        StoredMessage(role="user", content=stored, tokens=10, user_id=1),
        StoredMessage(role="assistant", content="a picture", tokens=5),
    )
    service = ConversationService(
        storage, context_length, max_tokens=1000, default_context_tokens=8192
    )
    prepared = await service.prepare(
        chat_id=1, thread_id=None, user_id=1, model="m", system_prompt="s", user_text="and now?"
    )
    assert prepared.turns[1].text == stored + GONE_NOTE
