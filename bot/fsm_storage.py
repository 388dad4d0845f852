"""aiogram's in-memory FSM storage, without a record for everyone who ever wrote.

The stock `MemoryStorage` keeps its records in a defaultdict, and aiogram's FSM middleware
reads the state on every update: each new chat left an empty record behind for the life of
the process (a few hundred bytes per chat, without bound). Here reads never create records,
and a record that is back to empty (no state, no data) is dropped. What handlers see is the
same: a missing record reads as no state and no data, exactly like a fresh one.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import copy
from typing import Any

from aiogram.fsm.storage.base import StateType, StorageKey
from aiogram.fsm.storage.memory import MemoryStorage


class CompactMemoryStorage(MemoryStorage):
    async def get_state(self, key: StorageKey) -> str | None:
        record = self.storage.get(key)
        return record.state if record is not None else None

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        record = self.storage.get(key)
        return record.data.copy() if record is not None else {}

    async def get_value(
        self, storage_key: StorageKey, dict_key: str, default: Any | None = None
    ) -> Any | None:
        record = self.storage.get(storage_key)
        if record is None:
            return default
        return copy(record.data.get(dict_key, default))

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        await super().set_state(key, state)
        self._drop_if_empty(key)

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await super().set_data(key, data)
        self._drop_if_empty(key)

    def _drop_if_empty(self, key: StorageKey) -> None:
        record = self.storage.get(key)
        if record is not None and record.state is None and not record.data:
            del self.storage[key]

    def __len__(self) -> int:
        return len(self.storage)
