"""The /model menu: its keyboards, and its handlers driven with a bot whose session records
the requests instead of sending them (aiogram's mocked-bot pattern)."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.filters import CommandObject
from aiogram.methods import EditMessageText, SendMessage, TelegramMethod
from aiogram.types import CallbackQuery, Chat, InlineKeyboardMarkup, Message, User
from aiogram.utils.callback_answer import CallbackAnswer

from handlers.model import model_command, model_page, model_pick, model_provider
from handlers.ui.callbacks import ModelPage, ModelPick, ModelProvider
from handlers.ui.keyboards import model_matches_keyboard, models_keyboard, providers_keyboard
from services.llm.errors import ServiceUnavailable
from services.llm.provider import Provider, ProviderRegistry
from services.model_choice import ModelChooser, ModelRef, ProviderModels, model_digest
from services.storage import UserRecord
from services.users import Profile, UserService
from tests.unit.test_model_choice import (
    USER,
    VSEGPT_MODELS,
    chat,
    provider,
    three_providers,
    users,
)

__all__ = ["users"]  # the fixture, shared with the chooser's tests

DEFAULT_MODEL = "openai/gpt-4o-mini"
EXPIRED = "This button has expired."
LONG_ID = "vendor/" + "x" * 193  # 200 characters


def callback_data(markup: object) -> list[str]:
    assert isinstance(markup, InlineKeyboardMarkup)
    return [b.callback_data or "" for row in markup.inline_keyboard for b in row]


def labels(markup: object) -> list[str]:
    assert isinstance(markup, InlineKeyboardMarkup)
    return [b.text for row in markup.inline_keyboard for b in row]


# --------------------------------------------------------------------------------- keyboards


def test_model_buttons_fit_64_bytes_for_any_id_and_name_their_place() -> None:
    ids = [f"vendor/model-{i:03d}" for i in range(150)] + [LONG_ID]
    markup, page, _ = models_keyboard(ids, LONG_ID, 99, provider=12, back_to_providers="« Back")
    assert page == 18  # clamped to the last page, which holds the long id
    for data in callback_data(markup):
        assert len(data.encode()) <= 64, data
    pick = ModelPick.unpack(callback_data(markup)[-4])
    assert (pick.provider, pick.index, pick.digest) == (12, 150, model_digest(LONG_ID))
    assert labels(markup)[-4] == f"✅ {LONG_ID}"


def test_models_keyboard_pages_carry_the_provider_and_mark_the_current() -> None:
    ids = [f"gigachat:model-{i:02d}" for i in range(20)]
    markup, page, pages = models_keyboard(ids, "gigachat:model-09", 1, provider=1)
    assert (page, pages) == (1, 3)
    assert "✅ gigachat:model-09" in labels(markup)
    assert "gigachat:model-08" in labels(markup) and "gigachat:model-16" not in labels(markup)
    nav = markup.inline_keyboard[-1]
    assert [ModelPage.unpack(b.callback_data or "") for b in nav] == [
        ModelPage(provider=1, page=0),
        ModelPage(provider=1, page=1),
        ModelPage(provider=1, page=2),
    ]
    first = ModelPick.unpack(markup.inline_keyboard[0][0].callback_data or "")
    assert (first.provider, first.index) == (1, 8)  # the index in the whole list


def test_models_keyboard_leads_back_to_the_providers_only_when_asked() -> None:
    alone, _, _ = models_keyboard(["a/b"], "a/b", 0)
    assert not any(d.startswith("mv:") for d in callback_data(alone))
    several, _, _ = models_keyboard(["a/b"], "a/b", 0, back_to_providers="« Providers")
    assert several.inline_keyboard[-1][0].text == "« Providers"
    assert ModelProvider.unpack(callback_data(several)[-1]) == ModelProvider(index=None)


def test_providers_keyboard_marks_the_current_models_provider() -> None:
    lists = [ProviderModels(0, "VseGPT", ("a/b",)), ProviderModels(2, "MashaGPT", ("m:c",))]
    markup = providers_keyboard(lists, 2)
    assert labels(markup) == ["VseGPT", "✅ MashaGPT"]
    assert [ModelProvider.unpack(d).index for d in callback_data(markup)] == [0, 2]


def test_matches_keyboard_names_models_of_any_provider() -> None:
    matches = [ModelRef(0, 3, "openai/gpt-4o-mini"), ModelRef(2, 1, "mashagpt:gpt-4o-mini")]
    markup = model_matches_keyboard(matches, "mashagpt:gpt-4o-mini")
    assert labels(markup) == ["openai/gpt-4o-mini", "✅ mashagpt:gpt-4o-mini"]
    picks = [ModelPick.unpack(d) for d in callback_data(markup)]
    assert [(p.provider, p.index) for p in picks] == [(0, 3), (2, 1)]
    assert picks[1].digest == model_digest("mashagpt:gpt-4o-mini")


# ---------------------------------------------------------------------------------- handlers


class RecordingSession(BaseSession):
    """Keeps every request the bot makes and answers each with success."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[TelegramMethod[Any]] = []

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[Any],
        timeout: int | None = None,  # noqa: ASYNC109  # aiogram's signature
    ) -> Any:
        self.requests.append(method)
        return True

    async def stream_content(self, *args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        raise NotImplementedError
        yield b""

    async def close(self) -> None:
        pass


class FakeChat:
    """The one thing the menu asks the chat service: the user's model or the default."""

    def model_for(self, user: UserRecord) -> str:
        return user.model or DEFAULT_MODEL


class Menu:
    """One user's /model menu over a set of providers."""

    def __init__(self, providers: list[Provider], users: UserService) -> None:
        self.session = RecordingSession()
        self.bot = Bot("42:TEST", session=self.session)
        self.models = ModelChooser(ProviderRegistry(providers), users)
        self.users = users
        self.chat = FakeChat()

    async def profile(self) -> Profile:
        profile = await self.users.get(USER)
        assert profile is not None
        return profile

    def message(self, text: str) -> Message:
        return Message(
            message_id=1,
            date=datetime.datetime.now(datetime.UTC),
            chat=Chat(id=USER, type="private"),
            text=text,
        ).as_(self.bot)

    async def command(self, args: str | None = None) -> SendMessage:
        text = "/model" + (f" {args}" if args else "")
        command = CommandObject(prefix="/", command="model", args=args)
        await model_command(
            self.message(text), command, self.models, self.chat, await self.profile()
        )
        sent = self.session.requests.pop()
        assert isinstance(sent, SendMessage)
        return sent

    async def press(self, handler: Any, data: Any) -> tuple[CallbackAnswer, EditMessageText | None]:
        """Press a button under an old menu; the toast and the menu's redraw, if any."""
        query = CallbackQuery(
            id="1",
            from_user=User(id=USER, is_bot=False, first_name="U"),
            chat_instance="c",
            data=data.pack(),
            message=self.message("an older menu"),
        ).as_(self.bot)
        answer = CallbackAnswer(answered=False)
        await handler(query, data, answer, self.models, self.chat, await self.profile())
        edits = [r for r in self.session.requests if isinstance(r, EditMessageText)]
        self.session.requests.clear()
        return answer, edits[-1] if edits else None


def many_vsegpt_models() -> Provider:
    models = [chat(f"vendor/model-{i:02d}") for i in range(12)]
    return provider("openai", models, title="VseGPT", primary=True)


async def test_one_provider_opens_its_models_at_once(users: UserService) -> None:
    menu = Menu([provider("openai", VSEGPT_MODELS, title="VseGPT", primary=True)], users)
    sent = await menu.command()
    assert "Page 1/1" in sent.text and "<b>VseGPT</b>" not in sent.text
    assert f"✅ {DEFAULT_MODEL}" in labels(sent.reply_markup)
    # No level of providers, so no way to it either.
    assert not any(d.startswith("mv:") for d in callback_data(sent.reply_markup))


async def test_one_provider_without_a_list_says_so(users: UserService) -> None:
    down = provider("openai", primary=True, error=ServiceUnavailable(503, "down"))
    sent = await Menu([down], users).command()
    assert "not available right now" in sent.text and sent.reply_markup is None


async def test_several_providers_open_on_the_current_models_provider_and_page(
    users: UserService,
) -> None:
    providers = three_providers()
    providers[0] = many_vsegpt_models()
    menu = Menu(providers, users)
    await users.set_model(USER, "vendor/model-10")
    sent = await menu.command()
    assert sent.text.startswith("<b>VseGPT</b>\n") and "Page 2/2" in sent.text
    assert "✅ vendor/model-10" in labels(sent.reply_markup)
    assert labels(sent.reply_markup)[-1] == "« Providers"

    await users.set_model(USER, "gigachat:GigaChat-2-Pro")
    sent = await menu.command()
    assert sent.text.startswith("<b>GigaChat</b>\n")
    assert "✅ gigachat:GigaChat-2-Pro" in labels(sent.reply_markup)


async def test_a_current_model_in_no_list_opens_the_providers(users: UserService) -> None:
    await users.set_model(USER, "openai/retired-model")
    sent = await Menu(three_providers(), users).command()
    assert "Choose a provider" in sent.text and "openai/retired-model" in sent.text
    assert labels(sent.reply_markup) == ["VseGPT", "GigaChat", "MashaGPT"]


async def test_a_provider_without_a_list_is_a_line_not_a_button(users: UserService) -> None:
    providers = three_providers(gigachat_error=ServiceUnavailable(503, "down"))
    menu = Menu(providers, users)
    _, edit = await menu.press(model_provider, ModelProvider(index=None))
    assert edit is not None
    assert "Models of GigaChat are unavailable now." in edit.text
    # The default model is VseGPT's: its provider is marked.
    assert labels(edit.reply_markup) == ["✅ VseGPT", "MashaGPT"]
    # A button drawn before the outage: the line, and the way back.
    _, edit = await menu.press(model_provider, ModelProvider(index=1))
    assert edit is not None and "Models of GigaChat are unavailable now." in edit.text
    assert labels(edit.reply_markup) == ["« Providers"]


async def test_a_provider_button_opens_its_models(users: UserService) -> None:
    menu = Menu(three_providers(), users)
    answer, edit = await menu.press(model_provider, ModelProvider(index=2))
    assert edit is not None and edit.text.startswith("<b>MashaGPT</b>\n")
    assert labels(edit.reply_markup) == [
        "mashagpt:claude-sonnet-4-5",
        "mashagpt:gpt-4o-mini",
        "« Providers",
    ]
    assert answer.text is None


@pytest.mark.parametrize(
    ("handler", "data"),
    [
        (model_provider, ModelProvider(index=3)),
        (model_provider, ModelProvider(index=-1)),
        (model_page, ModelPage(provider=3, page=0)),
        (model_page, ModelPage(provider=0, page=1)),  # VseGPT's list has one page
        (model_page, ModelPage(provider=1, page=-1)),
    ],
)
async def test_forged_places_expire(users: UserService, handler: Any, data: Any) -> None:
    answer, edit = await Menu(three_providers(), users).press(handler, data)
    assert answer.text == EXPIRED and edit is None


async def test_a_page_button_shows_that_page_of_that_provider(users: UserService) -> None:
    providers = three_providers()
    providers[0] = many_vsegpt_models()
    _, edit = await Menu(providers, users).press(model_page, ModelPage(provider=0, page=1))
    assert edit is not None and "Page 2/2" in edit.text
    assert "vendor/model-11" in labels(edit.reply_markup)


async def test_picking_a_model_sets_it_and_redraws_the_menu(users: UserService) -> None:
    menu = Menu(three_providers(), users)
    model_id = "gigachat:GigaChat-2-Max"
    answer, edit = await menu.press(
        model_pick, ModelPick(provider=1, index=1, digest=model_digest(model_id))
    )
    assert answer.text == f"✅ Model set: {model_id}" and not answer.show_alert
    assert (await menu.profile()).user.model == model_id
    assert edit is not None and edit.text.startswith("<b>GigaChat</b>\n")
    assert f"✅ {model_id}" in labels(edit.reply_markup)


async def test_a_pick_from_a_changed_list_alerts_and_redraws(users: UserService) -> None:
    menu = Menu(three_providers(), users)
    stale = ModelPick(provider=1, index=0, digest=model_digest("gigachat:GigaChat-Lite"))
    answer, edit = await menu.press(model_pick, stale)
    assert answer.text == "That model is no longer in the list. Send /model again."
    assert answer.show_alert
    assert (await menu.profile()).user.model is None
    assert edit is not None and f"✅ {DEFAULT_MODEL}" in labels(edit.reply_markup)


async def test_model_by_exact_id_or_a_unique_part(users: UserService) -> None:
    menu = Menu(three_providers(), users)
    sent = await menu.command("GigaChat:GigaChat-2-max")
    assert sent.text == "✅ Model set: <code>gigachat:GigaChat-2-Max</code>"
    sent = await menu.command("sonnet")
    assert sent.text == "✅ Model set: <code>mashagpt:claude-sonnet-4-5</code>"


async def test_several_matches_become_a_pick_list(users: UserService) -> None:
    menu = Menu(three_providers(), users)
    sent = await menu.command("gpt-4o-mini")
    assert sent.text == "Several models match <code>gpt-4o-mini</code>. Choose one:"
    assert labels(sent.reply_markup) == [
        f"✅ {DEFAULT_MODEL}",
        "mashagpt:gpt-4o-mini",
    ]
    assert (await menu.profile()).user.model is None


async def test_too_many_matches_ask_for_more_precision(users: UserService) -> None:
    providers = three_providers()
    providers[0] = many_vsegpt_models()
    sent = await Menu(providers, users).command("model-")
    assert len(labels(sent.reply_markup)) == 8
    assert sent.text.endswith("\n…and 4 more: be more precise.")


async def test_no_chat_model_is_unknown_and_a_long_text_is_cut(users: UserService) -> None:
    menu = Menu(three_providers(), users)
    sent = await menu.command("img-dummy/image")
    assert "There is no chat model <code>img-dummy/image</code>" in sent.text
    sent = await menu.command("<" * 5000)
    assert "&lt;" * 100 + "…</code>" in sent.text and len(sent.text) < 1000
    assert (await menu.profile()).user.model is None
