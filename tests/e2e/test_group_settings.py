"""A group's own settings: changed by its admins only, applied to its answers and never to
anyone's private chat; menus pressed by their opener only; the persona form in a group; the
introduction on joining; the settings menus' confirmations, in any chat."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tests.e2e.conftest import ADMIN_ID, Bench
from tests.fakes.telegram_server import Call

GROUP = -100777
ALICE = 6001  # the group's admin in most tests
BOB = 6002  # a plain member
DEFAULT_MODEL = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-3-haiku"
REFUSAL = "Only this group's admins"


def say(bench: Bench, user: int, text: str, **kwargs: Any) -> dict[str, Any]:
    """`user` writes `text` in the group."""
    return bench.telegram.send_message(
        user, text, chat_id=GROUP, chat_type="supergroup", first_name=f"user{user}", **kwargs
    )


async def bot_reply(bench: Bench, user: int, text: str, *, chat_id: int = GROUP) -> Call:
    """`user` writes `text` (in the group unless `chat_id` says otherwise); the bot's next
    sendMessage in that chat."""
    before = len(bench.telegram.calls_of("sendMessage", chat_id=chat_id))
    if chat_id == GROUP:
        say(bench, user, text)
    else:
        bench.telegram.send_message(user, text, chat_id=chat_id)
    calls = await bench.telegram.wait_for(
        "sendMessage", lambda c: c.chat_id == chat_id, count=before + 1
    )
    return calls[before]


def group_finals(bench: Bench) -> list[Call]:
    return [
        c
        for c in bench.telegram.calls_of("editMessageText", chat_id=GROUP)
        if "rich_message" in c.params
    ]


async def ask_group(bench: Bench, user: int, question: str) -> dict[str, Any]:
    """`user` asks the bot in the group; the upstream request the answer was made with."""
    finals = len(group_finals(bench))
    requests = len(bench.upstream.chat_requests())
    say(bench, user, f"@{bench.telegram.bot_username} {question}")
    await bench.telegram.wait_for(
        "editMessageText",
        lambda c: c.chat_id == GROUP and "rich_message" in c.params,
        count=finals + 1,
    )
    return bench.upstream.chat_requests()[requests].json


async def ask_private(bench: Bench, user: int, question: str) -> dict[str, Any]:
    requests = len(bench.upstream.chat_requests())
    await bench.ask(user, question)
    return bench.upstream.chat_requests()[requests].json


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    markup = message.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


def button(message: dict[str, Any], label: str) -> str:
    """The callback data of the button whose text contains `label`."""
    return next(b["callback_data"] for b in buttons(message) if label in b["text"])


def sent(call: Call) -> dict[str, Any]:
    """The message a sendMessage call created, as stored (to press its buttons)."""
    assert isinstance(call.result, dict), call.response
    return call.result


async def press(bench: Bench, user: int, message: dict[str, Any], data: str) -> Call:
    """`user` presses a button; the bot's answer to that press."""
    query_id = bench.telegram.press_button(user, message, data)["callback_query"]["id"]
    answers = await bench.telegram.wait_for(
        "answerCallbackQuery", lambda c: c.params.get("callback_query_id") == query_id
    )
    return answers[0]


async def record_of(bench: Bench, chat_id: int) -> Any:
    assert bench.app is not None
    return await bench.app.services.storage.get_user(chat_id)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polls storage; a silent handler sets no event
            await asyncio.sleep(0.02)


# ----------------------------------------------------------------------- who may change them


async def test_a_group_admins_model_applies_to_the_group_only(bench: Bench) -> None:
    bench.telegram.set_member_status(GROUP, ALICE, "administrator")
    reply = await bot_reply(bench, ALICE, "/model claude")
    assert CLAUDE in reply.params["text"]

    assert (await ask_group(bench, BOB, "who are you?"))["model"] == CLAUDE
    # The admin's own private chat keeps its own (default) model.
    assert (await ask_private(bench, ALICE, "and here?"))["model"] == DEFAULT_MODEL
    alice = await record_of(bench, ALICE)
    assert alice.model is None
    assert (await record_of(bench, GROUP)).model == CLAUDE

    # Telegram was asked once: the answer is remembered for the next command.
    await bot_reply(bench, ALICE, "/settings")
    assert len(bench.telegram.calls_of("getChatMember")) == 1


