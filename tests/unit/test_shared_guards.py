"""Guards shared by replicas on the real Redis: flood control and its one notice, the access
list seen at once by every replica, circuit breakers with one state and one notice, one
GigaChat token request for all replicas, one balance notice; and the local fallback when
Redis is unreachable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import pytest
from redis.asyncio import Redis

from services.access import AccessService, Refusal, Verdict
from services.account import ProviderBalance
from services.alerts import Alert, AlertKind, AlertService
from services.llm import Balance, CircuitBreaker
from services.llm.errors import CircuitOpen
from services.llm.gigachat.auth import GigaChatAuth
from services.shared.access import RedisAccessState
from services.shared.alerts import RedisAlertState
from services.shared.breaker import BreakerRelay
from services.shared.guard import RedisGuard
from services.shared.token import RedisTokenStore
from services.storage import SQLiteStorage
from tests.fakes.clock import FakeClock
from tests.fakes.gigachat_server import FakeGigaChat
from tests.unit.shared_redis import Replicas, replicas

__all__ = ["replicas"]

USER = 501
NOW = 1_700_000_000.0


async def eventually(condition: Callable[[], bool], within: float = 2.0) -> None:
    """Another replica's message arrives over pub/sub a moment later."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - breaker state has no event to wait on
            await asyncio.sleep(0.005)


# ------------------------------------------------------------------------------ access


@pytest.fixture
async def storage() -> AsyncIterator[SQLiteStorage]:
    """The database both replicas share."""
    store = SQLiteStorage(":memory:")
    await store.connect()
    yield store
    await store.close()


def access(
    replicas: Replicas, storage: SQLiteStorage, clock: FakeClock, **options: object
) -> AccessService:
    shared = RedisAccessState(replicas.client(), replicas.guard(), prefix=replicas.prefix)
    return AccessService(
        storage,
        clock=clock,
        monotonic=clock,
        shared=shared,
        **options,  # type: ignore[arg-type]
    )


async def check(service: AccessService, user: int = USER, chat: int | None = None) -> Verdict:
    return await service.check(
        user_id=user, chat_id=user if chat is None else chat, is_admin=False, kind="chat"
    )


async def test_flood_is_counted_across_replicas_with_one_notice(
    replicas: Replicas, storage: SQLiteStorage
) -> None:
    clock = FakeClock(NOW)
    a = access(replicas, storage, clock, flood_per_minute=3)
    b = access(replicas, storage, clock, flood_per_minute=3)

    assert (await check(a)).refusal is None
    assert (await check(b)).refusal is None
    assert (await check(a)).refusal is None
    refused = [await check(b), await check(a), await check(b), await check(a)]
    assert [v.refusal for v in refused] == [Refusal.FLOOD] * 4
    # One "wait N s" for the whole burst, whichever replica refused first.
    assert [v.notify for v in refused] == [True, False, False, False]
    resets_at = refused[0].resets_at
    assert resets_at is not None and NOW + 55 < resets_at <= NOW + 60
    # Another user's window is their own.
    assert (await check(b, USER + 1)).refusal is None


async def test_a_ban_on_one_replica_is_refused_on_the_other_at_once(
    replicas: Replicas, storage: SQLiteStorage
) -> None:
    clock = FakeClock(NOW)
    a = access(replicas, storage, clock, daily_requests=5)
    b = access(replicas, storage, clock, daily_requests=5)
    assert (await check(b)).refusal is None  # b has read the list: nobody banned

    await a.ban(USER)
    banned = [await check(b), await check(a), await check(b)]
    assert [v.refusal for v in banned] == [Refusal.BANNED] * 3
    assert [v.notify for v in banned] == [True, False, False]  # one notice in total

    await b.unban(USER)
    assert (await check(a)).refusal is None
    await a.set_daily_limit(USER, 0)  # /limit on a: unlimited on b at once
    assert b.limits(USER) == (5, 0)  # not yet read
    assert (await b.standing(USER, is_admin=False)).limit_overridden
    assert b.limits(USER) == (0, 0)


