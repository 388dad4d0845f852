"""REDIS_URL in the composition: forms, Telegram pacing, and nothing of it without Redis."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from pathlib import Path

from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey

from bot.shared_fsm import CachedStateRedisStorage, shared_fsm_storage
from services.pacing import KeyedPacer
from services.shared.gcra import GcraLimiter
from services.shared.invalidation import InvalidationRelay
from tests.services import redis_url
from tests.unit.shared_redis import Replicas, replicas

__all__ = ["replicas"]

JITTER = 0.008


class Form(StatesGroup):
    persona = State()


def build_app_and_report(tmp_path: Path, extra: str) -> str:
    code = (
        "import sys\n"
        "from bot.settings import load_settings\n"
        "from bot.factory import build_app\n"
        f"settings = load_settings(_env_file=None, bot_token='123:abc', llm_api_key='k',"
        f" database_url='sqlite:///{tmp_path}/bot.db'{extra})\n"
        "app = build_app(settings)\n"
        "print('redis' in sys.modules, type(app.dispatcher.storage).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip()


def test_without_redis_url_redis_is_never_loaded(tmp_path: Path) -> None:
    assert build_app_and_report(tmp_path, "") == "False CompactMemoryStorage"


def test_with_redis_url_forms_live_in_redis(tmp_path: Path) -> None:
    # Building connects to nothing: the client connects on first use.
    report = build_app_and_report(tmp_path, ", redis_url='redis://127.0.0.1:6379/0'")
    assert report == "True CachedStateRedisStorage"


async def forms_replica(
    replicas: Replicas,
) -> tuple[CachedStateRedisStorage, InvalidationRelay[str]]:
    client = replicas.client()
    relay = InvalidationRelay(
        client,
        replicas.guard(),
        prefix=replicas.prefix,
        what="forms",
        parse=str,
        resubscribe_after=0.05,
    )
    storage = shared_fsm_storage(client, replicas.prefix, relay)
    relay.listen(storage.no_form)
    await relay.ready()
    return storage, relay


async def test_a_form_opened_on_one_replica_continues_on_another(replicas: Replicas) -> None:
    first, first_relay = await forms_replica(replicas)
    second, second_relay = await forms_replica(replicas)
    key = StorageKey(bot_id=123, chat_id=5, user_id=5)
    try:
        assert await second.get_state(key) is None  # cached: no form
        await first.set_state(key, Form.persona)
        await first.set_data(key, {"menu": 77})
        async with asyncio.timeout(2):  # published before set_state returned
            while await second.get_state(key) != Form.persona.state:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert await second.get_data(key) == {"menu": 77}
        await second.set_state(key, None)
        async with asyncio.timeout(2):
            while await first.get_state(key) is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        # Under the bot's prefix, and a form left open expires.
        client = replicas.client()
        await first.set_state(key, Form.persona)
        keys = [k async for k in client.scan_iter(match=f"{replicas.prefix}fsm:*")]
        assert keys and 0 < await client.ttl(keys[0]) <= 86400
        await first.close()  # the shared client stays open: the factory closes it
        assert await client.ping()
    finally:
        await first_relay.close()
        await second_relay.close()


async def test_no_form_is_read_from_the_cache_and_a_form_never_is(replicas: Replicas) -> None:
    forms, relay = await forms_replica(replicas)
    key = StorageKey(bot_id=123, chat_id=6, user_id=6)
    client = replicas.client()
    name = forms.key_builder.build(key, "state")
    try:
        assert await forms.get_state(key) is None
        # Written behind the relay's back: the cached "no form" is what is read (no round
        # trip to Redis per update).
        await client.set(name, Form.persona.state)
        assert await forms.get_state(key) is None
        forms.no_form.forget([name])
        assert await forms.get_state(key) == Form.persona.state
        # A form's state is never cached: ended behind the relay's back, it is read as ended.
        await client.delete(name)
        assert await forms.get_state(key) is None
        # While the subscription is down nothing is cached.
        forms.no_form.suspend_cache()
        await client.set(name, Form.persona.state)
        assert await forms.get_state(key) == Form.persona.state
        await client.delete(name)
        assert await forms.get_state(key) is None
        await client.set(name, Form.persona.state)
        assert await forms.get_state(key) == Form.persona.state
    finally:
        await relay.close()


async def test_no_form_is_asked_again_once_old(replicas: Replicas) -> None:
    client = replicas.client()
    relay = InvalidationRelay(client, replicas.guard(), prefix=replicas.prefix, what="f", parse=str)
    now = [1000.0]
    forms = shared_fsm_storage(client, replicas.prefix, relay, clock=lambda: now[0])
    key = StorageKey(bot_id=123, chat_id=7, user_id=7)
    assert await forms.get_state(key) is None
    # A form opened elsewhere whose notice was lost (its replica killed before telling).
    await client.set(forms.key_builder.build(key, "state"), Form.persona.state)
    now[0] += 59
    assert await forms.get_state(key) is None
    now[0] += 2
    assert await forms.get_state(key) == Form.persona.state


async def test_telegram_pacing_holds_across_replicas(replicas: Replicas) -> None:
    chat_rate = 10.0  # a per-chat rate high enough for a short test

    def pacer() -> KeyedPacer:
        gcra = GcraLimiter(replicas.client(), replicas.guard(), prefix=replicas.prefix)
        return KeyedPacer(100, chat_rate, key_burst=1, shared=gcra)

    first, second = pacer(), pacer()
    sent: list[float] = []

    async def send(p: KeyedPacer) -> None:
        await p.wait(42)
        sent.append(time.monotonic())

    await asyncio.gather(*(send(p) for p in (first, second) for _ in range(4)))
    sent.sort()
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 1 / chat_rate - JITTER
    # Another chat is not held up by chat 42's queue.
    began = time.monotonic()
    await first.wait(43)
    assert time.monotonic() - began < 0.05


async def test_telegram_pacing_without_redis_paces_locally() -> None:
    from redis.asyncio import Redis

    from services.shared.guard import RedisGuard

    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    gcra = GcraLimiter(client, RedisGuard(timeout=0.2), prefix="test:gone:")
    pacer = KeyedPacer(100, 10.0, key_burst=1, shared=gcra)
    sent: list[float] = []

    async def send() -> None:
        await pacer.wait(42)
        sent.append(time.monotonic())

    await asyncio.wait_for(asyncio.gather(*(send() for _ in range(3))), timeout=3)
    sent.sort()
    assert min(b - a for a, b in itertools.pairwise(sent)) >= 0.1 - JITTER
    await client.aclose()


def test_the_redis_password_is_redacted() -> None:
    from bot.settings import load_settings

    redis_url()  # the settings check needs no server, but keep the skip rule uniform
    settings = load_settings(
        _env_file=None, bot_token="1:a", llm_api_key="k", redis_url="redis://:s3cret@h:6379/0"
    )
    assert "s3cret" in settings.secrets()
    assert "s3cret" not in repr(settings)


async def test_a_burst_of_calls_beyond_the_pool_waits_for_connections(replicas: Replicas) -> None:
    from bot.shared_state import MAX_CONNECTIONS, open_shared_state

    shared = open_shared_state(redis_url(), 1, prefix=replicas.prefix)
    try:
        await shared.redis.set(f"{replicas.prefix}k", "v")

        async def read() -> bytes | None:
            async def call() -> bytes | None:
                return await shared.redis.get(f"{replicas.prefix}k")  # type: ignore[no-any-return]

            return await shared.guard.run(call, "a test read")

        # More calls at once than connections: they queue for one (redis-py's default pool
        # would refuse them, "Too many connections", and Redis would be taken for down).
        results = await asyncio.gather(*(read() for _ in range(MAX_CONNECTIONS * 4)))
        assert results == [b"v"] * (MAX_CONNECTIONS * 4)
        assert not shared.guard.down
    finally:
        await shared.aclose()
