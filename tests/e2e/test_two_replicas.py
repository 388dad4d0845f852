"""Two replicas as processes, the topology of docker-compose.yml without Docker.

Two real bots (`python -m bot`) in webhook mode on one PostgreSQL schema and one Redis, behind a
loopback balancer that alternates requests between them (tests/fakes/balancer.py); the fake
Telegram delivers the webhook to the balancer, as real Telegram delivers to a load balancer.
Each test has its own schema, its own fake Telegram with a random bot id (so its Redis keys,
`llmbot:<bot id>:*`, are its own and deleted afterwards) and its own ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.conftest import text_of
from tests.fakes.balancer import Balancer
from tests.fakes.bot_subprocess import (
    BotProcess,
    forget_redis_keys,
    free_port,
    replica_env,
    start_replicas,
    stop_replicas,
)
from tests.fakes.telegram_server import SECRET_HEADER, Call, FakeTelegram
from tests.fakes.upstream_server import FakeUpstream
from tests.pg_schema import fresh_schema
from tests.services import redis_url

SECRET = "replicas-secret_0123456789"
HOOK_PATH = "/telegram/webhook"
ADMIN = 777
BROADCAST_USERS = list(range(8101, 8113))


@dataclass
class Topology:
    telegram: FakeTelegram
    upstream: FakeUpstream
    balancer: Balancer
    bots: list[BotProcess]
    ports: list[int]

    def finals(self, chat_id: int) -> list[Call]:
        calls = self.telegram.calls_of("sendRichMessage", "sendMessage", chat_id=chat_id)
        return [c for c in calls if c.ok]

    async def steer(self, backend: int) -> None:
        """Make the balancer's next delivery go to `backend`: a harmless update (/help from a
        bystander) takes the other turn when needed."""
        while self.balancer.next_backend != backend:
            await self.delivered(self.telegram.send_message(9_999_001, "/help"))

    async def answer_on(
        self, backend: int, chat_id: int, update: Callable[[], dict[str, Any]]
    ) -> Call:
        """Send `update()` when its turn is `backend`'s; the next message to `chat_id`."""
        await self.steer(backend)
        seen = len(self.finals(chat_id))
        assert await self.delivered(update()) == backend
        calls = await self.telegram.wait_for(
            ("sendRichMessage", "sendMessage"),
            lambda c: c.ok and c.chat_id == chat_id,
            count=seen + 1,
        )
        return calls[seen]

    async def delivered(self, update: dict[str, Any]) -> int:
        """Wait for the update's delivery; the backend that took it."""
        await self.telegram.wait_for_deliveries(
            lambda d: d.update_id == update["update_id"] and d.ok, timeout=10
        )
        backend = self.balancer.backend_of(update["update_id"])
        assert backend is not None
        return backend


@contextlib.asynccontextmanager
async def topology(
    upstream: FakeUpstream, tmp_path: Path, **overrides: str
) -> AsyncIterator[Topology]:
    """Two replicas behind the balancer; everything started here is stopped on the way out."""
    upstream.reset()
    url = redis_url()
    bot_id = secrets.randbelow(900_000_000) + 100_000_000
    telegram = FakeTelegram(token=f"{bot_id}:REPLICAS-TEST", bot_id=bot_id)
    telegram.allow_loopback_webhook = True
    ports = [free_port(), free_port()]
    balancer = Balancer([f"http://127.0.0.1:{port}" for port in ports])
    bots: list[BotProcess] = []
    await telegram.start()
    await balancer.start()
    try:
        async with fresh_schema() as database_url:
            envs = [
                replica_env(
                    telegram,
                    upstream,
                    database_url=database_url,
                    redis_url=url,
                    webhook_url=balancer.url + HOOK_PATH,
                    secret=SECRET,
                    port=port,
                    ADMIN_IDS=str(ADMIN),
                    **overrides,
                )
                for port in ports
            ]
            bots = await start_replicas(telegram, envs, tmp_path)
            try:
                yield Topology(telegram, upstream, balancer, bots, ports)
            finally:
                await stop_replicas(bots)
    finally:
        await balancer.stop()
        await telegram.stop()
        await forget_redis_keys(url, bot_id)


def answers_by_chat(top: Topology, chats: list[int]) -> dict[int, int]:
    return {chat: len(top.finals(chat)) for chat in chats}