async def test_with_flood_limits_a_ban_on_one_replica_holds_on_the_other_at_once(
    replicas: Replicas, storage: SQLiteStorage
) -> None:
    # The list version comes with the flood check's own round trip here (admit).
    clock = FakeClock(NOW)
    a = access(replicas, storage, clock, flood_per_minute=3)
    b = access(replicas, storage, clock, flood_per_minute=3)
    assert (await check(b)).refusal is None  # takes a place
    await a.ban(USER)
    # b learns of the ban in the same call that takes a place: this message took one.
    assert (await check(b)).refusal == Refusal.BANNED
    # Refused by the list b knows, the others take none.
    for _ in range(5):
        assert (await check(b)).refusal == Refusal.BANNED
    await a.unban(USER)
    verdicts = [await check(b) for _ in range(2)]
    assert [v.refusal for v in verdicts] == [None, Refusal.FLOOD]  # 3 places, 2 taken before


async def test_a_paid_message_costs_one_redis_round_trip(
    replicas: Replicas, storage: SQLiteStorage
) -> None:
    client = replicas.client()
    sent: list[object] = []
    execute = client.execute_command

    async def counted(*args: object, **options: object) -> object:
        sent.append(args[0])
        return await execute(*args, **options)

    client.execute_command = counted  # type: ignore[method-assign]
    shared = RedisAccessState(client, replicas.guard(), prefix=replicas.prefix)
    clock = FakeClock(NOW)
    service = AccessService(
        storage, clock=clock, monotonic=clock, flood_per_minute=5, shared=shared
    )
    assert (await check(service)).refusal is None  # the first reads the list
    sent.clear()
    assert (await check(service)).refusal is None
    # The flood window and the list's version in one script call.
    assert sent == ["EVALSHA"]


async def test_answers_in_flight_count_against_the_quota_on_every_replica(
    replicas: Replicas, storage: SQLiteStorage
) -> None:
    clock = FakeClock(NOW)
    a = access(replicas, storage, clock, daily_requests=2)
    b = access(replicas, storage, clock, daily_requests=2)
    first = await check(a)
    second = await check(b)  # one answer in flight on a: one place left
    assert first.reserved and second.reserved and first.hold and second.hold
    # Two answers in flight, one on each replica: the limit is reached on both.
    assert (await check(a)).refusal == Refusal.QUOTA_REQUESTS
    assert (await check(b)).refusal == Refusal.QUOTA_REQUESTS
    # a's answer ends without a usage record (nothing was sent): its place is free again.
    a.release(USER, first.hold)
    await a.close()
    third = await check(b)
    assert third.refusal is None
    b.release(USER, second.hold)
    b.release(USER, third.hold)
    await b.close()


async def test_a_reservation_left_by_a_dead_replica_frees_itself(
    replicas: Replicas, storage: SQLiteStorage
) -> None:
    shared = RedisAccessState(replicas.client(), replicas.guard(), prefix=replicas.prefix)
    assert await shared.reserve(USER, "dead-replica", 0.2) == 1
    assert await shared.reserve(USER, "live", 60) == 2
    await asyncio.sleep(0.3)
    assert await shared.reserve(USER, "next", 60) == 2  # the dead one's expired
    await shared.unreserve(USER, "live")
    await shared.unreserve(USER, "next")
    assert await shared.reserve(USER, "alone", 60) == 1


async def test_allowlist_changes_and_the_private_notice_hold_across_replicas(
    replicas: Replicas, storage: SQLiteStorage
) -> None:
    clock = FakeClock(NOW)
    a = access(replicas, storage, clock, mode="allowlist")
    b = access(replicas, storage, clock, mode="allowlist")
    first, second = await check(a), await check(b)
    assert first.refusal == second.refusal == Refusal.NOT_ALLOWED
    assert (first.notify, second.notify) == (True, False)  # "this bot is private" once a minute

    await b.allow(USER)
    assert (await check(a)).refusal is None
    await a.deny(USER)
    assert (await check(b)).refusal == Refusal.NOT_ALLOWED


