"""Users and their settings, with a small in-process cache in front of storage.

Every update needs the sender's settings; reading them from the database each time
would put a query on the hot path. The cache is bounded and write-through: every
change goes to storage first, then replaces the cached record.

With replicas, another process may change a record this one has cached: each change is
published (`ProfileChanges`, services/shared/invalidation.py) and every replica forgets the ids
(services/replica_cache.py: a read under way meanwhile is not kept; with `max_age`, an old
record is read again in case a notice was lost).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from services.replica_cache import ReplicaCache
from services.storage import Storage, UserRecord

RUSSIAN_FAMILY = frozenset({"ru", "uk", "be", "kk"})
LANGUAGES = ("ru", "en")
TEMPERATURE_RANGE = (0.0, 2.0)
MAX_SYSTEM_PROMPT = 4000
MEDIA_FIELDS = frozenset({"vision_model", "image_model", "tts_voice", "reply_mode"})


def is_group(record_id: int) -> bool:
    """A settings row of a group, not of a person: Telegram gives groups negative ids."""
    return record_id < 0


def language_for(telegram_code: str | None) -> str:
    """ru for Russian, Ukrainian, Belarusian and Kazakh speakers; en otherwise."""
    if not telegram_code:
        return "en"
    base = telegram_code.split("-")[0].lower()
    return "ru" if base in RUSSIAN_FAMILY else "en"


@dataclass(frozen=True, slots=True)
class Profile:
    """What a handler needs to know about the person behind an update."""

    user: UserRecord
    lang: str
    is_admin: bool


class ProfileChanges(Protocol):
    """Tells the other replicas which users' (or groups') settings changed."""

    async def publish(self, ids: Iterable[int]) -> None: ...


class UserService:
    def __init__(
        self,
        storage: Storage,
        admin_ids: frozenset[int],
        *,
        cache_size: int = 10_000,
        changes: ProfileChanges | None = None,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._admins = admin_ids
        # Users' (and groups') records by id; other replicas' changes empty it
        # (services/replica_cache.py), driven by the relay the factory starts.
        self.cache: ReplicaCache[int, UserRecord] = ReplicaCache(
            cache_size, max_age=max_age, clock=clock
        )
        self._changes = changes

    def is_admin(self, user_id: int) -> bool:
        return user_id in self._admins

    async def _changed(self, ids: list[int]) -> None:
        # Before the caller answers: the user's next update finds the other caches cleared.
        if self._changes is not None:
            await self._changes.publish(ids)

    def _profile(self, record: UserRecord) -> Profile:
        lang = record.language or language_for(record.language_code)
        return Profile(user=record, lang=lang, is_admin=record.user_id in self._admins)

    async def touch(
        self,
        user_id: int,
        *,
        username: str | None,
        first_name: str | None,
        language_code: str | None,
    ) -> Profile:
        """Return the sender's profile, writing only when Telegram's fields changed."""
        cached = self.cache.get(user_id)
        if (
            cached is not None
            and cached.username == username
            and cached.first_name == first_name
            and cached.language_code == language_code
            and not cached.is_blocked  # a message proves the bot is not blocked any more
        ):
            return self._profile(cached)
        stamp = self.cache.stamp()
        record = await self._storage.upsert_user(
            user_id, username=username, first_name=first_name, language_code=language_code
        )
        return self._profile(self.cache.put(record.user_id, record, stamp))

    async def chat_settings(self, chat_id: int, title: str | None) -> UserRecord:
        """A group's own settings (model, persona, temperature, vision model): a row in the
        users table under the group's chat id (negative in Telegram), so the settings code
        serves people and groups alike. Created on first use; the title is kept in the name
        column (for admins' eyes only) and written again only when it changes.

        Not a person: never wrap the record in a `Profile`, nor count it as a user.
        """
        cached = self.cache.get(chat_id)
        if cached is not None and cached.first_name == title and not cached.is_blocked:
            # An update from the group proves the bot is (again) in it.
            return cached
        stamp = self.cache.stamp()
        record = await self._storage.upsert_user(
            chat_id, username=None, first_name=title, language_code=None
        )
        return self.cache.put(record.user_id, record, stamp)

    async def get(self, user_id: int) -> Profile | None:
        cached = self.cache.get(user_id)
        if cached is not None:
            return self._profile(cached)
        stamp = self.cache.stamp()
        record = await self._storage.get_user(user_id)
        return self._profile(self.cache.put(record.user_id, record, stamp)) if record else None

    async def set_language(self, user_id: int, lang: str | None) -> Profile:
        if lang is not None and lang not in LANGUAGES:
            raise ValueError(f"unsupported language {lang!r}")
        return await self._update(user_id, language=lang)

    async def set_model(self, user_id: int, model: str | None) -> Profile:
        return await self._update(user_id, model=model)

    async def set_system_prompt(self, user_id: int, prompt: str | None) -> Profile:
        if prompt is not None:
            prompt = prompt.strip()[:MAX_SYSTEM_PROMPT] or None
        return await self._update(user_id, system_prompt=prompt)

    async def set_temperature(self, user_id: int, temperature: float | None) -> Profile:
        if temperature is not None:
            low, high = TEMPERATURE_RANGE
            if not low <= temperature <= high:
                raise ValueError(f"temperature must be within {low}..{high}")
        return await self._update(user_id, temperature=temperature)

    async def set_media_choice(self, user_id: int, field: str, value: str | None) -> Profile:
        """vision_model, image_model, tts_voice or reply_mode; None returns to the default."""
        if field not in MEDIA_FIELDS:
            raise ValueError(f"unknown media setting {field!r}")
        return await self._update(user_id, **{field: value})

    async def set_blocked(self, user_id: int, blocked: bool) -> None:
        """The user blocked (or unblocked) the bot: broadcasts skip blocked users. For a
        group's row (a negative id): the bot was removed from (or added back to) the group."""
        await self.mark_blocked([user_id], blocked)

    async def mark_blocked(self, ids: list[int], blocked: bool = True) -> None:
        """set_blocked for many (a broadcast's page of users found to have blocked the bot)."""
        if not ids:
            return
        await self._storage.set_users_blocked(ids, blocked)
        for record_id in ids:
            cached = self.cache.peek(record_id)
            if cached is not None:
                cached.is_blocked = blocked
        await self._changed(ids)

    async def reset(self, user_id: int) -> Profile:
        stamp = self.cache.stamp()
        record = await self._storage.reset_user_settings(user_id)
        await self._changed([user_id])
        return self._profile(self.cache.put(record.user_id, record, stamp))

    async def _update(self, user_id: int, **fields: object) -> Profile:
        stamp = self.cache.stamp()
        record = await self._storage.update_user_settings(user_id, **fields)
        await self._changed([user_id])
        return self._profile(self.cache.put(record.user_id, record, stamp))
