"""An in-memory FSM storage that keeps a record only for chats in the middle of a form.

aiogram's stock `MemoryStorage` keeps its records in a defaultdict, and aiogram's FSM
middleware reads the state on every update: each new chat left an empty record behind for
the life of the process (a few hundred bytes per chat, without bound). This one implements
aiogram's public `BaseStorage` contract on a plain dict: reads never create records, and a
record that is back to empty (no state, no data) is dropped. What handlers see is the same:
a missing record reads as no state and no data, exactly like a fresh one.

With replicas (REDIS_URL), forms live in Redis instead (bot/shared_fsm.py): a settings form
opened through one replica continues on another.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import copy, deepcopy
from dataclasses import dataclass, field
from typing import Any, overload

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey


@dataclass(slots=True)
class _Record:
    state: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class CompactMemoryStorage(BaseStorage):
    def __init__(self) -> None:
        self._records: dict[StorageKey, _Record] = {}

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        record = self._records.get(key)
        if record is None:
            if value is None:
                return
            record = self._records[key] = _Record()
        record.state = value
        self._drop_if_empty(key, record)

    async def get_state(self, key: StorageKey) -> str | None:
        record = self._records.get(key)
        return record.state if record is not None else None

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        if not isinstance(data, dict):
            msg = f"Data must be a dict or dict-like object, got {type(data).__name__}"
            raise TypeError(msg)
        record = self._records.get(key)
        if record is None:
            if not data:
                return
            record = self._records[key] = _Record()
        record.data = deepcopy(data)
        self._drop_if_empty(key, record)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        record = self._records.get(key)
        return deepcopy(record.data) if record is not None else {}

    @overload
    async def get_value(self, storage_key: StorageKey, dict_key: str) -> Any | None: ...

    @overload
    async def get_value(self, storage_key: StorageKey, dict_key: str, default: Any) -> Any: ...

    async def get_value(
        self, storage_key: StorageKey, dict_key: str, default: Any | None = None
    ) -> Any | None:
        record = self._records.get(storage_key)
        if record is None:
            return default
        return copy(record.data.get(dict_key, default))

    async def close(self) -> None:
        self._records.clear()

    def _drop_if_empty(self, key: StorageKey, record: _Record) -> None:
        if record.state is None and not record.data:
            del self._records[key]

    def __len__(self) -> int:
        return len(self._records)

    def __bool__(self) -> bool:
        # Empty is still a storage: aiogram's Dispatcher takes `storage or MemoryStorage()`,
        # and without this an empty one (len 0) was silently replaced by MemoryStorage.
        return True
