"""ModelChooser over one and over three providers: qualified ids, search, exact choice,
non-chat models refused, a provider whose list fails, and the media kinds of /settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from services.llm.breaker import CircuitBreaker
from services.llm.catalog import ModelCatalog
from services.llm.errors import ServiceUnavailable
from services.llm.provider import Provider, ProviderRegistry
from services.llm.types import ModelInfo
from services.llm.vsegpt import with_prefix_kinds
from services.model_choice import ModelChooser, ModelRef, locate, model_digest
from services.storage import SQLiteStorage
from services.users import UserService

USER = 501


class StubModels:
    """A provider's model list: the models it returns, or the error it raises."""

    def __init__(self, models: Sequence[ModelInfo] = (), error: Exception | None = None) -> None:
        self.models = list(models)
        self.error = error

    async def list_models(self) -> list[ModelInfo]:
        if self.error is not None:
            raise self.error
        return list(self.models)

    def stream_chat(self, **_: Any) -> AsyncIterator[Any]:
        raise AssertionError("the chooser never chats")


def chat(model_id: str) -> ModelInfo:
    return ModelInfo(id=model_id, name=model_id, context_length=8192)


def other(model_id: str, kind: str) -> ModelInfo:
    return ModelInfo(id=model_id, name=model_id, context_length=None, kind=kind)


VSEGPT_MODELS = [
    chat("openai/gpt-4o-mini"),
    chat("openai/gpt-4o"),
    chat("anthropic/claude-3-haiku"),
    chat("vis-google/gemini-flash-1.5"),
    other("img-dummy/image", "chat"),  # a media model by VseGPT's prefix only
    other("dall-e-3", "chat"),
    other("emb-openai/text-embedding-3-small", "chat"),
    other("gpt-image-1", "image"),  # a generic server's image model, told by its kind
]
GIGACHAT_MODELS = [
    chat("GigaChat-2"),
    chat("GigaChat-2-Pro"),
    chat("GigaChat-2-Max"),
    other("Embeddings", "embedding"),
    other("GigaChat-2-Max-check", "aicheck"),
]
MASHAGPT_MODELS = [
    chat("gpt-4o-mini"),
    chat("claude-sonnet-4-5"),
    other("flux-pro", "image"),
]


def provider(
    name: str,
    models: Sequence[ModelInfo] = (),
    *,
    title: str = "",
    primary: bool = False,
    images: bool = False,
    error: Exception | None = None,
) -> Provider:
    # The primary provider's list goes through VseGPT's id-prefix rules, as in the bot.
    source = StubModels(with_prefix_kinds(list(models)) if primary else models, error)
    return Provider(
        name=name,
        title=title or name.capitalize(),
        chat=source,
        catalog=ModelCatalog(source),
        breaker=CircuitBreaker(),
        primary=primary,
        images=object() if images else None,  # type: ignore[arg-type]  # only its presence counts
    )


def three_providers(*, gigachat_error: Exception | None = None) -> list[Provider]:
    return [
        provider("openai", VSEGPT_MODELS, title="VseGPT", primary=True, images=True),
        provider("gigachat", GIGACHAT_MODELS, title="GigaChat", images=True, error=gigachat_error),
        provider("mashagpt", MASHAGPT_MODELS, title="MashaGPT", images=True),
    ]


@pytest.fixture
async def users() -> AsyncIterator[UserService]:
    storage = SQLiteStorage(":memory:")
    await storage.connect()
    service = UserService(storage, frozenset())
    await service.touch(USER, username=None, first_name="U", language_code="en")
    yield service
    await storage.close()


async def model_of(users: UserService) -> str | None:
    profile = await users.get(USER)
    assert profile is not None
    return profile.user.model


async def test_one_provider_menu_lists_its_chat_models_sorted(users: UserService) -> None:
    solo = provider("openai", VSEGPT_MODELS, title="VseGPT", primary=True)
    lists = await ModelChooser(ProviderRegistry([solo]), users).menu()
    assert [(m.index, m.title) for m in lists] == [(0, "VseGPT")]
    ids = lists[0].ids
    assert list(ids) == sorted(ids)
    # Bare ids (the primary provider's); vis- models are chat models that also read images.
    assert {"anthropic/claude-3-haiku", "openai/gpt-4o", "vis-google/gemini-flash-1.5"} <= set(ids)
    # Media models, told by VseGPT's prefixes or by the kind the list gives, are not listed.
    assert not {"img-dummy/image", "emb-openai/text-embedding-3-small", "gpt-image-1"} & set(ids)


