"""Questions in groups: /ask, commands naming bots, the replied-to message in the prompt,
speakers, and private and group conversations kept apart."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Bench, text_of
from tests.e2e.test_media import image_parts, png_bytes, send_photo

GROUP = -100600
ALICE = 6001
BOB = 6002


def group_message(bench: Bench, user: int, text: str, **kwargs: Any) -> dict[str, Any]:
    update = bench.telegram.send_message(
        user, text, chat_id=GROUP, chat_type="supergroup", first_name=f"user{user}", **kwargs
    )
    return update["message"]


async def group_answer(bench: Bench, count: int = 1) -> str:
    """The markdown of the `count`-th final answer in the group (the placeholder's last edit)."""
    finals = await bench.telegram.wait_for(
        "editMessageText", lambda c: "rich_message" in c.params, count=count, timeout=10
    )
    return str(finals[count - 1].params["rich_message"]["markdown"])


def last_prompt(bench: Bench) -> list[str]:
    """The contents of the last upstream request, system prompt left out."""
    return [str(m["content"]) for m in bench.upstream.chat_requests()[-1].json["messages"][1:]]


async def test_ask_answers_without_a_mention_and_names_the_asker(bench: Bench) -> None:
    username = bench.telegram.bot_username
    group_message(bench, ALICE, "/ask what is 2+2?")
    assert await group_answer(bench) == "Echo: user6001: what is 2+2?"
    group_message(bench, BOB, f"/ask@{username} and 3+3?")
    assert await group_answer(bench, 2) == "Echo: user6002: and 3+3?"
    # One shared history, each turn under its speaker's name.
    assert last_prompt(bench) == [
        "user6001: what is 2+2?",
        "Echo: user6001: what is 2+2?",
        "user6002: and 3+3?",
    ]


async def test_ask_with_nothing_gets_a_hint_and_costs_nothing(bench: Bench) -> None:
    group_message(bench, ALICE, "/ask")
    hint = await bench.telegram.wait_for("sendMessage", lambda c: c.chat_id == GROUP)
    assert "/ask what is a black hole?" in hint[0].params["text"]
    assert hint[0].params["reply_parameters"]["message_id"]  # it answers the one who asked
    bench.telegram.send_message(ALICE, "/ask")  # the same in a private chat
    await bench.telegram.wait_for("sendMessage", lambda c: c.chat_id == ALICE)
    assert not bench.upstream.chat_requests()


async def test_commands_for_other_bots_are_never_answered(bench: Bench) -> None:
    username = bench.telegram.bot_username
    for text in ("/ask@other_bot what?", "/model@other_bot", "/foo@other_bot", "/foo"):
        group_message(bench, ALICE, text)
    for text in ("/ask@other_bot what?", "/model@other_bot", "/foo@other_bot"):
        bench.telegram.send_message(ALICE, text)
    # A command naming this bot that it does not know gets a short pointer to /help.
    group_message(bench, ALICE, f"/foo@{username}")
    notice = await bench.telegram.wait_for("sendMessage", lambda c: c.chat_id == GROUP)
    assert "/help" in notice[0].params["text"]
    # The same in private, where a bare unknown command is surely for this bot.
    bench.telegram.send_message(ALICE, "/foo")
    await bench.telegram.wait_for("sendMessage", lambda c: c.chat_id == ALICE)
    final = await bench.ask(ALICE, "still there?")
    assert text_of(final) == "Echo: still there?"
    assert len(bench.telegram.calls_of("sendMessage", chat_id=GROUP)) == 1
    assert len(bench.finals(ALICE)) == 2  # the /help pointer and the answer
    assert len(bench.upstream.chat_requests()) == 1


async def test_chatter_is_not_answered_and_costs_nothing(bench: Bench) -> None:
    # With privacy mode off the bot sees every message of the group; it answers only the
    # ones addressed to it (with it on, Telegram sends only those in the first place).
    said = group_message(bench, ALICE, "lunch at noon?")
    group_message(bench, BOB, "sure", reply_to_message=said)
    group_message(bench, BOB, "/foo")
    group_message(bench, ALICE, f"ask @{bench.telegram.bot_username}")  # addressed: answered
    await group_answer(bench)
    assert len(bench.upstream.chat_requests()) == 1
    assert last_prompt(bench) == ["user6001: ask"]
    placeholders = bench.telegram.calls_of("sendMessage", chat_id=GROUP)
    assert len(placeholders) == 1


async def test_the_replied_to_message_and_its_author_are_in_the_prompt(bench: Bench) -> None:
    username = bench.telegram.bot_username
    claim = group_message(bench, ALICE, "The Great Wall is visible from space.\nTrust me.")
    group_message(bench, BOB, f"@{username} is that true?", reply_to_message=claim)
    await group_answer(bench)
    quoted = (
        '[In reply to user6001: "The Great Wall is visible from space.\nTrust me."]\nis that true?'
    )
    assert last_prompt(bench)[-1] == f"user6002: {quoted}"
    # History keeps the quote: a later turn still knows what "that" was.
    group_message(bench, BOB, f"@{username} why do people believe it?")
    await group_answer(bench, 2)
    assert last_prompt(bench)[0] == f"user6002: {quoted}"

    # /ask replying to a long message: the quote is capped.
    long_post = group_message(bench, ALICE, "word " * 400)
    group_message(bench, BOB, "/ask summarise", reply_to_message=long_post)
    await group_answer(bench, 3)
    asked = last_prompt(bench)[-1]
    assert asked.startswith('user6002: [In reply to user6001: "word word')
    assert asked.endswith('…"]\nsummarise')
    assert len(asked) < 1100


async def test_a_reply_to_the_bots_own_answer_quotes_nothing(bench: Bench) -> None:
    username = bench.telegram.bot_username
    group_message(bench, ALICE, f"@{username} hello")
    await group_answer(bench)
    answer = bench.telegram.sent_messages(GROUP)[-1]
    group_message(bench, ALICE, "and then?", reply_to_message=answer)
    await group_answer(bench, 2)
    assert last_prompt(bench) == ["user6001: hello", "Echo: user6001: hello", "user6001: and then?"]


async def test_private_replies_quote_too(bench: Bench) -> None:
    forwarded = bench.telegram.send_message(ALICE, "bonjour tout le monde")["message"]
    await bench.telegram.wait_for("sendRichMessage", lambda c: c.chat_id == ALICE)
    final = await bench.ask(ALICE, "translate it", reply_to_message=forwarded)
    assert text_of(final) == 'Echo: [In reply to User: "bonjour tout le monde"]\ntranslate it'


async def test_private_and_group_conversations_never_mix(bench: Bench) -> None:
    username = bench.telegram.bot_username
    await bench.ask(ALICE, "my private secret")
    group_message(bench, ALICE, f"@{username} what did I tell you?")
    await group_answer(bench)
    assert last_prompt(bench) == ["user6001: what did I tell you?"]
    await bench.ask(ALICE, "and here?")
    assert last_prompt(bench) == ["my private secret", "Echo: my private secret", "and here?"]


async def test_a_photo_captioned_ask_is_a_question_in_groups_and_private(bench: Bench) -> None:
    send_photo(bench, png_bytes(), user=ALICE, caption="/ask what colour?", chat_id=GROUP)
    await group_answer(bench)
    assert image_parts(bench.upstream.chat_requests()[-1].json)[0]["text"] == "U: what colour?"
    send_photo(bench, png_bytes(), user=ALICE, caption="/ask@other_bot what colour?", chat_id=GROUP)
    send_photo(bench, png_bytes(), user=ALICE, caption="/ask@other_bot what?")  # private
    send_photo(bench, png_bytes(), user=ALICE, caption="/ask is it red?")
    await bench.telegram.wait_for("sendRichMessage", lambda c: c.chat_id == ALICE)
    assert image_parts(bench.upstream.chat_requests()[-1].json)[0]["text"] == "is it red?"
    assert len(bench.upstream.chat_requests()) == 2


async def test_a_group_answers_with_its_own_settings_and_the_askers_reply_mode(
    bench: Bench,
) -> None:
    assert bench.app is not None
    users = bench.app.services.users
    username = bench.telegram.bot_username
    group_message(bench, ALICE, f"@{username} hello")
    await group_answer(bench)
    # The group's persona (its own settings row) and Alice's own one, in her private chat.
    await users.set_system_prompt(GROUP, "You are the group's pirate.")
    await users.set_system_prompt(ALICE, "You are Alice's librarian.")
    await users.set_media_choice(ALICE, "reply_mode", "both")
    group_message(bench, ALICE, f"@{username} again")
    # Spoken first, so the text comes as a new message (the placeholder is gone).
    await bench.telegram.wait_for("sendRichMessage", lambda c: c.chat_id == GROUP)
    system = bench.upstream.chat_requests()[-1].json["messages"][0]["content"]
    assert system == "You are the group's pirate."
    await bench.ask(ALICE, "and here?")
    system = bench.upstream.chat_requests()[-1].json["messages"][0]["content"]
    assert system == "You are Alice's librarian."
    # Alice's reply mode ("both") is hers wherever she asks: a voice note follows each answer.
    voices = await bench.telegram.wait_for("sendVoice", count=2)
    assert {c.chat_id for c in voices} == {GROUP, ALICE}
