"""Reading a question off a Telegram message: /ask, commands naming bots, the replied-to
message and its author, the speaker in groups."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram.types import Message, User

from handlers import get_routers
from handlers.incoming import (
    addressed_question,
    command_mention,
    private_caption,
    question_from,
    quote_of,
)
from services.questions import Quote
from services.storage import UserRecord
from services.users import Profile

BOT_ID = 42
ME = User(id=BOT_ID, is_bot=True, first_name="Bot", username="TheBot")
ALICE = {"id": 1, "is_bot": False, "first_name": "Alice", "last_name": "A"}
BOB = {"id": 2, "is_bot": False, "first_name": "Bob"}
BOT = {"id": BOT_ID, "is_bot": True, "first_name": "Bot", "username": "TheBot"}


def message(
    text: str | None = "hi", *, chat_type: str = "supergroup", sender: dict = ALICE, **extra: Any
) -> Message:
    data: dict[str, Any] = {
        "message_id": 10,
        "date": 0,
        "chat": {"id": -100 if chat_type != "private" else sender["id"], "type": chat_type},
        "from": sender,
        **extra,
    }
    if text is not None:
        data["text"] = text
    return Message.model_validate(data)


def replied(sender: dict = BOB, **fields: Any) -> dict[str, Any]:
    return {
        "message_id": 5,
        "date": 0,
        "chat": {"id": -100, "type": "supergroup"},
        "from": sender,
        **fields,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/help@TheBot", "TheBot"),
        ("/model@other_bot gpt", "other_bot"),
        ("/help", None),
        ("/@TheBot", None),  # no command at all
        ("hello @TheBot", None),
        ("/", None),
    ],
)
def test_command_mention(text: str, expected: str | None) -> None:
    assert command_mention(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ask what is 2+2?", "what is 2+2?"),
        ("/ask@thebot  what?", "what?"),  # the bot's name in any case
        ("/ask\nline one\nline two", "line one\nline two"),
        ("/ask", ""),  # addressed, with nothing asked (a picture alone: describe it)
        ("/ask@other_bot what?", None),
        ("/asking what?", None),
    ],
)
def test_ask_in_a_caption_addresses_the_bot(text: str, expected: str | None) -> None:
    assert addressed_question(message(None, caption=text), ME) == expected


def test_private_captions() -> None:
    assert private_caption("what is this?", ME) == "what is this?"
    assert private_caption("/ask what is this?", ME) == "what is this?"
    assert private_caption("/sticker@other_bot", ME) is None
    assert private_caption("/whatever", ME) == "/whatever"  # a caption, as before


def test_a_reply_to_another_persons_message_is_quoted_with_their_name() -> None:
    asked = message("is that so?", reply_to_message=replied(text="the earth is flat"))
    assert quote_of(asked, BOT_ID) == Quote("Bob", "the earth is flat")
    captioned = message("and this?", reply_to_message=replied(ALICE, caption="my cat"))
    assert quote_of(captioned, BOT_ID) == Quote("Alice A", "my cat")


def test_the_part_a_user_quoted_is_what_they_mean() -> None:
    asked = message(
        "why?",
        reply_to_message=replied(text="one. two. three."),
        quote={"text": "two.", "position": 5},
    )
    assert quote_of(asked, BOT_ID) == Quote("Bob", "two.")


def test_a_forward_is_quoted_under_its_original_author() -> None:
    origin = {"type": "user", "date": 0, "sender_user": BOB}
    own = message(
        "translate it",
        chat_type="private",
        reply_to_message=replied(ALICE, text="hola", forward_origin=origin),
    )
    assert quote_of(own, BOT_ID) == Quote("Bob", "hola")
    channel = {
        "type": "channel",
        "date": 0,
        "chat": {"id": -1009, "type": "channel", "title": "News"},
        "message_id": 3,
    }
    post = message(
        "true?", reply_to_message=replied(ALICE, text="big news", forward_origin=channel)
    )
    assert quote_of(post, BOT_ID) == Quote("News", "big news")


def test_no_quote_for_the_bots_own_answer_a_topic_or_a_message_without_text() -> None:
    assert quote_of(message("hi"), BOT_ID) is None
    assert quote_of(message("more", reply_to_message=replied(BOT, text="answer")), BOT_ID) is None
    topic = replied(BOB, forum_topic_created={"name": "t", "icon_color": 1})
    assert quote_of(message("q", reply_to_message=topic), BOT_ID) is None
    sticker_less = replied(BOB)  # no text, no caption
    assert quote_of(message("q", reply_to_message=sticker_less), BOT_ID) is None


class FakeBot:
    id = BOT_ID


def profile(user_id: int) -> Profile:
    user = UserRecord(user_id, None, None, "en", None, None, None, None, 0.0)
    return Profile(user=user, lang="en", is_admin=False)


def test_a_group_question_carries_its_speaker_and_a_private_one_does_not() -> None:
    group = question_from(message("hi"), FakeBot(), profile(1), "hi")  # type: ignore[arg-type]
    assert (group.chat_id, group.user_id, group.speaker, group.quote) == (-100, 1, "Alice A", None)
    private = message("hi", chat_type="private", reply_to_message=replied(text="x"))
    asked = question_from(private, FakeBot(), profile(1), "hi", spoken=True)  # type: ignore[arg-type]
    assert (asked.chat_id, asked.speaker, asked.quote, asked.spoken) == (
        1,
        None,
        Quote("Bob", "x"),
        True,
    )
    anonymous = message("hi", sender_chat={"id": -100, "type": "supergroup", "title": "The group"})
    assert question_from(anonymous, FakeBot(), profile(1), "hi").speaker == "The group"  # type: ignore[arg-type]


def test_every_paid_handler_carries_its_spend_flag() -> None:
    # The spend guard (ban, access, flood, quota) runs for the handlers flagged so, only.
    spends: dict[str, set[str | None]] = {}
    for router in get_routers():
        for each in router.chain_tail:
            for handler in each.message.handlers:
                name = getattr(handler.callback, "__name__", "")
                spends.setdefault(name, set()).add(handler.flags.get("spends"))
    for name in ("private_question", "group_question", "ask_command", "voice_question"):
        assert spends[name] == {"chat"}, name
    # The parts of a group album nobody addressed to the bot spend nothing by themselves.
    assert spends["image_question"] == {"chat", None}
    assert spends["image_command"] == {"image"}
    assert spends["video_command"] == {"video"}
    assert spends["unknown_command"] == {None}