async def test_members_who_are_not_admins_are_refused(bench: Bench) -> None:
    await ask_group(bench, BOB, "remember the number 42")
    for command in ("/model claude", "/settings", "/new"):
        reply = await bot_reply(bench, BOB, command)
        assert REFUSAL in reply.params["text"], command
        assert "reply_markup" not in reply.params
    assert (await record_of(bench, GROUP)).model is None
    # /new was refused: the group's conversation goes on.
    request = await ask_group(bench, BOB, "which number?")
    assert any("42" in m["content"] for m in request["messages"])
    assert request["model"] == DEFAULT_MODEL


async def test_a_group_admin_starts_the_conversation_over(bench: Bench) -> None:
    bench.telegram.set_member_status(GROUP, ALICE, "creator")
    await ask_group(bench, BOB, "remember the number 42")
    reply = await bot_reply(bench, ALICE, "/new")
    assert "New conversation" in reply.params["text"]
    request = await ask_group(bench, BOB, "which number?")
    assert not any("42" in m["content"] for m in request["messages"])


async def test_the_bots_admins_may_change_any_group(bench: Bench) -> None:
    reply = await bot_reply(bench, ADMIN_ID, "/model claude")  # a plain member of the group
    assert CLAUDE in reply.params["text"]
    assert (await record_of(bench, GROUP)).model == CLAUDE
    assert not bench.telegram.calls_of("getChatMember")


# ------------------------------------------------------------------------ menus and their owner


async def test_a_menu_is_pressed_by_its_opener_only(bench: Bench) -> None:
    # Even another admin of the group cannot press Alice's menu.
    bench.telegram.set_member_status(GROUP, ALICE, "administrator")
    bench.telegram.set_member_status(GROUP, BOB, "administrator")
    menu = sent(await bot_reply(bench, ALICE, "/model"))
    pick = button(menu, CLAUDE)

    answer = await press(bench, BOB, menu, pick)
    assert "belongs to the person who opened it" in answer.params["text"]
    assert answer.params.get("show_alert") in (True, "true")
    assert not bench.telegram.calls_of("editMessageText")
    assert (await record_of(bench, GROUP)).model is None

    answer = await press(bench, ALICE, menu, pick)
    assert answer.params["text"] == f"✅ Model set: {CLAUDE}"
    assert (await record_of(bench, GROUP)).model == CLAUDE
    assert (await record_of(bench, ALICE)).model is None


async def test_a_page_button_that_changes_nothing_sends_nothing_in_a_group(bench: Bench) -> None:
    base = bench.upstream.models[0]
    bench.upstream.models = bench.upstream.models + [
        {**base, "id": f"test/extra-{n:02d}", "name": f"Extra {n}"} for n in range(20)
    ]
    bench.telegram.set_member_status(GROUP, ALICE, "administrator")
    menu = sent(await bot_reply(bench, ALICE, "/model"))
    answer = await press(bench, ALICE, menu, button(menu, "1/3"))
    assert answer.ok and not answer.params.get("text")
    answer = await press(bench, BOB, menu, button(menu, "»"))
    assert answer.params.get("show_alert") in (True, "true")
    assert not bench.telegram.calls_of("editMessageText")


async def test_a_persona_form_in_a_group_takes_only_its_openers_text(bench: Bench) -> None:
    bench.telegram.set_member_status(GROUP, ALICE, "administrator")
    menu = await bot_reply(bench, ALICE, "/settings")
    assert "Group settings" in menu.params["text"]
    labels = [b["text"] for b in buttons(sent(menu))]
    assert not any("Voice" in label or "Reply mode" in label for label in labels)
    await press(bench, ALICE, sent(menu), button(sent(menu), "Persona"))
    prompt = await bench.telegram.wait_for("editMessageText")
    assert "Reply to this message" in prompt[0].params["text"]

    # Others go on talking meanwhile: chatter is ignored, a question is answered as usual.
    say(bench, BOB, "You are a cat.")
    request = await ask_group(bench, BOB, "hello there")
    assert request["messages"][-1]["content"].endswith("hello there")
    assert (await record_of(bench, GROUP)).system_prompt is None

    # The opener's reply to the prompt (privacy mode lets the bot see replies) is the persona.
    before = len(bench.telegram.calls_of("sendMessage", chat_id=GROUP))
    say(bench, ALICE, "You are a pirate.", reply_to_message=sent(menu))
    saved = await bench.telegram.wait_for(
        "sendMessage", lambda c: c.chat_id == GROUP, count=before + 1
    )
    assert "persona is saved" in saved[before].params["text"]
    request = await ask_group(bench, BOB, "ahoy")
    assert request["messages"][0] == {"role": "system", "content": "You are a pirate."}
    # Alice's own persona is untouched.
    request = await ask_private(bench, ALICE, "hi")
    assert request["messages"][0]["content"] != "You are a pirate."


