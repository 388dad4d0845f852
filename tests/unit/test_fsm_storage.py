"""The FSM storage keeps records only for chats in the middle of a form."""

from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey

from bot.fsm_storage import CompactMemoryStorage


class Form(StatesGroup):
    persona = State()


def key(chat: int) -> StorageKey:
    return StorageKey(bot_id=1, chat_id=chat, user_id=chat)


async def test_reading_does_not_create_records() -> None:
    storage = CompactMemoryStorage()
    for chat in range(100):
        assert await storage.get_state(key(chat)) is None
        assert await storage.get_data(key(chat)) == {}
        assert await storage.get_value(key(chat), "x", 5) == 5
    assert len(storage) == 0


async def test_state_and_data_round_trip_and_clear() -> None:
    storage = CompactMemoryStorage()
    await storage.set_state(key(1), Form.persona)
    await storage.update_data(key(1), {"step": 2})
    assert await storage.get_state(key(1)) == Form.persona.state
    assert await storage.get_data(key(1)) == {"step": 2}
    assert await storage.get_value(key(1), "step") == 2
    assert len(storage) == 1

    await storage.set_state(key(1), None)
    assert len(storage) == 1  # data is still there
    await storage.set_data(key(1), {})
    assert len(storage) == 0
    assert await storage.get_state(key(1)) is None


async def test_returned_data_is_a_copy() -> None:
    storage = CompactMemoryStorage()
    await storage.set_data(key(1), {"a": 1})
    data = await storage.get_data(key(1))
    data["a"] = 2
    assert await storage.get_data(key(1)) == {"a": 1}


def test_the_dispatcher_keeps_an_empty_storage() -> None:
    from aiogram import Dispatcher

    storage = CompactMemoryStorage()
    assert Dispatcher(storage=storage).storage is storage
