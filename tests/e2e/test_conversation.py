"""History, /new, model choice, settings, languages and restarts, end to end."""

from __future__ import annotations

from tests.e2e.conftest import Bench, open_persona_form, text_of

USER = 2001


def roles(bench: Bench) -> list[str]:
    return [m["role"] for m in bench.upstream.chat_requests()[-1].json["messages"]]


async def test_history_is_sent_and_new_starts_over(bench: Bench) -> None:
    await bench.ask(USER, "first question")
    await bench.ask(USER, "second question")
    messages = bench.upstream.chat_requests()[-1].json["messages"]
    assert [m["content"] for m in messages[1:]] == [
        "first question",
        "Echo: first question",
        "second question",
    ]
    bench.telegram.send_message(USER, "/new")
    await bench.telegram.wait_for("sendMessage", lambda c: "New conversation" in c.params["text"])
    await bench.ask(USER, "third question")
    assert roles(bench) == ["system", "user"]


async def test_history_is_trimmed_to_the_model_context(bench: Bench) -> None:
    # test/tiny-context has a 1024-token window: old turns must fall out.
    bench.telegram.send_message(USER, "/model test/tiny-context")
    await bench.telegram.wait_for("sendMessage", lambda c: "test/tiny-context" in c.params["text"])
    for i in range(12):
        await bench.ask(USER, f"question {i} " + "lorem ipsum " * 20)
    last = bench.upstream.chat_requests()[-1]
    assert last.status == 200
    contents = [m["content"] for m in last.json["messages"]]
    assert contents[-1].startswith("question 11")
    assert not any(c.startswith("question 0 ") for c in contents)
    assert len(contents) > 3  # but recent turns are kept
    assert roles(bench)[1] == "user"


async def test_message_too_long_for_the_model_suggests_new(bench: Bench) -> None:
    bench.telegram.send_message(USER, "/model test/tiny-context")
    await bench.telegram.wait_for("sendMessage", lambda c: "test/tiny-context" in c.params["text"])
    final = await bench.ask(USER, "word " * 5000)
    assert "/new" in text_of(final)
    assert not bench.upstream.chat_requests()


async def test_model_menu_lists_chat_models_and_choice_is_used(bench: Bench) -> None:
    bench.telegram.send_message(USER, "/model")
    menu = (await bench.telegram.wait_for("sendMessage", lambda c: "reply_markup" in c.params))[0]
    buttons = [b for row in menu.params["reply_markup"]["inline_keyboard"] for b in row]
    labels = [b["text"] for b in buttons]
    assert any("openai/gpt-4o-mini" in label and "✅" in label for label in labels)
    assert any("anthropic/claude-3-haiku" in label for label in labels)
    # Only chat models: no image, speech, embedding or video models.
    for prefix in ("img-", "stt-", "tts-", "emb-", "txt2vid-"):
        assert not any(prefix in label for label in labels), labels
    claude = next(b for b in buttons if "anthropic/claude-3-haiku" in b["text"])
    sent = bench.telegram.sent_messages(USER)[-1]
    bench.telegram.press_button(USER, sent, claude["callback_data"])
    await bench.telegram.wait_for("answerCallbackQuery")
    await bench.telegram.wait_for(
        "editMessageText", lambda c: "anthropic/claude-3-haiku" in c.params.get("text", "")
    )
    await bench.ask(USER, "who are you")
    assert bench.upstream.chat_requests()[-1].json["model"] == "anthropic/claude-3-haiku"


async def test_model_by_id_is_validated(bench: Bench) -> None:
    bench.telegram.send_message(USER, "/model no-such/model")
    call = (await bench.telegram.wait_for("sendMessage"))[0]
    assert "no-such/model" in call.params["text"] and "/model" in call.params["text"]
    bench.telegram.send_message(USER, "/model img-dummy/image")
    await bench.telegram.wait_for("sendMessage", count=2)
    bench.telegram.send_message(USER, "/model anthropic/claude-3-haiku")
    await bench.telegram.wait_for("sendMessage", lambda c: "✅" in c.params["text"])
    await bench.ask(USER, "hi")
    assert bench.upstream.chat_requests()[-1].json["model"] == "anthropic/claude-3-haiku"