# ---------------------------------------------------------------------------- joining a group


async def test_the_bot_introduces_itself_once_per_join(bench: Bench) -> None:
    adder = 6100
    bench.telegram.bot_added_to_group(GROUP, adder, language_code="ru")
    intro = await bench.telegram.wait_for("sendMessage", lambda c: c.chat_id == GROUP)
    text = intro[0].params["text"]
    assert "Всем привет" in text
    assert f"@{bench.telegram.bot_username}" in text and "/ask" in text and "/help" in text

    # Promoted and demoted: not a join.
    bench.telegram.bot_added_to_group(GROUP, adder, old="member", new="administrator")
    bench.telegram.bot_added_to_group(GROUP, adder, old="administrator", new="member")
    # Removed: the group's row says so (statistics count the groups the bot is in).
    bench.telegram.bot_added_to_group(GROUP, adder, old="member", new="kicked")

    async def removed() -> bool:
        record = await record_of(bench, GROUP)
        return record is not None and record.is_blocked

    await eventually(removed)
    # Added back: introduced again, and active again.
    bench.telegram.bot_added_to_group(GROUP, adder, old="kicked", new="administrator")
    await bench.telegram.wait_for("sendMessage", lambda c: c.chat_id == GROUP, count=2)

    async def back() -> bool:
        return not (await record_of(bench, GROUP)).is_blocked

    await eventually(back)
    await asyncio.sleep(0.2)
    assert len(bench.telegram.calls_of("sendMessage", chat_id=GROUP)) == 2


async def test_start_and_help_in_a_group_say_how_to_address_the_bot(bench: Bench) -> None:
    username = bench.telegram.bot_username
    start = (await bot_reply(bench, BOB, f"/start@{username}")).params["text"]
    assert f"@{username}" in start and "/ask" in start and "Current model" not in start
    help_ = (await bot_reply(bench, BOB, "/help")).params["text"]
    assert "What I can do in this group" in help_ and "/settings" in help_


# ------------------------------------------------------------------ the settings menus, anywhere


async def test_every_settings_choice_confirms_itself(bench: Bench) -> None:
    user = ALICE
    menu = sent(await bot_reply(bench, user, "/settings", chat_id=user))

    async def choose(opener: str, choice: str) -> str:
        await press(bench, user, menu, button(menu, opener))
        picker = bench.telegram.sent_messages(user)[-1]
        answer = await press(bench, user, picker, button(picker, choice))
        return str(answer.params.get("text"))

    assert await choose("Vision", "gemini") == "✅ Vision model: vis-google/gemini-flash-1.5"
    assert await choose("Image", "Default") == "✅ Image model: Default"
    assert await choose("Voice", "nova") == "✅ Voice: nova"
    assert (await choose("Reply mode", "Text")).startswith("✅ Reply mode: ")
    assert await choose("Persona", "Default") == "✅ Persona reset to default."
    lang_menu = sent(await bot_reply(bench, user, "/lang", chat_id=user))
    answer = await press(bench, user, lang_menu, button(lang_menu, "English"))
    assert answer.params["text"] == "✅ Language: English"


async def test_reset_to_defaults_asks_first(bench: Bench) -> None:
    user = ALICE
    assert bench.app is not None
    await bench.app.services.users.set_system_prompt(user, "You are a pirate.")
    menu = sent(await bot_reply(bench, user, "/settings", chat_id=user))

    answer = await press(bench, user, menu, button(menu, "Reset"))
    assert not answer.params.get("text")
    asked = bench.telegram.sent_messages(user)[-1]
    assert "Reset your model" in asked["text"]
    assert (await record_of(bench, user)).system_prompt == "You are a pirate."

    await press(bench, user, asked, button(asked, "Cancel"))
    assert "pirate" in bench.telegram.sent_messages(user)[-1]["text"]  # the settings again
    assert (await record_of(bench, user)).system_prompt == "You are a pirate."

    await press(bench, user, menu, button(menu, "Reset"))
    asked = bench.telegram.sent_messages(user)[-1]
    answer = await press(bench, user, asked, button(asked, "Yes, reset"))
    assert answer.params["text"] == "♻️ Settings reset to defaults."
    assert (await record_of(bench, user)).system_prompt is None


async def test_cancel_with_nothing_to_cancel_says_so(bench: Bench) -> None:
    reply = await bot_reply(bench, ALICE, "/cancel", chat_id=ALICE)
    assert reply.params["text"] == "Nothing to cancel."
    reply = await bot_reply(bench, BOB, "/cancel")  # in the group too, for anyone
    assert reply.params["text"] == "Nothing to cancel."
