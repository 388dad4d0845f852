"""ChatService on the provider layer: routing by model id, the provider's finish reasons, a
temperature the model rejects, and a stored choice whose provider is gone."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.chat import ChatInput, ChatService, ReplyStatus
from services.conversation import ConversationService
from services.llm import BadRequest, CircuitBreaker, ModelCatalog, StreamChunk, Usage
from services.llm.provider import OnWait, Provider, ProviderRegistry
from services.llm.turns import Turn
from services.llm.types import ModelInfo
from services.storage import SQLiteStorage
from services.users import UserService


@dataclass
class ScriptedChat:
    """A ChatBackend answering from a script; records what it was asked."""

    name: str
    finish: str = "stop"
    reject_temperature: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def stream_chat(
        self,
        *,
        model: str,
        turns: Sequence[Turn],
        max_tokens: int,
        temperature: float | None = None,
        user_key: Hashable = None,
        on_wait: OnWait | None = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        self.calls.append({"model": model, "turns": list(turns), "temperature": temperature})
        if self.reject_temperature and temperature is not None:
            raise BadRequest(400, "Unsupported value: 'temperature' does not support 0.7")
        yield StreamChunk(f"{self.name} says hi")
        yield StreamChunk("", Usage(3, 4, 7), self.finish)

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id="m", name="m", context_length=8000)]


def provider(chat: ScriptedChat, *, primary: bool) -> Provider:
    return Provider(
        name="openai" if primary else chat.name,
        title=chat.name,
        chat=chat,
        catalog=ModelCatalog(chat),
        breaker=CircuitBreaker(),
        primary=primary,
    )


@pytest.fixture
async def storage() -> AsyncIterator[SQLiteStorage]:
    store = SQLiteStorage(":memory:")
    await store.connect()
    yield store
    await store.close()


def service(
    storage: SQLiteStorage, *chats: ScriptedChat, users: UserService | None = None
) -> ChatService:
    registry = ProviderRegistry(
        [provider(chat, primary=n == 0 and chat.name == "primary") for n, chat in enumerate(chats)]
    )
    conversations = ConversationService(
        storage, registry.context_length, max_tokens=500, default_context_tokens=8000
    )
    return ChatService(
        providers=registry,
        conversations=conversations,
        storage=storage,
        default_model="m",
        default_system_prompt="be brief",
        default_vision_model="m",
        users=users,
    )


async def ask(chat: ChatService, users: UserService, text: str, user_id: int = 1) -> Any:
    profile = await users.touch(user_id, username=None, first_name="U", language_code="en")
    reply = chat.start(
        ChatInput(chat_id=user_id, thread_id=None, user_id=user_id, text=text), profile.user
    )
    return reply, await reply.wait()


async def test_the_model_id_chooses_the_provider_and_reaches_it_bare(
    storage: SQLiteStorage,
) -> None:
    primary, giga = ScriptedChat("primary"), ScriptedChat("gigachat")
    users = UserService(storage, frozenset())
    chat = service(storage, primary, giga, users=users)
    _, outcome = await ask(chat, users, "hello")
    assert outcome.text == "primary says hi" and primary.calls[0]["model"] == "m"
    await users.set_model(1, "gigachat:GigaChat-2")
    _, outcome = await ask(chat, users, "and you?")
    assert outcome.text == "gigachat says hi"
    sent = giga.calls[0]
    assert sent["model"] == "GigaChat-2"
    # The history of the first provider's exchange goes along, as neutral turns.
    assert [t.text for t in sent["turns"]] == ["be brief", "hello", "primary says hi", "and you?"]


async def test_a_refused_topic_is_not_stored_and_a_cut_answer_is_marked(
    storage: SQLiteStorage,
) -> None:
    primary = ScriptedChat("primary", finish="refused")
    users = UserService(storage, frozenset())
    chat = service(storage, primary, users=users)
    _, outcome = await ask(chat, users, "forbidden")
    assert outcome.status is ReplyStatus.REFUSED and outcome.text == ""
    primary.finish = "length"
    _, outcome = await ask(chat, users, "long one")
    assert outcome.status is ReplyStatus.COMPLETE and outcome.truncated
    # Only the second exchange is in history: the refusal and its question are not.
    texts = [t.text for t in primary.calls[-1]["turns"]]
    assert "forbidden" not in texts and "primary says hi" not in texts[:-1]
    primary.finish = "stop"
    await ask(chat, users, "third")
    texts = [t.text for t in primary.calls[-1]["turns"]]
    assert "forbidden" not in texts and "long one" in texts


async def test_a_rejected_temperature_is_dropped_once_and_remembered(
    storage: SQLiteStorage,
) -> None:
    primary = ScriptedChat("primary", reject_temperature=True)
    users = UserService(storage, frozenset())
    chat = service(storage, primary, users=users)
    await users.set_temperature(1, 0.7)
    _, outcome = await ask(chat, users, "hi")
    assert outcome.status is ReplyStatus.COMPLETE and outcome.temperature_dropped
    assert [c["temperature"] for c in primary.calls] == [0.7, None]
    _, outcome = await ask(chat, users, "again")
    # The model is known to refuse it: no failed request first, and no second note.
    assert not outcome.temperature_dropped
    assert [c["temperature"] for c in primary.calls] == [0.7, None, None]


async def test_a_choice_whose_provider_is_gone_falls_back_once(storage: SQLiteStorage) -> None:
    primary = ScriptedChat("primary")
    users = UserService(storage, frozenset())
    chat = service(storage, primary, users=users)
    await users.set_model(1, "mashagpt:gpt-4o")
    reply, outcome = await ask(chat, users, "hi")
    assert reply.replaced_model == "mashagpt:gpt-4o"
    assert outcome.text == "primary says hi"
    profile = await users.get(1)
    assert profile is not None and profile.user.model is None  # forgotten: noted once
    reply, _ = await ask(chat, users, "again")
    assert reply.replaced_model is None


def test_registry_resolves_namespaces_and_keeps_ollama_tags_bare() -> None:
    primary, giga = ScriptedChat("primary"), ScriptedChat("gigachat")
    registry = ProviderRegistry([provider(primary, primary=True), provider(giga, primary=False)])
    assert registry.resolve("openai/gpt-4o-mini")[1] == "openai/gpt-4o-mini"
    found, model = registry.resolve("gigachat:GigaChat-2-Max")
    assert found.name == "gigachat" and model == "GigaChat-2-Max"
    assert registry.resolve("qwen2.5:7b") == (registry.providers[0], "qwen2.5:7b")
    assert not registry.is_available("mashagpt:gpt-4o")
    assert registry.providers[1].qualify("GigaChat-2") == "gigachat:GigaChat-2"
    assert not registry.offers("gigachat:GigaChat-2", "stt")
    only_giga = ProviderRegistry([provider(giga, primary=False)])
    assert not only_giga.is_available("openai/gpt-4o-mini")