async def test_three_providers_menu_qualifies_the_others_ids(users: UserService) -> None:
    lists = await ModelChooser(ProviderRegistry(three_providers()), users).menu()
    assert [m.title for m in lists] == ["VseGPT", "GigaChat", "MashaGPT"]
    assert lists[1].ids == (
        "gigachat:GigaChat-2",
        "gigachat:GigaChat-2-Max",
        "gigachat:GigaChat-2-Pro",
    )
    assert lists[2].ids == ("mashagpt:claude-sonnet-4-5", "mashagpt:gpt-4o-mini")
    assert all(m.available for m in lists)
    assert locate(lists, "gigachat:GigaChat-2-Pro") == ModelRef(1, 2, "gigachat:GigaChat-2-Pro")
    assert locate(lists, "gigachat:Embeddings") is None


async def test_lists_load_side_by_side(users: UserService) -> None:
    # The first provider's list answers only once the second's was asked for: loading them
    # one after the other would never finish.
    second_asked = asyncio.Event()

    class Waiting(StubModels):
        async def list_models(self) -> list[ModelInfo]:
            await second_asked.wait()
            return [chat("a/slow")]

    class Signalling(StubModels):
        async def list_models(self) -> list[ModelInfo]:
            second_asked.set()
            return [chat("fast")]

    slow, fast = provider("openai", primary=True), provider("mashagpt")
    slow.catalog, fast.catalog = ModelCatalog(Waiting()), ModelCatalog(Signalling())
    chooser = ModelChooser(ProviderRegistry([slow, fast]), users)
    lists = await asyncio.wait_for(chooser.menu(), timeout=2)
    assert [m.ids for m in lists] == [("a/slow",), ("mashagpt:fast",)]


@pytest.mark.parametrize(
    ("text", "chosen"),
    [
        ("gigachat:GigaChat-2-Max", "gigachat:GigaChat-2-Max"),
        ("  GIGACHAT:gigachat-2-max ", "gigachat:GigaChat-2-Max"),  # any case, trimmed
        ("OpenAI/GPT-4o-mini", "openai/gpt-4o-mini"),  # the primary provider's bare id
        # An exact id wins over the longer ids that contain it.
        ("openai/gpt-4o", "openai/gpt-4o"),
        ("gigachat:gigachat-2", "gigachat:GigaChat-2"),
        # Otherwise the one chat model whose id contains the text.
        ("claude-3-h", "anthropic/claude-3-haiku"),
        ("sonnet", "mashagpt:claude-sonnet-4-5"),
    ],
)
async def test_a_text_naming_one_chat_model_sets_it(
    users: UserService, text: str, chosen: str
) -> None:
    chooser = ModelChooser(ProviderRegistry(three_providers()), users)
    choice = await chooser.choose(USER, text, limit=8)
    assert choice.profile is not None and choice.profile.user.model == chosen
    assert not choice.candidates
    assert await model_of(users) == chosen


async def test_several_matches_across_providers_are_candidates(users: UserService) -> None:
    chooser = ModelChooser(ProviderRegistry(three_providers()), users)
    choice = await chooser.choose(USER, "gpt-4o-mini", limit=8)
    assert choice.profile is None
    assert [r.id for r in choice.candidates] == ["openai/gpt-4o-mini", "mashagpt:gpt-4o-mini"]
    assert choice.candidates[1] == ModelRef(2, 1, "mashagpt:gpt-4o-mini")
    assert choice.more == 0
    assert await model_of(users) is None  # nothing set until one is picked


async def test_matches_beyond_the_limit_are_counted(users: UserService) -> None:
    chooser = ModelChooser(ProviderRegistry(three_providers()), users)
    choice = await chooser.choose(USER, "giga", limit=2)
    assert [r.id for r in choice.candidates] == ["gigachat:GigaChat-2", "gigachat:GigaChat-2-Max"]
    assert choice.more == 1


@pytest.mark.parametrize(
    "text",
    [
        "no-such/model",
        "img-dummy/image",  # listed, but not a chat model
        "gpt-image-1",
        "gigachat:Embeddings",
        "Embeddings",
        "mashagpt:flux-pro",
        "   ",
    ],
)
async def test_no_chat_model_no_choice(users: UserService, text: str) -> None:
    chooser = ModelChooser(ProviderRegistry(three_providers()), users)
    choice = await chooser.choose(USER, text, limit=8)
    assert choice.profile is None and not choice.candidates and choice.more == 0
    assert await model_of(users) is None