async def test_history_and_settings_survive_a_restart(bench: Bench) -> None:
    bench.telegram.send_message(USER, "/model anthropic/claude-3-haiku")
    await bench.telegram.wait_for("sendMessage", lambda c: "✅" in c.params["text"])
    await bench.ask(USER, "remember me")
    await bench.restart()
    await bench.ask(USER, "do you remember?")
    request = bench.upstream.chat_requests()[-1].json
    assert request["model"] == "anthropic/claude-3-haiku"
    assert [m["content"] for m in request["messages"][1:]] == [
        "remember me",
        "Echo: remember me",
        "do you remember?",
    ]


async def test_persona_and_temperature_from_settings(bench: Bench) -> None:
    menu = await open_persona_form(bench, USER)
    bench.telegram.send_message(USER, "You are a pirate.")
    await bench.telegram.wait_for("sendMessage", lambda c: "Persona saved" in c.params["text"])

    bench.telegram.send_message(USER, "/settings")
    await bench.telegram.wait_for("sendMessage", lambda c: "pirate" in c.params["text"])
    temperature_button = menu.params["reply_markup"]["inline_keyboard"][0][1]
    bench.telegram.press_button(
        USER, bench.telegram.sent_messages(USER)[-1], temperature_button["callback_data"]
    )
    keyboard = (
        await bench.telegram.wait_for(
            "editMessageText", lambda c: "temperature" in c.params["text"].lower()
        )
    )[-1]
    buttons = [b for row in keyboard.params["reply_markup"]["inline_keyboard"] for b in row]
    warm = next(b for b in buttons if b["text"].endswith("1.3"))
    bench.telegram.press_button(USER, bench.telegram.sent_messages(USER)[-1], warm["callback_data"])
    await bench.telegram.wait_for("answerCallbackQuery", lambda c: "1.3" in str(c.params), count=1)

    await bench.ask(USER, "ahoy")
    request = bench.upstream.chat_requests()[-1].json
    assert request["messages"][0] == {"role": "system", "content": "You are a pirate."}
    assert request["temperature"] == 1.3

    # Reset brings the defaults back.
    bench.telegram.send_message(USER, "/settings")
    menu = (
        await bench.telegram.wait_for(
            "sendMessage", lambda c: "pirate" in c.params["text"], count=2
        )
    )[-1]
    reset = next(
        b
        for row in menu.params["reply_markup"]["inline_keyboard"]
        for b in row
        if "Reset" in b["text"]
    )
    bench.telegram.press_button(
        USER, bench.telegram.sent_messages(USER)[-1], reset["callback_data"]
    )
    # It asks first; "Yes, reset" resets.
    ask = await bench.telegram.wait_for("editMessageText", lambda c: "Reset" in c.params["text"])
    yes = ask[-1].params["reply_markup"]["inline_keyboard"][0][0]
    bench.telegram.press_button(USER, bench.telegram.sent_messages(USER)[-1], yes["callback_data"])
    await bench.telegram.wait_for(
        "answerCallbackQuery", lambda c: "reset to defaults" in c.params.get("text", "")
    )
    await bench.ask(USER, "again")
    request = bench.upstream.chat_requests()[-1].json
    assert request["messages"][0]["content"] != "You are a pirate."
    assert "temperature" not in request


async def test_russian_user_gets_russian_and_lang_overrides(bench: Bench) -> None:
    bench.telegram.send_message(USER, "/start", language_code="uk")
    start = (await bench.telegram.wait_for("sendMessage"))[0]
    assert "Привет" in start.params["text"]
    bench.telegram.send_message(USER, "/lang", language_code="uk")
    menu = (await bench.telegram.wait_for("sendMessage", count=2))[-1]
    buttons = [b for row in menu.params["reply_markup"]["inline_keyboard"] for b in row]
    english = next(b for b in buttons if "English" in b["text"])
    bench.telegram.press_button(
        USER, bench.telegram.sent_messages(USER)[-1], english["callback_data"], language_code="uk"
    )
    await bench.telegram.wait_for("editMessageText", lambda c: "English" in c.params["text"])
    bench.telegram.send_message(USER, "/help", language_code="uk")
    help_ = (await bench.telegram.wait_for("sendMessage", count=3))[-1]
    assert "What I can do" in help_.params["text"]


async def test_commands_registered_in_both_languages(bench: Bench) -> None:
    calls = await bench.telegram.wait_for("setMyCommands", count=2)
    by_lang = {c.params.get("language_code"): c.params["commands"] for c in calls}
    assert {"ru", None} <= set(by_lang)
    names = {c["command"] for c in by_lang[None]}
    assert {"start", "help", "new", "model", "settings", "lang"} <= names
    assert any("Новый" in c["description"] for c in by_lang["ru"])
