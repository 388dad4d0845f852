"""Stop across replicas: a Stop pressed on a replica that is not streaming the answer reaches
the one that is, over Redis pub/sub, with the same permission rules as a local Stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Sequence

import pytest

from services.chat import ChatInput, ChatService, ReplyStatus, StopResult
from services.conversation import ConversationService
from services.llm import CircuitBreaker, ModelCatalog, StreamChunk
from services.llm.provider import OnWait, Provider, ProviderRegistry
from services.llm.turns import Turn
from services.llm.types import ModelInfo
from services.shared.stop import StopRelay
from services.storage import SQLiteStorage
from services.users import UserService
from tests.unit.shared_redis import Replicas, replicas

__all__ = ["replicas"]


class EndlessChat:
    """Writes a few words, then streams nothing more until it is stopped."""

    def __init__(self) -> None:
        self.writing = asyncio.Event()

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
        yield StreamChunk("the first words")
        self.writing.set()
        await asyncio.Event().wait()
        yield StreamChunk("never")  # pragma: no cover

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id="m", name="m", context_length=8000)]


@pytest.fixture
async def storage() -> AsyncIterator[SQLiteStorage]:
    store = SQLiteStorage(":memory:")
    await store.connect()
    yield store
    await store.close()


def replica(storage: SQLiteStorage, backend: EndlessChat, relay: StopRelay | None) -> ChatService:
    registry = ProviderRegistry(
        [
            Provider(
                name="openai",
                title="primary",
                chat=backend,
                catalog=ModelCatalog(backend),
                breaker=CircuitBreaker(),
                primary=True,
            )
        ]
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
        stop_forwarder=relay,
    )


async def test_a_relay_message_reaches_every_other_replica(replicas: Replicas) -> None:
    sender = StopRelay(replicas.client(), replicas.guard(), prefix=replicas.prefix)
    receiver = StopRelay(replicas.client(), replicas.guard(), prefix=replicas.prefix)
    got: asyncio.Queue[tuple[int, int, int | None, bool]] = asyncio.Queue()
    receiver.listen(lambda *args: got.put_nowait(args))
    await asyncio.wait_for(receiver.ready(), 2)
    await replicas.client().publish(f"{replicas.prefix}stop:5", b"not json")  # ignored
    sender.send(-100, 5, 42, True)
    sender.send(7, 6, None, False)
    # Each send publishes on its own task: two stops for two replies may arrive in any order.
    received = {await asyncio.wait_for(got.get(), 2) for _ in range(2)}
    assert received == {(-100, 5, 42, True), (7, 6, None, False)}
    await sender.close()
    await receiver.close()


async def test_stop_on_another_replica_stops_the_stream_if_allowed(
    replicas: Replicas, storage: SQLiteStorage
) -> None:
    users = UserService(storage, frozenset())
    owner = await users.touch(1, username=None, first_name="U", language_code="en")
    relay_a = StopRelay(replicas.client(), replicas.guard(), prefix=replicas.prefix)
    relay_b = StopRelay(replicas.client(), replicas.guard(), prefix=replicas.prefix)
    backend_b = EndlessChat()
    replica_a = replica(storage, EndlessChat(), relay_a)
    replica_b = replica(storage, backend_b, relay_b)
    decided: asyncio.Queue[StopResult] = asyncio.Queue()
    for relay, chat in ((relay_a, replica_a), (relay_b, replica_b)):
        relay.listen(
            lambda *args, chat=chat: decided.put_nowait(chat.stop_forwarded(*args))  # type: ignore[misc]
        )
        await asyncio.wait_for(relay.ready(), 2)
    # A group question streaming on replica B.
    reply = replica_b.start(
        ChatInput(chat_id=-100, thread_id=None, user_id=1, text="tell me"), owner.user
    )
    await asyncio.wait_for(backend_b.writing.wait(), 2)

    # Another member presses Stop; the press reaches replica A, which forwards it.
    assert replica_a.stop(-100, reply.id, user_id=2, force=False) is StopResult.STOPPED
    results = {await asyncio.wait_for(decided.get(), 2) for _ in range(2)}
    assert results == {StopResult.NOT_FOUND, StopResult.NOT_ALLOWED}  # A: not here; B: no
    assert not reply.done

    # The asker presses it: replica B stops the stream, keeping the partial text.
    replica_a.stop(-100, reply.id, user_id=1, force=False)
    outcome = await asyncio.wait_for(reply.wait(), 2)
    assert outcome.status is ReplyStatus.STOPPED
    assert outcome.text == "the first words"
    await replica_a.close()
    await replica_b.close()
    await relay_a.close()
    await relay_b.close()


async def test_an_admin_may_stop_anyones_answer_from_another_replica(
    replicas: Replicas, storage: SQLiteStorage
) -> None:
    users = UserService(storage, frozenset())
    owner = await users.touch(1, username=None, first_name="U", language_code="en")
    relay_a = StopRelay(replicas.client(), replicas.guard(), prefix=replicas.prefix)
    relay_b = StopRelay(replicas.client(), replicas.guard(), prefix=replicas.prefix)
    backend_b = EndlessChat()
    replica_a = replica(storage, EndlessChat(), relay_a)
    replica_b = replica(storage, backend_b, relay_b)
    relay_b.listen(replica_b.stop_forwarded)
    await asyncio.wait_for(relay_b.ready(), 2)
    reply = replica_b.start(
        ChatInput(chat_id=-100, thread_id=None, user_id=1, text="tell me"), owner.user
    )
    await asyncio.wait_for(backend_b.writing.wait(), 2)
    replica_a.stop(-100, reply.id, user_id=99, force=True)
    outcome = await asyncio.wait_for(reply.wait(), 2)
    assert outcome.status is ReplyStatus.STOPPED
    await replica_a.close()
    await replica_b.close()
    await relay_a.close()
    await relay_b.close()


async def test_a_local_reply_is_stopped_here_without_the_relay(storage: SQLiteStorage) -> None:
    class Forwarder:
        def __init__(self) -> None:
            self.sent: list[tuple[int, int, int | None, bool]] = []

        def send(self, chat_id: int, reply_id: int, user_id: int | None, force: bool) -> None:
            self.sent.append((chat_id, reply_id, user_id, force))

    users = UserService(storage, frozenset())
    owner = await users.touch(1, username=None, first_name="U", language_code="en")
    forwarder = Forwarder()
    backend = EndlessChat()
    chat = replica(storage, backend, None)
    chat._stop_forwarder = forwarder  # the seam, without Redis
    reply = chat.start(ChatInput(chat_id=1, thread_id=None, user_id=1, text="hi"), owner.user)
    await asyncio.wait_for(backend.writing.wait(), 2)
    assert chat.stop(1, reply.id + 1) is StopResult.STOPPED  # not here: forwarded
    assert forwarder.sent == [(1, reply.id + 1, None, False)]
    assert chat.stop(1, reply.id, user_id=2) is StopResult.NOT_ALLOWED  # here: decided here
    assert chat.stop(1, reply.id) is StopResult.STOPPED
    assert (await asyncio.wait_for(reply.wait(), 2)).status is ReplyStatus.STOPPED
    assert len(forwarder.sent) == 1
    await chat.close()


async def test_the_listener_survives_a_lost_connection(replicas: Replicas) -> None:
    name = f"{replicas.prefix.replace(':', '-')}listener"
    listener_client = replicas.client(name)
    receiver = StopRelay(
        listener_client, replicas.guard(), prefix=replicas.prefix, resubscribe_after=0.05
    )
    got: asyncio.Queue[tuple[int, int, int | None, bool]] = asyncio.Queue()
    receiver.listen(lambda *args: got.put_nowait(args))
    await asyncio.wait_for(receiver.ready(), 2)
    # Redis drops the subscriber's connection (a restart, a network blip).
    admin = replicas.client()
    clients = [c for c in await admin.client_list(_type="pubsub") if c["name"] == name]
    assert clients
    for client in clients:
        await admin.client_kill_filter(_id=client["id"])
    await asyncio.sleep(0.3)
    await asyncio.wait_for(receiver.ready(), 3)
    sender = StopRelay(replicas.client(), replicas.guard(), prefix=replicas.prefix)
    sender.send(1, 2, 3, False)
    assert await asyncio.wait_for(got.get(), 3) == (1, 2, 3, False)
    await sender.close()
    await receiver.close()