async def test_questions_from_several_users_are_answered_once_by_both_replicas(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with topology(upstream, tmp_path) as top:
        users = list(range(8001, 8009))
        updates = [top.telegram.send_message(user, f"question of {user}") for user in users]
        for user in users:
            await top.telegram.wait_for(
                ("sendRichMessage", "sendMessage"), lambda c, u=user: c.ok and c.chat_id == u
            )
        # Each update was taken once, and the two replicas shared them.
        backends = [top.balancer.backend_of(u["update_id"]) for u in updates]
        assert set(backends) == {0, 1}, backends
        await asyncio.sleep(0.3)  # a duplicate answer would have arrived by now
        assert answers_by_chat(top, users) == dict.fromkeys(users, 1)
        assert len(top.upstream.chat_requests()) == len(users)
        for user in users:
            assert f"question of {user}" in text_of(top.finals(user)[0])


async def test_stop_pressed_on_the_other_replica_cancels_the_stream(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with topology(upstream, tmp_path) as top:
        user = 8201
        top.upstream.reply = lambda req: "word " * 200
        top.upstream.chunks = 100
        top.upstream.chunk_delay = 0.05  # a 5 s answer
        question = top.telegram.send_message(user, "tell me a long story")
        streaming = await top.delivered(question)
        drafts = await top.telegram.wait_for(
            "sendRichMessageDraft", lambda c: c.chat_id == user and "word" in str(c.params), count=2
        )
        stop = top.telegram.press_stop(user, int(drafts[-1].params["draft_id"]))
        # The alternation sends the Stop to the replica that is not streaming the answer.
        assert await top.delivered(stop) == 1 - streaming
        request = top.upstream.chat_requests()[-1]
        await asyncio.wait_for(request.disconnected_event.wait(), 3)
        final = (
            await top.telegram.wait_for(
                ("sendRichMessage", "sendMessage"), lambda c: c.ok and c.chat_id == user
            )
        )[0]
        assert "Stopped" in text_of(final)
        assert len(top.upstream.chat_requests()) == 1


async def test_a_language_chosen_through_one_replica_is_spoken_by_the_other(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with topology(upstream, tmp_path) as top:
        user, tg = 8251, top.telegram
        # Replica 1 serves the user first, in English, and keeps the settings cached.
        english = text_of(await top.answer_on(1, user, lambda: tg.send_message(user, "/help")))
        # The language is chosen through replica 0.
        await top.answer_on(0, user, lambda: tg.send_message(user, "/lang"))
        menu = tg.sent_messages(user)[-1]
        await top.steer(0)
        assert await top.delivered(tg.press_button(user, menu, f"lang:ru:{user}")) == 0
        await tg.wait_for("answerCallbackQuery", lambda c: c.ok)
        # The next message reaches replica 1, which answers in the chosen language.
        russian = text_of(await top.answer_on(1, user, lambda: tg.send_message(user, "/help")))
        assert russian != english
        assert any("а" <= ch <= "я" for ch in russian.lower()), russian


async def test_a_form_opened_through_one_replica_is_answered_on_the_other(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with topology(upstream, tmp_path) as top:
        user, tg = 8261, top.telegram
        # Replica 1 serves the user first: it remembers that the chat is in no form.
        await top.answer_on(1, user, lambda: tg.send_message(user, "/help"))
        # /settings and its persona button through replica 0: the bot waits for a persona.
        menu = await top.answer_on(0, user, lambda: tg.send_message(user, "/settings"))
        persona = menu.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        await top.steer(0)
        pressed = tg.press_button(user, tg.sent_messages(user)[-1], persona)
        assert await top.delivered(pressed) == 0
        await tg.wait_for("editMessageText", lambda c: c.ok and c.chat_id == user)
        # The persona reaches replica 1: taken as the form's answer, not as a question.
        saved = await top.answer_on(1, user, lambda: tg.send_message(user, "You are a pirate."))
        assert "Persona saved" in text_of(saved)
        assert top.upstream.chat_requests() == []


async def test_the_shared_limiter_keeps_the_upstream_interval_with_both_replicas_loaded(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    rate = 5.0
    async with topology(upstream, tmp_path, LLM_RPS=str(rate)) as top:
        # The fake answers 429 to a start sooner than 1/rate after the previous one.
        top.upstream.enforce_rps(rate, tolerance=0.02)
        users = list(range(8301, 8313))
        updates = [top.telegram.send_message(user, "limited") for user in users]
        for user in users:
            await top.telegram.wait_for(
                ("sendRichMessage", "sendMessage"),
                lambda c, u=user: c.ok and c.chat_id == u,
                timeout=20,
            )
        assert {top.balancer.backend_of(u["update_id"]) for u in updates} == {0, 1}
        assert top.upstream.rejected_429 == 0
        starts = sorted(r.started_at for r in top.upstream.chat_requests())
        assert len(starts) == len(users)
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert min(gaps) >= 1 / rate - 0.02, gaps


async def test_a_wrong_secret_is_refused_by_both_replicas(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with topology(upstream, tmp_path) as top:
        update = {
            "update_id": 10_000,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 8401, "type": "private"},
                "from": {"id": 8401, "is_bot": False, "first_name": "Eve"},
                "text": "Hello",
            },
        }

        async def post(base: str, secret: str | None) -> int:
            headers = {SECRET_HEADER: secret} if secret is not None else {}
            async with (
                aiohttp.ClientSession() as http,
                http.post(base + HOOK_PATH, json=update, headers=headers) as response,
            ):
                return response.status

        for port in top.ports:
            assert await post(f"http://127.0.0.1:{port}", "wrong-secret") == 401
            assert await post(f"http://127.0.0.1:{port}", None) == 401
        # Through the balancer: one forgery to each replica.
        routed = len(top.balancer.routes)
        assert await post(top.balancer.url, "wrong-secret") == 401
        assert await post(top.balancer.url, "wrong-secret") == 401
        assert {r.backend for r in top.balancer.routes[routed:]} == {0, 1}
        # A genuine delivery is answered; the forged ones never were.
        top.telegram.send_message(8402, "Hello")
        await top.telegram.wait_for(
            ("sendRichMessage", "sendMessage"), lambda c: c.ok and c.chat_id == 8402
        )
        assert not top.telegram.calls_of(chat_id=8401)


def _copies(top: Topology) -> list[Call]:
    return [c for c in top.telegram.calls_of("copyMessage") if c.ok]


def _is_report(call: Call) -> bool:
    text = str(call.params.get("text"))
    return call.chat_id == ADMIN and "Broadcast #" in text and "delivered" in text


async def _reply(top: Topology, user: int, text: str) -> Call:
    before = len(top.telegram.calls_of("sendMessage", chat_id=user))
    top.telegram.send_message(user, text)
    calls = await top.telegram.wait_for(
        "sendMessage", lambda c: c.chat_id == user, count=before + 1, timeout=10
    )
    return calls[before]


def _press(top: Topology, user: int, call: Call, label: Callable[[str], bool]) -> dict[str, Any]:
    markup = call.params.get("reply_markup") or {}
    button = next(
        b for row in markup.get("inline_keyboard", []) for b in row if label(str(b["text"]))
    )
    message = call.response["result"] if call.response else None
    assert isinstance(message, dict)
    return top.telegram.press_button(user, message, button["callback_data"])


async def test_a_replica_killed_mid_video_and_mid_broadcast_the_other_finishes_both(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with topology(
        upstream,
        tmp_path,
        BROADCAST_RPS="4",
        BROADCAST_PROGRESS_SECONDS="60",
        VIDEO_POLL_SECONDS="0.2",
        REPLICA_TIMEOUT_SECONDS="2",
    ) as top:
        for user in (ADMIN, *BROADCAST_USERS):
            await _reply(top, user, "/start")
        victim = 0
        survivor = 1 - victim

        # A broadcast, confirmed on the victim: the victim drives it.
        await _reply(top, ADMIN, "/broadcast")
        confirm = await _reply(top, ADMIN, "News for everyone")
        await top.steer(victim)
        send = _press(top, ADMIN, confirm, lambda label: "Send" in label)
        assert await top.delivered(send) == victim
        await top.telegram.wait_for("copyMessage", count=2, timeout=10)

        # A video, asked on the victim: the victim polls it.
        top.upstream.video_steps = ["IN_QUEUE", *["IN_PROGRESS"] * 30, "COMPLETED"]
        await top.steer(victim)
        ask = top.telegram.send_message(8199, "/video a cat surfing a wave")
        assert await top.delivered(ask) == victim
        await top.telegram.wait_for(
            "editMessageText", lambda c: "Generating" in c.params.get("text", ""), timeout=10
        )
        request_id = next(iter(top.upstream.video_jobs))

        top.bots[victim].kill()
        assert await top.bots[victim].wait() == -9
        copies_at_kill = len(_copies(top))
        assert copies_at_kill < 1 + len(BROADCAST_USERS)  # the kill really was mid-way

        video = (await top.telegram.wait_for("sendVideo", timeout=40))[0]
        assert video.params["caption"] == "a cat surfing a wave"
        report = (await top.telegram.wait_for("editMessageText", _is_report, timeout=40))[-1]
        await asyncio.sleep(0.5)  # a duplicate would show by now

        assert top.bots[survivor].returncode is None
        assert len(top.telegram.calls_of("sendVideo")) == 1
        assert len(top.upstream.video_jobs) == 1 and request_id in top.upstream.video_jobs
        recipients = [c.chat_id for c in _copies(top)]
        assert len(recipients) == len(set(recipients)), recipients  # nobody got two copies
        # At most the copy in flight at the kill is lost (counted as failed), none repeated.
        assert len(set(recipients)) >= len(BROADCAST_USERS)
        assert "delivered" in str(report.params["text"])