async def test_a_failing_provider_is_unavailable_and_the_others_still_serve(
    users: UserService,
) -> None:
    registry = ProviderRegistry(three_providers(gigachat_error=ServiceUnavailable(503, "down")))
    chooser = ModelChooser(registry, users)
    lists = await chooser.menu()
    assert [m.available for m in lists] == [True, False, True]
    assert lists[1].ids == ()
    assert lists[0].ids and lists[2].ids
    choice = await chooser.choose(USER, "mashagpt:gpt-4o-mini", limit=8)
    assert choice.profile is not None
    assert (await chooser.choose(USER, "gigachat:GigaChat-2-Max", limit=8)).profile is None


async def test_choose_at_sets_the_model_a_button_names(users: UserService) -> None:
    chooser = ModelChooser(ProviderRegistry(three_providers()), users)
    model_id = "gigachat:GigaChat-2-Max"
    profile = await chooser.choose_at(USER, 1, 1, model_digest(model_id))
    assert profile is not None and profile.user.model == model_id


@pytest.mark.parametrize(
    ("place", "digest_of"),
    [
        ((1, 1), "gigachat:GigaChat-2-Pro"),  # the digest of another model at that place
        ((1, 3), "gigachat:GigaChat-2-Max"),  # beyond the chat list (3: Embeddings' spot)
        ((1, -1), "gigachat:GigaChat-2-Pro"),
        ((3, 0), "openai/gpt-4o-mini"),  # no such provider
        ((-1, 0), "mashagpt:gpt-4o-mini"),
    ],
)
async def test_choose_at_refuses_a_place_that_does_not_hold_that_model(
    users: UserService, place: tuple[int, int], digest_of: str
) -> None:
    chooser = ModelChooser(ProviderRegistry(three_providers()), users)
    assert await chooser.choose_at(USER, *place, model_digest(digest_of)) is None
    assert await model_of(users) is None


async def test_choose_at_notices_a_list_that_changed_since_the_menu(users: UserService) -> None:
    providers = three_providers()
    chooser = ModelChooser(ProviderRegistry(providers), users)
    lists = await chooser.menu()
    ref = locate(lists, "mashagpt:gpt-4o-mini")
    assert ref is not None
    # A model sorted before it appears: its index now holds another model.
    source = providers[2].chat
    assert isinstance(source, StubModels)
    source.models.append(chat("deepseek-chat"))
    providers[2].catalog.invalidate()
    digest = model_digest(ref.id)
    assert await chooser.choose_at(USER, ref.provider, ref.index, digest) is None
    assert await model_of(users) is None


async def test_vision_models_come_from_vsegpt_prefixes_and_gigachat_pro_max(
    users: UserService,
) -> None:
    chooser = ModelChooser(ProviderRegistry(three_providers()), users)
    assert await chooser.ids_of_kind("vision") == [
        "vis-google/gemini-flash-1.5",
        "gigachat:GigaChat-2-Max",
        "gigachat:GigaChat-2-Pro",
    ]


async def test_image_models_come_from_each_provider_that_draws(users: UserService) -> None:
    chooser = ModelChooser(ProviderRegistry(three_providers()), users)
    assert await chooser.ids_of_kind("image") == [
        "dall-e-3",
        "gpt-image-1",
        "img-dummy/image",
        # GigaChat draws with its chat models (a built-in function), not with Embeddings.
        "gigachat:GigaChat-2",
        "gigachat:GigaChat-2-Max",
        "gigachat:GigaChat-2-Pro",
        "mashagpt:flux-pro",
    ]


async def test_providers_that_cannot_draw_offer_no_image_models(users: UserService) -> None:
    registry = ProviderRegistry(
        [
            provider("openai", VSEGPT_MODELS, primary=True),
            provider("gigachat", GIGACHAT_MODELS),
            provider("mashagpt", MASHAGPT_MODELS),
        ]
    )
    ids = await ModelChooser(registry, users).ids_of_kind("image")
    # The primary provider's image endpoint is always there.
    assert ids == ["dall-e-3", "gpt-image-1", "img-dummy/image"]


async def test_choose_kind_by_digest_stores_the_qualified_id(users: UserService) -> None:
    chooser = ModelChooser(ProviderRegistry(three_providers()), users)
    profile = await chooser.choose_kind_by_digest(
        USER, "vision", model_digest("gigachat:GigaChat-2-Pro")
    )
    assert profile is not None and profile.user.vision_model == "gigachat:GigaChat-2-Pro"
    profile = await chooser.choose_kind_by_digest(USER, "image", model_digest("mashagpt:flux-pro"))
    assert profile is not None and profile.user.image_model == "mashagpt:flux-pro"
    # A chat model that does not read images is not a vision choice.
    refused = await chooser.choose_kind_by_digest(
        USER, "vision", model_digest("gigachat:GigaChat-2")
    )
    assert refused is None
