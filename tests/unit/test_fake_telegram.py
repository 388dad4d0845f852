"""The fake Bot API server, driven by a real aiogram Bot over loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
)
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputRichBlockParagraph,
    InputRichBlockThinking,
    InputRichMessage,
    Message,
    MessageGenerationStopped,
    MessageId,
    ReplyParameters,
    Update,
)

from tests.fakes.telegram_server import (
    SENDING_METHODS,
    FakeTelegram,
    detect_entities,
    parse_telegram_html,
)

USER = 1001
GROUP = -1001234567890


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.url))
    client = Bot(fake.token, session=session)
    yield client
    await client.session.close()


@pytest.fixture(autouse=True)
def _clean(fake: FakeTelegram) -> None:
    fake.reset()


async def test_send_message_round_trip(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(USER, "Hello there")

    assert isinstance(sent, Message)
    assert sent.text == "Hello there"
    assert sent.from_user is not None and sent.from_user.id == fake.bot_id
    [shown] = fake.sent_messages(USER)
    assert shown["message_id"] == sent.message_id
    assert shown["text"] == "Hello there"
    assert shown["_kind"] == "text"
    [call] = fake.calls_of("sendMessage", chat_id=USER)
    assert call.params["text"] == "Hello there"
    assert call.params["chat_id"] == str(USER)
    assert call.ok and call.result["message_id"] == sent.message_id


async def test_message_ids_increase_per_chat(fake: FakeTelegram, bot: Bot) -> None:
    fake.send_message(USER, "hi")  # the user's message takes id 1 in this chat
    first = await bot.send_message(USER, "a")
    second = await bot.send_message(USER, "b")
    other = await bot.send_message(USER + 1, "c")

    assert (first.message_id, second.message_id, other.message_id) == (2, 3, 1)
    assert [m["text"] for m in fake.sent_messages()] == ["a", "b", "c"]


async def test_html_becomes_entities_with_utf16_offsets(fake: FakeTelegram, bot: Bot) -> None:
    html = '<b>bold</b> 😀 <a href="https://example.com">link</a> &lt;tag&gt; &amp; <i>x</i>'
    sent = await bot.send_message(USER, html, parse_mode="HTML")

    assert sent.text == "bold 😀 link <tag> & x"
    entities = [(e.type, e.offset, e.length) for e in sent.entities or []]
    assert entities == [("bold", 0, 4), ("text_link", 8, 4), ("italic", 21, 1)]
    assert fake.sent_messages(USER)[0]["_source"] == html


def test_pre_code_language_and_spoiler() -> None:
    text, entities = parse_telegram_html(
        '<pre><code class="language-python">x = 1</code></pre>'
        '<span class="tg-spoiler">s</span><blockquote expandable>q</blockquote>'
    )
    assert text == "x = 1sq"
    assert entities == [
        {"type": "pre", "offset": 0, "length": 5, "language": "python"},
        {"type": "spoiler", "offset": 5, "length": 1},
        {"type": "expandable_blockquote", "offset": 6, "length": 1},
    ]


@pytest.mark.parametrize(
    ("html", "fragment"),
    [
        ("<b>never closed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>crossed</b></i>", "Unmatched end tag"),
        ("<p>paragraph</p>", 'Unsupported start tag "p"'),
        ("if a < b then", 'Unsupported start tag ""'),
        ("<br>", 'Unsupported start tag "br"'),
        ("<span>x</span>", 'must have class "tg-spoiler"'),
        ("stray</b>", "Unexpected end tag"),
    ],
)
async def test_bad_html_is_rejected(bot: Bot, html: str, fragment: str) -> None:
    with pytest.raises(TelegramBadRequest, match="can't parse entities") as caught:
        await bot.send_message(USER, html, parse_mode="HTML")
    assert fragment in caught.value.message


async def test_text_limits_count_utf16_after_parsing(fake: FakeTelegram, bot: Bot) -> None:
    # Tags do not count: 4096 visible characters wrapped in <b> fit.
    await bot.send_message(USER, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(USER, "a" * 4097)
    # 2049 emoji are 2049 Python characters but 4098 UTF-16 units.
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(USER, "😀" * 2049)
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(USER, "   \n ")
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(USER, "<b></b>", parse_mode="HTML")
    assert len(fake.sent_messages(USER)) == 1


async def test_caption_limit(bot: Bot) -> None:
    audio = BufferedInputFile(b"ID3", "a.mp3")
    with pytest.raises(TelegramBadRequest, match="caption is too long"):
        await bot.send_audio(USER, audio, caption="c" * 1025)


async def test_fail_next_429_surfaces_as_retry_after(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", retry_after=7)

    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(USER, "first")
    assert caught.value.retry_after == 7
    assert (await bot.send_message(USER, "second")).text == "second"
    assert [c.ok for c in fake.calls_of("sendMessage")] == [False, True]
    assert [m["text"] for m in fake.sent_messages(USER)] == ["second"]


async def test_fail_next_for_one_chat_only(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", status=403, chat_id=USER, times=2)

    await bot.send_message(USER + 1, "unaffected")
    for _ in range(2):
        with pytest.raises(Exception, match="bot was blocked by the user"):
            await bot.send_message(USER, "blocked")
    await bot.send_message(USER, "recovered")


async def test_reject_method_until_reset(fake: FakeTelegram, bot: Bot) -> None:
    fake.reject_method("sendRichMessage", description="Bad Request: method is unavailable")
    rich = InputRichMessage(markdown="**hi**")
    for _ in range(2):
        with pytest.raises(TelegramBadRequest, match="method is unavailable"):
            await bot.send_rich_message(USER, rich)
    fake.reset()
    assert (await bot.send_rich_message(USER, rich)).rich_message is not None


async def test_long_poll_returns_update_pushed_while_waiting(fake: FakeTelegram, bot: Bot) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.1)  # the poll is parked on the server now
    assert not poll.done()
    pushed = fake.send_message(USER, "/start")

    updates = await asyncio.wait_for(poll, 2)
    assert time.monotonic() - started < 1.0
    assert [u.update_id for u in updates] == [pushed["update_id"]]
    message = updates[0].message
    assert message is not None and message.text == "/start"
    assert message.entities is not None and message.entities[0].type == "bot_command"

    # The offset confirms it: it is not delivered again.
    assert await bot.get_updates(offset=pushed["update_id"] + 1, timeout=0) == []


async def test_long_poll_honours_timeout(bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    assert 0.9 <= time.monotonic() - started < 2.0


async def test_stopped_message_generation_parses(fake: FakeTelegram, bot: Bot) -> None:
    fake.press_stop(USER, draft_id=42, message_thread_id=5)

    [update] = await bot.get_updates(timeout=1)
    assert isinstance(update, Update)
    assert update.event_type == "stopped_message_generation"
    stopped = update.stopped_message_generation
    assert isinstance(stopped, MessageGenerationStopped)
    assert (stopped.chat.id, stopped.chat.type) == (USER, "private")
    assert (stopped.draft_id, stopped.message_thread_id) == (42, 5)


async def test_allowed_updates_filter_new_updates(fake: FakeTelegram, bot: Bot) -> None:
    await bot.get_updates(timeout=0, allowed_updates=["message"])
    fake.press_stop(USER, draft_id=1)
    fake.send_message(USER, "kept")

    updates = await bot.get_updates(timeout=0)
    assert [u.event_type for u in updates] == ["message"]


async def test_send_voice_multipart_records_bytes(fake: FakeTelegram, bot: Bot) -> None:
    audio = b"OggS" + bytes(range(256)) * 4
    sent = await bot.send_voice(USER, BufferedInputFile(audio, "answer.ogg"), duration=3)

    assert sent.voice is not None and sent.voice.duration == 3
    [call] = fake.calls_of("sendVoice")
    assert call.params["voice"].startswith("attach://")
    assert call.upload("voice") == ("answer.ogg", audio)
    [shown] = fake.sent_messages(USER)
    assert shown["_kind"] == "voice" and shown["_file_bytes"] == audio
    # What the bot uploaded can be fetched back like any Telegram file.
    assert (await bot.download(sent.voice.file_id)).read() == audio  # type: ignore[union-attr]


async def test_get_file_and_download(fake: FakeTelegram, bot: Bot) -> None:
    fake.add_file("voice-in-1", b"incoming voice", "voice/file_7.oga")

    file = await bot.get_file("voice-in-1")
    assert (file.file_path, file.file_size) == ("voice/file_7.oga", 14)
    downloaded = await bot.download("voice-in-1")
    assert downloaded is not None and downloaded.read() == b"incoming voice"

    fake.add_file("huge", b"\0" * (20 * 1024 * 1024 + 1), "documents/huge.bin")
    with pytest.raises(TelegramBadRequest, match="file is too big"):
        await bot.get_file("huge")
    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await bot.get_file("missing")


async def test_incoming_voice_helper(fake: FakeTelegram, bot: Bot) -> None:
    fake.send_voice(USER, b"OggS-voice", duration=2)
    [update] = await bot.get_updates(timeout=1)
    voice = update.message.voice  # type: ignore[union-attr]
    assert voice is not None and voice.duration == 2
    assert (await bot.download(voice.file_id)).read() == b"OggS-voice"  # type: ignore[union-attr]


async def test_identical_edit_is_not_modified(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(USER, "<b>draft</b>", parse_mode="HTML")

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            text="<b>draft</b>", chat_id=USER, message_id=sent.message_id, parse_mode="HTML"
        )
    edited = await bot.edit_message_text(
        text="<b>final</b> answer", chat_id=USER, message_id=sent.message_id, parse_mode="HTML"
    )
    assert isinstance(edited, Message) and edited.edit_date is not None
    [shown] = fake.sent_messages(USER)
    assert (shown["text"], shown["_edits"]) == ("final answer", 1)
    # Formatting counts as content: same text without bold is a real change.
    await bot.edit_message_text(text="final answer", chat_id=USER, message_id=sent.message_id)

    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(text="x", chat_id=USER, message_id=999)


async def test_edit_changing_only_the_keyboard(fake: FakeTelegram, bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Stop", callback_data="stop:1")]]
    )
    sent = await bot.send_message(USER, "streaming", reply_markup=keyboard)
    assert sent.reply_markup is not None

    # Omitting reply_markup removes the keyboard: that is a modification.
    await bot.edit_message_text(text="streaming", chat_id=USER, message_id=sent.message_id)
    assert "reply_markup" not in fake.sent_messages(USER)[0]
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=USER, message_id=sent.message_id)


async def test_callback_data_limit(bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="x", callback_data="d" * 65)]]
    )
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(USER, "menu", reply_markup=keyboard)


async def test_press_button_and_answer(fake: FakeTelegram, bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Retry", callback_data="retry")]]
    )
    await bot.send_message(USER, "failed", reply_markup=keyboard)
    fake.press_button(USER, fake.sent_messages(USER)[0], "retry")

    [update] = await bot.get_updates(timeout=1)
    query = update.callback_query
    assert query is not None and query.data == "retry"
    assert isinstance(query.message, Message) and query.message.text == "failed"
    assert await bot.answer_callback_query(query.id, text="ok")
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)


async def test_rich_message_and_drafts(fake: FakeTelegram, bot: Bot) -> None:
    markdown = "# Answer\n\nSome **bold** text.\n\n```python\nprint(1)\n```"
    sent = await bot.send_rich_message(USER, InputRichMessage(markdown=markdown))

    assert sent.rich_message is not None and sent.text is None
    assert [b.type for b in sent.rich_message.blocks] == ["heading", "paragraph", "pre"]
    [shown] = fake.sent_messages(USER)
    assert (shown["_kind"], shown["_rich_markdown"]) == ("rich", markdown)

    assert await bot.send_message_draft(chat_id=USER, draft_id=7, text="", can_stop=True)
    assert await bot.send_message_draft(
        chat_id=USER, draft_id=7, text="<b>Partial</b>", parse_mode="HTML"
    )
    thinking = InputRichMessage(blocks=[InputRichBlockThinking(text="Thinking…")])
    assert await bot.send_rich_message_draft(chat_id=USER, draft_id=7, rich_message=thinking)
    assert len(fake.calls_of("sendMessageDraft", "sendRichMessageDraft", chat_id=USER)) == 3

    # Drafts never become messages by themselves.
    assert len(fake.sent_messages(USER)) == 1

    # Rich edits, and "not modified" for the same source.
    edited = InputRichMessage(markdown=markdown + "\n\nMore.")
    await bot.edit_message_text(rich_message=edited, chat_id=USER, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(rich_message=edited, chat_id=USER, message_id=sent.message_id)


async def test_draft_rules(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="TEXTDRAFT_PEER_INVALID"):
        await bot.send_message_draft(chat_id=GROUP, draft_id=1, text="hi")
    rich = InputRichMessage(blocks=[InputRichBlockParagraph(text="hi")])
    with pytest.raises(TelegramBadRequest, match="TEXTDRAFT_PEER_INVALID"):
        await bot.send_rich_message_draft(chat_id=GROUP, draft_id=1, rich_message=rich)
    with pytest.raises(TelegramBadRequest, match="draft_id"):
        await bot.send_message_draft(chat_id=USER, draft_id=0, text="hi")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message_draft(chat_id=USER, draft_id=1, text="a" * 4097)
    thinking = InputRichMessage(blocks=[InputRichBlockThinking(text="…")])
    with pytest.raises(TelegramBadRequest, match="only in drafts"):
        await bot.send_rich_message(USER, thinking)
    with pytest.raises(TelegramBadRequest, match="rich message is too long"):
        await bot.send_rich_message(USER, InputRichMessage(markdown="x" * 32769))


async def test_group_chat_from_user_update(fake: FakeTelegram, bot: Bot) -> None:
    fake.send_message(USER, "@test_llm_bot hello", chat_id=GROUP, chat_type="supergroup")
    [update] = await bot.get_updates(timeout=1)
    message = update.message
    assert message is not None and message.chat.type == "supergroup"
    assert [(e.type, e.offset, e.length) for e in message.entities or []] == [("mention", 0, 13)]
    with pytest.raises(TelegramBadRequest, match="TEXTDRAFT_PEER_INVALID"):
        await bot.send_message_draft(chat_id=GROUP, draft_id=1, text="hi")
    reply = await bot.send_message(GROUP, "answer", reply_to_message_id=message.message_id)
    assert reply.reply_to_message is not None
    assert reply.reply_to_message.message_id == message.message_id


def test_entity_detection() -> None:
    assert detect_entities("/model@test_llm_bot gpt-4o") == [
        {"type": "bot_command", "offset": 0, "length": 19}
    ]
    assert detect_entities("😀 ask @helper_bot, not me@mail.com") == [
        {"type": "mention", "offset": 7, "length": 11}
    ]
    assert detect_entities("plain text / not a command") == []


async def test_wait_for_is_event_driven(fake: FakeTelegram, bot: Bot) -> None:
    waiter = asyncio.create_task(
        fake.wait_for("sendMessage", lambda c: c.params.get("text") == "two", count=1)
    )
    await asyncio.sleep(0)
    await bot.send_message(USER, "one")
    assert not waiter.done()
    await bot.send_message(USER, "two")
    [call] = await asyncio.wait_for(waiter, 1)
    assert call.params["text"] == "two"

    # Earlier calls count, and a timeout explains what was seen.
    assert len(await fake.wait_for("sendMessage", count=2)) == 2
    with pytest.raises(TimeoutError, match="sendMessage"):
        await fake.wait_for("deleteMessage", timeout=0.05)


async def test_enforce_limits_answers_429(fake: FakeTelegram, bot: Bot) -> None:
    fake.enforce_limits(global_per_second=None, per_chat_per_second=1)

    await bot.send_message(USER, "one")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(USER, "two")
    assert caught.value.retry_after >= 1
    await bot.send_message(USER + 1, "other chat is fine")
    assert fake.rate_limited == 1

    fake.enforce_limits(global_per_second=3)
    for i in range(3):
        await bot.send_message(USER + 10 + i, "burst")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(USER + 20, "over the global limit")
    assert fake.rate_limited == 2


async def test_unknown_method_and_wrong_token(fake: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.url}/bot{fake.token}/noSuchMethod") as resp:
            assert resp.status == 404
            assert (await resp.json())["description"] == "Not Found: method not found"
        async with http.post(f"{fake.url}/bot1:wrong/getMe") as resp:
            assert resp.status == 401
    assert [c.method for c in fake.calls] == ["noSuchMethod", "getMe"]


async def test_dispatcher_polling_end_to_end(fake: FakeTelegram, bot: Bot) -> None:
    router = Router()
    stopped: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @router.message()
    async def echo(message: Message) -> None:
        await message.answer(f"echo: {message.text}")

    @router.stopped_message_generation()
    async def on_stop(event: MessageGenerationStopped) -> None:
        stopped.set_result(event.draft_id)

    dp = Dispatcher()
    dp.include_router(router)
    polling = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, polling_timeout=1, close_bot_session=False)
    )
    try:
        fake.send_message(USER, "ping")
        [call] = await fake.wait_for("sendMessage", timeout=5)
        assert call.params["text"] == "echo: ping"
        fake.press_stop(USER, draft_id=9)
        assert await asyncio.wait_for(stopped, 5) == 9
        [poll] = fake.calls_of("getUpdates")[:1]
        assert "stopped_message_generation" in poll.params["allowed_updates"]
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 5)


async def test_newer_poll_terminates_older_one(bot: Bot) -> None:
    older = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.05)
    assert await bot.get_updates(timeout=0) == []
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(older, 1)


async def test_delete_chat_action_and_commands(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(USER, "temporary")
    assert await bot.delete_message(USER, sent.message_id)
    assert fake.sent_messages(USER) == []
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(USER, sent.message_id)

    assert await bot.send_chat_action(USER, "typing")
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(USER, "dancing")

    commands = [BotCommand(command="new", description="Start a new conversation")]
    assert await bot.set_my_commands(commands, language_code="en")
    got = await bot.get_my_commands(language_code="en")
    assert [(c.command, c.description) for c in got] == [("new", "Start a new conversation")]
    assert await bot.get_my_commands() == []
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="New-Chat", description="x")])


async def test_copy_message_of_a_user_text(fake: FakeTelegram, bot: Bot) -> None:
    pushed = fake.send_message(USER, "/start ask @helper_bot")["message"]
    await bot.send_message(GROUP, "earlier")  # takes id 1 in the group

    copied = await bot.copy_message(GROUP, USER, pushed["message_id"])

    assert isinstance(copied, MessageId) and copied.message_id == 2
    [call] = fake.calls_of("copyMessage", chat_id=GROUP)
    assert call.result == {"message_id": 2}
    shown = fake.sent_messages(GROUP)[-1]
    assert shown["message_id"] == 2
    assert (shown["text"], shown["entities"]) == (pushed["text"], pushed["entities"])
    assert shown["from"]["id"] == fake.bot_id and shown["chat"]["id"] == GROUP
    assert (shown["_kind"], shown["_copied_from"]) == ("text", (USER, pushed["message_id"]))
    # The copy is an ordinary bot message: it can be edited and "not modified" applies.
    await bot.edit_message_text(text="edited copy", chat_id=GROUP, message_id=2)
    again = await bot.copy_message(GROUP, GROUP, 2)
    assert fake.sent_messages(GROUP)[-1]["_copied_from"] == (GROUP, 2)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(text="edited copy", chat_id=GROUP, message_id=again.message_id)


async def test_copy_message_of_bot_media_keeps_or_replaces_caption(
    fake: FakeTelegram, bot: Bot
) -> None:
    photo = BufferedInputFile(b"\xff\xd8jpeg", "p.jpg")
    sent = await bot.send_photo(USER, photo, caption="<b>old</b> caption", parse_mode="HTML")

    kept = await bot.copy_message(USER + 1, USER, sent.message_id)
    replaced = await bot.copy_message(
        USER + 1, USER, sent.message_id, caption="<i>new</i>", parse_mode="HTML"
    )
    # aiogram drops an empty caption from the form, so the removal goes over raw JSON.
    async with aiohttp.ClientSession() as http:
        body = {"chat_id": USER + 1, "from_chat_id": USER, "message_id": sent.message_id}
        url = f"{fake.url}/bot{fake.token}/copyMessage"
        async with http.post(url, json={**body, "caption": ""}) as resp:
            removed = (await resp.json())["result"]

    assert (kept.message_id, replaced.message_id, removed) == (1, 2, {"message_id": 3})
    first, second, third = fake.sent_messages(USER + 1)
    file_id = sent.photo[-1].file_id  # type: ignore[index]
    assert all(m["photo"][-1]["file_id"] == file_id for m in (first, second, third))
    assert (first["caption"], first["caption_entities"][0]["type"]) == ("old caption", "bold")
    assert (second["caption"], second["caption_entities"][0]["type"]) == ("new", "italic")
    assert "caption" not in third and "caption_entities" not in third
    assert first["_kind"] == "photo" and first["_file_bytes"] == b"\xff\xd8jpeg"
    assert first["_copied_from"] == (USER, sent.message_id)
    # The original is untouched.
    assert fake.sent_messages(USER)[0]["caption"] == "old caption"
    with pytest.raises(TelegramBadRequest, match="caption is too long"):
        await bot.copy_message(USER + 1, USER, sent.message_id, caption="c" * 1025)


async def test_copy_message_of_a_user_voice_with_markup_and_reply(
    fake: FakeTelegram, bot: Bot
) -> None:
    voice = fake.send_voice(USER, b"OggS-voice", duration=4, caption="listen")["message"]
    question = fake.send_message(USER + 1, "question")["message"]
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Again", callback_data="again")]]
    )

    copied = await bot.copy_message(
        USER + 1,
        USER,
        voice["message_id"],
        reply_markup=keyboard,
        reply_parameters=ReplyParameters(message_id=question["message_id"]),
    )

    [shown] = fake.sent_messages(USER + 1)
    assert shown["message_id"] == copied.message_id == question["message_id"] + 1
    assert shown["voice"] == voice["voice"] and shown["caption"] == "listen"
    assert shown["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "again"
    assert shown["reply_to_message"]["message_id"] == question["message_id"]
    assert shown["_copied_from"] == (USER, voice["message_id"])
    assert (await bot.download(voice["voice"]["file_id"])).read() == b"OggS-voice"  # type: ignore[union-attr]


async def test_copy_message_source_must_exist(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(USER, "soon gone")
    with pytest.raises(TelegramBadRequest, match="message to copy not found"):
        await bot.copy_message(USER, USER, sent.message_id + 1)
    with pytest.raises(TelegramBadRequest, match="message to copy not found"):
        await bot.copy_message(USER, USER + 5, sent.message_id)  # another chat
    await bot.delete_message(USER, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to copy not found"):
        await bot.copy_message(USER + 1, USER, sent.message_id)
    assert fake.sent_messages() == []
    assert [c.ok for c in fake.calls_of("copyMessage")] == [False, False, False]


async def test_copy_message_counts_toward_rate_limits(fake: FakeTelegram, bot: Bot) -> None:
    assert "copyMessage" in SENDING_METHODS
    fake.send_message(USER, "original")
    fake.enforce_limits(global_per_second=None, per_chat_per_second=1)

    await bot.copy_message(GROUP, USER, 1)
    with pytest.raises(TelegramRetryAfter):
        await bot.copy_message(GROUP, USER, 1)
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(GROUP, "same window")
    assert fake.rate_limited == 2
    assert len(fake.sent_messages(GROUP)) == 1


async def test_blocked_user_refuses_every_sending_call(fake: FakeTelegram, bot: Bot) -> None:
    fake.send_message(USER, "hi")
    fake.block_bot(USER)

    refused = [
        bot.send_message(USER, "hello"),
        bot.send_chat_action(USER, "typing"),
        bot.send_message_draft(chat_id=USER, draft_id=1, text="partial"),
        bot.send_voice(USER, BufferedInputFile(b"OggS", "v.ogg")),
        bot.copy_message(USER, USER, 1),
    ]
    for request in refused:
        with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
            await request
    assert [c.response["error_code"] for c in fake.calls_of(chat_id=USER)] == [403] * 5
    assert fake.sent_messages(USER) == []

    # Other chats are fine, and so is copying *from* the blocked user's chat.
    await bot.send_message(USER + 1, "unaffected")
    await bot.copy_message(USER + 1, USER, 1)
    fake.unblock_bot(USER)
    assert (await bot.send_message(USER, "welcome back")).text == "welcome back"


async def test_deactivated_user_and_reset(fake: FakeTelegram, bot: Bot) -> None:
    fake.deactivate_user(USER)
    fake.block_bot(USER + 1)
    with pytest.raises(TelegramForbiddenError, match="user is deactivated"):
        await bot.send_message(USER, "anyone there?")
    with pytest.raises(TelegramForbiddenError, match="user is deactivated"):
        await bot.send_rich_message_draft(
            chat_id=USER, draft_id=1, rich_message=InputRichMessage(markdown="x")
        )
    fake.unblock_bot(USER)  # unblocking does not bring a deleted account back
    with pytest.raises(TelegramForbiddenError, match="user is deactivated"):
        await bot.send_chat_action(USER, "typing")

    fake.reset()
    await bot.send_message(USER, "fresh state")
    await bot.send_message(USER + 1, "fresh state")


async def test_refused_calls_do_not_fill_rate_windows(fake: FakeTelegram, bot: Bot) -> None:
    fake.enforce_limits(global_per_second=2, per_chat_per_second=1)
    fake.block_bot(USER)
    for _ in range(5):
        with pytest.raises(TelegramForbiddenError):
            await bot.send_message(USER, "refused")
    fake.unblock_bot(USER)

    await bot.send_message(USER, "one")
    await bot.send_message(USER + 1, "two")
    assert fake.rate_limited == 0
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(USER + 2, "three")


async def test_block_notify_pushes_my_chat_member(fake: FakeTelegram, bot: Bot) -> None:
    fake.send_message(USER, "hi", first_name="Alice")
    await bot.get_updates(offset=-1, timeout=0)
    assert fake.block_bot(USER + 7) is None  # no update without notify

    pushed = fake.block_bot(USER, notify=True)
    assert pushed is not None
    parsed = Update.model_validate(pushed, context={"bot": bot})
    member = parsed.my_chat_member
    assert member is not None and parsed.event_type == "my_chat_member"
    assert (member.chat.id, member.chat.type, member.from_user.id) == (USER, "private", USER)
    assert (member.old_chat_member.status, member.new_chat_member.status) == ("member", "kicked")
    assert member.new_chat_member.user.id == fake.bot_id

    fake.unblock_bot(USER, notify=True)
    updates = await bot.get_updates(offset=pushed["update_id"], timeout=1)
    assert [u.my_chat_member.new_chat_member.status for u in updates] == ["kicked", "member"]  # type: ignore[union-attr]
    assert updates[1].my_chat_member.from_user.first_name == "Alice"  # type: ignore[union-attr]


async def test_allowed_updates_filter_my_chat_member(fake: FakeTelegram, bot: Bot) -> None:
    await bot.get_updates(timeout=0, allowed_updates=["message"])
    fake.block_bot(USER, notify=True)
    assert await bot.get_updates(timeout=0) == []

    await bot.get_updates(timeout=0, allowed_updates=["message", "my_chat_member"])
    fake.unblock_bot(USER, notify=True)
    [update] = await bot.get_updates(timeout=0)
    assert update.event_type == "my_chat_member"


async def test_drop_next_closes_without_answer_and_does_nothing(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.drop_next("sendMessage", times=2)

    for _ in range(2):
        with pytest.raises(TelegramNetworkError):
            await bot.send_message(USER, "lost")
    assert (await bot.send_message(USER, "third")).text == "third"
    calls = fake.calls_of("sendMessage")
    assert [(c.dropped, c.ok) for c in calls] == [(True, False), (True, False), (False, True)]
    assert [m["text"] for m in fake.sent_messages(USER)] == ["third"]


async def test_drop_next_after_processing_sends_but_loses_the_answer(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.drop_next("sendMessage", after_processing=True)

    with pytest.raises(TelegramNetworkError):
        await bot.send_message(USER, "delivered anyway")
    [call] = fake.calls_of("sendMessage")
    assert call.dropped and call.ok
    assert [m["text"] for m in fake.sent_messages(USER)] == ["delivered anyway"]


async def test_drop_next_for_one_chat_only(fake: FakeTelegram, bot: Bot) -> None:
    fake.drop_next("sendMessage", chat_id=USER)

    await bot.send_message(USER + 1, "unaffected")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(USER, "lost")
    await bot.send_message(USER, "recovered")
    assert [m["text"] for m in fake.sent_messages(USER)] == ["recovered"]
    assert [m["text"] for m in fake.sent_messages(USER + 1)] == ["unaffected"]
