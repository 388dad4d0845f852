"""Choosing models from every provider's live list: /model's menu and search, and the
vision and image models offered in /settings.

Ids here are the qualified ones users see and storage keeps (`Provider.qualify`): bare for
the primary provider, `gigachat:GigaChat-2-Max` for the others. A button cannot carry such an
id (Telegram allows 64 bytes of callback data and ids can be longer), so it names a model by
position instead: the provider's index in the registry and the model's index in that
provider's sorted chat list, plus a short digest of the id that tells when the list changed
between drawing the menu and the press.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.llm.provider import Provider, ProviderRegistry
from services.llm.types import ModelInfo
from services.llm.vsegpt import VISION_PREFIX
from services.users import Profile, UserService

__all__ = [
    "Choice",
    "ModelChooser",
    "ModelRef",
    "ProviderModels",
    "locate",
    "model_digest",
]

GIGACHAT = "gigachat"
# GigaChat reads images with its Pro and Max models only ("GigaChat-2-Max", "GigaChat-Pro").
_GIGACHAT_VISION = re.compile(r"-(?:pro|max)(?:-|$)", re.IGNORECASE)


def model_digest(model_id: str) -> str:
    """12 hex characters: fits Telegram's 64-byte callback data whatever the id's length."""
    return hashlib.blake2s(model_id.encode(), digest_size=6).hexdigest()


@dataclass(frozen=True, slots=True)
class ProviderModels:
    """One provider's chat models as the menu shows them."""

    index: int  # the provider's position in the registry: what buttons carry
    title: str
    ids: tuple[str, ...]  # qualified, in the catalog's order (by the provider's own id)

    @property
    def available(self) -> bool:
        # A catalog that never loaded its list serves an empty one; a provider with no chat
        # model at all is just as useless to this menu. Either way: nothing to choose now.
        return bool(self.ids)


@dataclass(frozen=True, slots=True)
class ModelRef:
    """Where a chat model sits in the menu: what a button needs to name it."""

    provider: int
    index: int
    id: str


def locate(lists: Sequence[ProviderModels], model_id: str) -> ModelRef | None:
    """Where `model_id` (qualified, exact) is in the menu; None when no list has it."""
    for models in lists:
        if model_id in models.ids:
            return ModelRef(models.index, models.ids.index(model_id), model_id)
    return None


@dataclass(frozen=True, slots=True)
class Choice:
    """What `/model <text>` came to: a model set, several candidates, or nothing."""

    profile: Profile | None = None  # the text named one chat model, now the user's
    candidates: tuple[ModelRef, ...] = ()  # it matched several: the first `limit` of them
    more: int = 0  # matches beyond `candidates`


class ModelChooser:
    """Sets models in a settings row: a person's (`user_id` > 0) or a group's (its chat id,
    negative); the choice lands in that row alone."""

    def __init__(self, registry: ProviderRegistry, users: UserService) -> None:
        self._providers = registry.providers
        self._users = users

    async def menu(self) -> list[ProviderModels]:
        """Every provider's chat models, in registry order.

        The lists load side by side, so one slow provider does not add its wait to the
        others'; one that fails shows as unavailable (its catalog serves an empty list).
        """
        lists = await asyncio.gather(*(p.catalog.chat_models() for p in self._providers))
        return [
            ProviderModels(index, provider.title, tuple(provider.qualify(m.id) for m in models))
            for index, (provider, models) in enumerate(zip(self._providers, lists, strict=True))
        ]

    async def choose(self, user_id: int, text: str, *, limit: int) -> Choice:
        """Set the chat model `text` names: its exact id (any case), else the one chat model
        whose id contains it. Several matches come back as candidates, none as an empty Choice.
        Non-chat models are never matched: they are not in the lists searched.
        """
        wanted = text.strip().casefold()
        if not wanted:
            return Choice()
        refs = [
            ModelRef(models.index, index, model_id)
            for models in await self.menu()
            for index, model_id in enumerate(models.ids)
        ]
        matches = [r for r in refs if r.id.casefold() == wanted] or [
            r for r in refs if wanted in r.id.casefold()
        ]
        if len(matches) == 1:
            return Choice(profile=await self._users.set_model(user_id, matches[0].id))
        return Choice(candidates=tuple(matches[:limit]), more=max(0, len(matches) - limit))

    async def choose_at(
        self, user_id: int, provider: int, index: int, digest: str
    ) -> Profile | None:
        """Set the model a button named; None when that place no longer holds that model
        (the list changed since the menu was drawn) or never existed (forged data)."""
        if not 0 <= provider < len(self._providers):
            return None
        source = self._providers[provider]
        models = await source.catalog.chat_models()
        if not 0 <= index < len(models):
            return None
        model_id = source.qualify(models[index].id)
        if model_digest(model_id) != digest:
            return None
        return await self._users.set_model(user_id, model_id)

    async def ids_of_kind(self, kind: str) -> list[str]:
        """Qualified ids of the vision or image models, provider by provider, each sorted."""
        belongs = _KIND_RULES[kind]
        lists = await asyncio.gather(*(p.catalog.models() for p in self._providers))
        ids: list[str] = []
        for provider, models in zip(self._providers, lists, strict=True):
            ids.extend(sorted(provider.qualify(m.id) for m in models if belongs(provider, m)))
        return ids

    async def choose_kind_by_digest(self, user_id: int, kind: str, digest: str) -> Profile | None:
        for model_id in await self.ids_of_kind(kind):
            if model_digest(model_id) == digest:
                field = "vision_model" if kind == "vision" else "image_model"
                return await self._users.set_media_choice(user_id, field, model_id)
        return None


# Which models serve the media choices. Each provider tells it its own way, so the rules are
# per provider; the primary provider's media endpoints always exist, the others' only when
# the provider has that capability.


def _reads_images(provider: Provider, model: ModelInfo) -> bool:
    if provider.primary:
        return model.id.startswith(VISION_PREFIX)
    if provider.name == GIGACHAT:
        return model.is_chat and _GIGACHAT_VISION.search(model.id) is not None
    return False


def _draws_images(provider: Provider, model: ModelInfo) -> bool:
    if provider.name == GIGACHAT:
        # GigaChat draws with a built-in function of its chat models, not with a model of
        # its own.
        return provider.images is not None and model.is_chat
    if not provider.primary and provider.images is None:
        return False
    # A model the list calls an image model (VseGPT's id prefixes say it for its list).
    return model.kind == "image"


_KIND_RULES: dict[str, Callable[[Provider, ModelInfo], bool]] = {
    "vision": _reads_images,
    "image": _draws_images,
}