async def test_redis_unreachable_falls_back_to_local_flood_with_one_log_line(
    storage: SQLiteStorage, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(NOW)
    # Nothing listens on port 1: every call fails at once.
    down = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    shared = RedisAccessState(down, RedisGuard(timeout=0.5, retry_after=60), prefix="test:down:")
    service = AccessService(
        storage, clock=clock, monotonic=clock, flood_per_minute=2, shared=shared
    )
    try:
        with caplog.at_level(logging.WARNING):
            verdicts = [await check(service) for _ in range(4)]
        assert [v.refusal for v in verdicts] == [None, None, Refusal.FLOOD, Refusal.FLOOD]
        assert [v.notify for v in verdicts[2:]] == [True, False]
        unavailable = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(unavailable) == 1
        # A lever still works (stored, this replica's copy updated).
        await service.ban(USER)
        assert (await check(service)).refusal == Refusal.BANNED
    finally:
        await down.aclose()


async def test_redis_unreachable_the_quota_counts_this_replicas_answers(
    storage: SQLiteStorage,
) -> None:
    clock = FakeClock(NOW)
    down = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    shared = RedisAccessState(down, RedisGuard(timeout=0.5, retry_after=60), prefix="test:down:")
    service = AccessService(storage, clock=clock, monotonic=clock, daily_requests=2, shared=shared)
    try:
        first, second = await check(service), await check(service)
        assert first.reserved and second.reserved
        assert first.hold is None and second.hold is None  # nothing held on Redis
        assert (await check(service)).refusal == Refusal.QUOTA_REQUESTS  # two in flight here
        service.release(USER, first.hold)
        assert (await check(service)).refusal is None
        await service.close()
    finally:
        await down.aclose()


# ---------------------------------------------------------------------------- breakers


@dataclass
class Replica:
    breaker: CircuitBreaker
    relay: BreakerRelay
    clock: FakeClock
    heard: list[bool] = field(default_factory=list)


@pytest.fixture
async def two_breakers(replicas: Replicas) -> AsyncIterator[tuple[Replica, Replica]]:
    made: list[Replica] = []
    for _ in range(2):
        relay = BreakerRelay(replicas.client(), replicas.guard(), prefix=replicas.prefix)
        clock = FakeClock(NOW)
        breaker = CircuitBreaker(
            failure_threshold=2, cooldown=30, clock=clock, min_keys=1, shared=relay.share("giga")
        )
        replica = Replica(breaker, relay, clock)
        breaker.add_listener(replica.heard.append)
        relay.listen()
        await relay.ready()
        made.append(replica)
    yield made[0], made[1]
    for replica in made:
        await replica.relay.close()


async def test_a_breaker_opened_on_one_replica_refuses_on_the_other_with_one_notice(
    two_breakers: tuple[Replica, Replica],
) -> None:
    a, b = two_breakers
    a.breaker.record_failure()
    a.breaker.record_failure()
    assert a.breaker.state == "open"
    await a.relay.settled()
    await eventually(lambda: b.breaker.state == "open")
    with pytest.raises(CircuitOpen):
        b.breaker.before_request()
    assert (a.heard, b.heard) == ([True], [])

    # b's probe succeeds after the cooldown: closed everywhere, one notice (from b).
    b.clock.now += 31
    b.breaker.before_request()
    b.breaker.record_success()
    await b.relay.settled()
    await eventually(lambda: a.breaker.state == "closed")
    a.breaker.before_request()
    assert (a.heard, b.heard) == ([True], [False])

    # Both fail at once: the one that opens it on Redis first tells; open → closed → open.
    for replica in (a, b, a, b):
        replica.breaker.record_failure()
    await a.relay.settled()
    await b.relay.settled()
    assert sorted(a.heard + b.heard) == [False, True, True]


async def test_a_replica_started_while_a_breaker_is_open_follows_it(
    replicas: Replicas, two_breakers: tuple[Replica, Replica]
) -> None:
    a, _ = two_breakers
    a.breaker.record_failure()
    a.breaker.record_failure()
    await a.relay.settled()
    relay = BreakerRelay(replicas.client(), replicas.guard(), prefix=replicas.prefix)
    late = CircuitBreaker(failure_threshold=2, cooldown=30, shared=relay.share("giga"))
    relay.listen()
    try:
        await relay.ready()
        assert late.state == "open"
    finally:
        await relay.close()


# ---------------------------------------------------------------------------- GigaChat


@pytest.fixture
async def giga() -> AsyncIterator[FakeGigaChat]:
    async with FakeGigaChat() as server:
        yield server


async def test_replicas_make_one_token_request_and_share_a_refreshed_one(
    replicas: Replicas, giga: FakeGigaChat
) -> None:
    clients = [httpx.AsyncClient(verify=giga.client_ssl_context(), timeout=5.0) for _ in range(3)]
    auths = [
        GigaChatAuth(
            http,
            auth_url=giga.auth_url,
            credentials=giga.credentials,
            scope=giga.scope,
            shared=RedisTokenStore(
                replicas.client(), replicas.guard(), key=f"{replicas.prefix}gigachat:token"
            ),
        )
        for http in clients
    ]
    try:
        tokens = await asyncio.gather(*(auth.token() for auth in auths[:2]))
        assert giga.token_requests == 1
        assert tokens[0] == tokens[1]
        assert await auths[2].token() == tokens[0]  # a replica started later: no request
        assert giga.token_requests == 1

        # The token is revoked: the first replica to hear 401 gets a new one, the other
        # replica (refused too) takes that one from Redis.
        giga.expire_all_tokens()
        for http, auth in zip(clients[:2], auths[:2], strict=True):
            response = await http.get(f"{giga.base_url}/models", auth=auth)
            assert response.status_code == 200
        assert giga.token_requests == 2
    finally:
        for http in clients:
            await http.aclose()


# ------------------------------------------------------------------------------ alerts


@dataclass
class LowAccount:
    async def balances(self) -> list[ProviderBalance]:
        return [ProviderBalance("openai", "VseGPT", Balance(0.5, "ok", None, 1, None))]


@dataclass
class Recorder:
    alerts: list[Alert] = field(default_factory=list)

    async def notify(self, alert: Alert) -> None:
        self.alerts.append(alert)


@dataclass
class NoProviders:
    providers: list[object] = field(default_factory=list)


def alerts(replicas: Replicas) -> AlertService:
    return AlertService(
        NoProviders(),  # type: ignore[arg-type]
        LowAccount(),  # type: ignore[arg-type]
        check_interval=600,
        tokens_threshold=0,
        shared=RedisAlertState(replicas.client(), replicas.guard(), prefix=replicas.prefix),
    )


async def notices(service: AlertService) -> list[AlertKind]:
    recorder = Recorder()
    service.attach(recorder)
    service.start()
    await service.close()
    return [alert.kind for alert in recorder.alerts]


async def test_a_low_balance_is_checked_and_told_once_for_all_replicas(
    replicas: Replicas,
) -> None:
    a, b = alerts(replicas), alerts(replicas)
    checked = await asyncio.gather(a.periodic_check(), b.periodic_check())
    assert sorted(checked) == [False, True]
    # Both check anyway (a lease that expired meanwhile): still one notice in total.
    await asyncio.gather(a.check_balances(), b.check_balances())
    assert sorted((await notices(a)) + (await notices(b))) == [AlertKind.BALANCE_LOW]
    # A replica restarted: the level is remembered on Redis, nothing is told again.
    restarted = alerts(replicas)
    await restarted.check_balances()
    assert await notices(restarted) == []
