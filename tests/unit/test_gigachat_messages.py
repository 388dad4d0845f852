"""draft_messages: turns in GigaChat's message shape (one system message first, one picture
per message, the newest ten pictures per request), and the small name/finish helpers."""

from __future__ import annotations

from services.llm.gigachat.chat import (
    MAX_IMAGES,
    Draft,
    display_model,
    draft_messages,
    neutral_finish,
)
from services.llm.turns import Turn


def pic(n: int) -> bytes:
    return b"\xff\xd8jpeg-" + str(n).encode()


def test_plain_turns_keep_their_order_and_roles() -> None:
    turns = [Turn("user", "hi"), Turn("assistant", "hello"), Turn("user", "how are you?")]

    assert draft_messages(turns) == [
        Draft("user", "hi"),
        Draft("assistant", "hello"),
        Draft("user", "how are you?"),
    ]


def test_system_turns_become_one_message_that_comes_first() -> None:
    turns = [
        Turn("system", "Be brief."),
        Turn("user", "hi"),
        Turn("system", "Answer in French."),
        Turn("assistant", "salut"),
        Turn("system", "   "),  # nothing to say: not a paragraph of its own
    ]

    drafts = draft_messages(turns)

    assert drafts[0] == Draft("system", "Be brief.\n\nAnswer in French.")
    assert [d.role for d in drafts] == ["system", "user", "assistant"]


def test_a_system_turn_after_others_is_moved_first() -> None:
    drafts = draft_messages([Turn("user", "hi"), Turn("system", "Be brief.")])

    assert drafts == [Draft("system", "Be brief."), Draft("user", "hi")]


def test_no_system_message_without_system_turns() -> None:
    assert all(d.role != "system" for d in draft_messages([Turn("user", "hi")]))


def test_speakers_are_a_name_prefix() -> None:
    drafts = draft_messages([Turn("user", "hi all", speaker="Anna")])

    assert drafts == [Draft("user", "Anna: hi all")]


def test_a_picture_goes_with_its_text() -> None:
    drafts = draft_messages([Turn("user", "what is this?", images=(pic(1),))])

    assert drafts == [Draft("user", "what is this?", pic(1))]


def test_several_pictures_become_consecutive_messages_one_picture_each() -> None:
    turns = [Turn("user", "compare", images=(pic(1), pic(2), pic(3))), Turn("assistant", "ok")]

    assert draft_messages(turns) == [
        Draft("user", "compare", pic(1)),
        Draft("user", "(image 2)", pic(2)),
        Draft("user", "(image 3)", pic(3)),
        Draft("assistant", "ok"),
    ]


def test_a_picture_without_text_still_has_content() -> None:
    drafts = draft_messages([Turn("user", "", images=(pic(1),))])

    assert drafts == [Draft("user", "(image 1)", pic(1))]


def test_only_the_newest_ten_pictures_are_attached() -> None:
    turns = [
        Turn("user", "first", images=(pic(1), pic(2), pic(3))),
        Turn("assistant", "seen"),
        Turn("user", "more", images=tuple(pic(n) for n in range(4, 13))),  # 9 pictures
    ]

    drafts = draft_messages(turns)

    attached = [d.image for d in drafts if d.image is not None]
    assert len(attached) == MAX_IMAGES
    assert attached == [pic(n) for n in range(3, 13)]
    # The first turn keeps its text (without a picture); its dropped extra picture leaves no
    # message behind; its kept third picture rides on the text.
    assert drafts[0] == Draft("user", "first", pic(3))
    assert drafts[1] == Draft("assistant", "seen")
    assert drafts[2] == Draft("user", "more", pic(4))


def test_an_old_turn_whose_pictures_are_all_dropped_keeps_its_text() -> None:
    turns = [
        Turn("user", "old", images=(pic(0),)),
        Turn("user", "new", images=tuple(pic(n) for n in range(1, 11))),
    ]

    drafts = draft_messages(turns)

    assert drafts[0] == Draft("user", "old")
    assert sum(d.image is not None for d in drafts) == 10


def test_pictures_of_assistant_turns_are_not_attached() -> None:
    drafts = draft_messages([Turn("assistant", "here it is", images=(pic(1),))])

    assert drafts == [Draft("assistant", "here it is")]


def test_display_model_strips_the_version() -> None:
    assert display_model("GigaChat:2.0.28.2") == "GigaChat"
    assert display_model("GigaChat-2-Max") == "GigaChat-2-Max"


def test_finish_reasons_in_the_neutral_spelling() -> None:
    assert neutral_finish("blacklist") == "refused"
    assert neutral_finish("length") == "length"
    assert neutral_finish("stop") == "stop"
    assert neutral_finish("function_call") == "stop"
    assert neutral_finish(None) is None
