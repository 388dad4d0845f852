"""Choosing a chat model from the live list, by id or by a short digest of it."""

from __future__ import annotations

import hashlib

from services.llm import ModelCatalog
from services.users import Profile, UserService


def model_digest(model_id: str) -> str:
    """12 hex characters: fits Telegram's 64-byte callback data whatever the id's length."""
    return hashlib.blake2s(model_id.encode(), digest_size=6).hexdigest()


# Which models serve which purpose, by VseGPT's id prefixes. Image models also
# include the unprefixed DALL·E ids that VseGPT maps for OpenAI compatibility.
KIND_PREFIXES = {
    "vision": ("vis-",),
    "image": ("img-", "dall-e"),
}


class ModelChooser:
    def __init__(self, catalog: ModelCatalog, users: UserService) -> None:
        self._catalog = catalog
        self._users = users

    async def chat_model_ids(self) -> list[str]:
        return [m.id for m in await self._catalog.chat_models()]

    async def choose(self, user_id: int, model_id: str) -> Profile | None:
        """Set the user's model if it is a known chat model; None otherwise."""
        model_id = model_id.strip()
        for model in await self._catalog.chat_models():
            if model.id == model_id or model.id.lower() == model_id.lower():
                return await self._users.set_model(user_id, model.id)
        return None

    async def ids_of_kind(self, kind: str) -> list[str]:
        prefixes = KIND_PREFIXES[kind]
        return sorted(m.id for m in await self._catalog.models() if m.id.startswith(prefixes))

    async def choose_kind_by_digest(self, user_id: int, kind: str, digest: str) -> Profile | None:
        for model_id in await self.ids_of_kind(kind):
            if model_digest(model_id) == digest:
                field = "vision_model" if kind == "vision" else "image_model"
                return await self._users.set_media_choice(user_id, field, model_id)
        return None

    async def choose_by_digest(self, user_id: int, digest: str) -> Profile | None:
        for model in await self._catalog.chat_models():
            if model_digest(model.id) == digest:
                return await self._users.set_model(user_id, model.id)
        return None
