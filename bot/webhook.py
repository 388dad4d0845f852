"""The bot's HTTP side: the webhook endpoint and the operators' /healthz, /readyz, /metrics.

Webhook mode (`WEBHOOK_URL`): `JournalingRequestHandler` (aiogram's `SimpleRequestHandler`,
the secret header checked, 401 otherwise) writes each update's journal row first and only then
answers 200, handling the update in the background, so a slow answer never makes Telegram send
it again and a kill after the 200 leaves the update in the journal, answered at the restart (or
by another replica). A duplicate delivery is answered 200 and dropped; a body that is not an
update is answered 200 too (sent again it would fail the same way for ever). Should the journal
fail to record it (the database is down), it is handled anyway: see JournalMiddleware.
`setup_application` runs the dispatcher's start-up and shutdown hooks, the same ones polling
runs (journal, replay, InFlight's drain). A stopping server answers 503 on the webhook path
(Telegram delivers the update again, to another replica or after the restart) while answers
in progress finish.

Polling mode with `HEALTH_PORT`: the same /healthz, /readyz and /metrics on a server of their
own. Without it there is no HTTP server at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.methods import TelegramMethod
from aiogram.types import Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from bot.journal import RECORDED_KEY, update_payload
from bot.metrics import CONTENT_TYPE_LATEST, Metrics
from services.journal import UpdateJournal
from services.llm.provider import ProviderRegistry
from services.storage import Storage

log = logging.getLogger(__name__)

# A probe (Kubernetes waits 1 s by default) must get its answer in time: each check gets less.
CHECK_TIMEOUT = 0.8
# A probe every second costs nothing: the outcome is kept this long.
CHECK_CACHE_SECONDS = 5.0


class Draining:
    """Set when the server stops taking updates (SIGTERM): the webhook answers 503 and
    /readyz says so, so a load balancer sends the traffic elsewhere."""

    def __init__(self) -> None:
        self.active = False


class Readiness:
    """Is this process fit to take updates: the database answers, Redis answers (when the bot
    shares state there: `redis_ping`) and the primary upstream is reachable. One check runs at
    a time, each part bounded by `timeout`; the outcome is cached for `cache_seconds`."""

    def __init__(
        self,
        storage: Storage,
        providers: ProviderRegistry,
        draining: Draining,
        *,
        redis_ping: Callable[[], Awaitable[Any]] | None = None,
        timeout: float = CHECK_TIMEOUT,
        cache_seconds: float = CHECK_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._providers = providers
        self._draining = draining
        self._redis_ping = redis_ping
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._result: dict[str, str] = {}
        self._valid_until = float("-inf")
        self._running: asyncio.Task[dict[str, str]] | None = None

    async def failures(self) -> dict[str, str]:
        """What is not ready, by part ("database", "redis", "upstream", "shutdown") → why;
        empty when everything is."""
        if self._draining.active:
            return {"shutdown": "the bot is stopping"}
        if self._clock() < self._valid_until:
            return self._result
        task = self._running
        if task is None:
            task = self._running = asyncio.create_task(self._check(), name="readiness-check")
        # Shielded: a probe that gives up must not cancel the check the others wait for.
        return await asyncio.shield(task)

    async def _check(self) -> dict[str, str]:
        try:
            parts = [
                self._part("database", self._storage.ping),
                self._part("upstream", self._providers.providers[0].chat.list_models),
            ]
            if self._redis_ping is not None:
                parts.append(self._part("redis", self._redis_ping))
            checked = await asyncio.gather(*parts)
            result = {name: why for name, why in checked if why}
            self._result = result
            self._valid_until = self._clock() + self._cache_seconds
            return result
        finally:
            self._running = None

    async def _part(self, name: str, call: Callable[[], Awaitable[Any]]) -> tuple[str, str | None]:
        try:
            async with asyncio.timeout(self._timeout):
                await call()
        except TimeoutError:
            why: str | None = f"no answer within {self._timeout:g} s"
        except Exception as error:
            why = type(error).__name__
        else:
            why = None
        if why is not None:
            log.warning("readiness: %s is not ready: %s", name, why)
        return name, why


def add_health_routes(app: web.Application, readiness: Readiness, metrics: Metrics) -> None:
    async def healthz(_: web.Request) -> web.Response:
        # Answering at all means the event loop runs.
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        failed = await readiness.failures()
        if failed:
            return web.json_response({"status": "unavailable", "failed": failed}, status=503)
        return web.json_response({"status": "ok"})

    async def metrics_page(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)


def health_app(readiness: Readiness, metrics: Metrics) -> web.Application:
    """Polling mode's server (HEALTH_PORT): the operators' endpoints only."""
    app = web.Application()
    add_health_routes(app, readiness, metrics)
    return app


class JournalingRequestHandler(SimpleRequestHandler):
    """aiogram's webhook handler, with the update's journal row written before the 200.

    aiogram's own background mode answers 200 first and parses and handles the update in a
    task: a kill in between would lose an update Telegram thinks delivered. Here the update is
    read and recorded first; the task it is fed to is marked (`RECORDED_KEY`) so that
    JournalMiddleware does not record it again (it still finishes it).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        bot: Bot,
        journal: UpdateJournal,
        *,
        secret_token: str,
        metrics: Metrics,
        draining: Draining,
        **data: Any,
    ) -> None:
        super().__init__(
            dispatcher, bot, handle_in_background=True, secret_token=secret_token, **data
        )
        self._journal = journal
        self._metrics = metrics
        self._draining = draining

    async def _handle_request_background(self, bot: Bot, request: web.Request) -> web.Response:
        try:
            raw = await request.json(loads=bot.session.json_loads)
            update = Update.model_validate(raw, context={"bot": bot})
        except ValueError as error:  # not JSON, or not an update (pydantic's ValidationError)
            # Not what Telegram sends; sent again it would fail the same way for ever, so it is
            # taken and dropped (aiogram's own path answers 200 to JSON that is not an update,
            # but 500 to a body that is not JSON). Neither the body nor pydantic's message
            # (which quotes it) is logged: it may hold a user's text.
            log.warning(
                "webhook: a body that is not an update was dropped (%s)", type(error).__name__
            )
            return self._taken(bot)
        update_id = update.update_id
        marks: dict[str, Any] = {RECORDED_KEY: True}
        try:
            fresh = await self._journal.record(update_id, update_payload(update))
        except Exception as error:
            if self._draining.active:
                # Stopping (the database may be closed already): not taken, so Telegram sends
                # it again, to another replica or after the restart.
                log.warning("journal: could not record update %d while stopping", update_id)
                return web.Response(status=503, text="shutting down")
            # Handled all the same: JournalMiddleware tries once more and, should that fail
            # too, logs it and answers without a safety net (better than not at all).
            log.info(
                "journal: could not record update %d before taking it (%s); handling it anyway",
                update_id,
                type(error).__name__,
            )
            marks = {}
        else:
            if not fresh:
                # Counted as polling counts it (UpdateCounter runs before the dedupe there).
                with contextlib.suppress(Exception):
                    self._metrics.update(update.event_type)
                log.info("journal: update %d was delivered again; not handled twice", update_id)
                return self._taken(bot)
        task = asyncio.create_task(self._feed(bot, update, marks), name=f"update-{update_id}")
        # Referenced until done (the event loop keeps only weak references to tasks).
        self._background_feed_update_tasks.add(task)
        task.add_done_callback(self._background_feed_update_tasks.discard)
        return self._taken(bot)

    async def _feed(self, bot: Bot, update: Update, marks: dict[str, Any]) -> None:
        try:
            result = await self.dispatcher.feed_update(bot, update, **self.data, **marks)
        except Exception:
            # What aiogram's own background feed does, but logged once here instead of as a
            # task exception never retrieved.
            log.exception("webhook: handling update %d failed", update.update_id)
            return
        if isinstance(result, TelegramMethod):  # a handler's answer meant for the webhook reply
            await self.dispatcher.silent_call_request(bot=bot, result=result)

    @staticmethod
    def _taken(bot: Bot) -> web.Response:
        return web.json_response({}, dumps=bot.session.json_dumps)


def webhook_app(
    dispatcher: Dispatcher,
    bot: Bot,
    *,
    path: str,
    secret: str,
    readiness: Readiness,
    metrics: Metrics,
    draining: Draining,
    journal: UpdateJournal,
) -> web.Application:
    """The webhook server: Telegram's updates on `path` (each recorded in `journal` before
    Telegram gets its 200), and the operators' endpoints."""

    @web.middleware
    async def refuse_when_draining(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if draining.active and request.path == path:
            # Telegram sends it again later: to another replica, or to this one restarted.
            # The connection is closed after it, so a proxy opens its next one elsewhere.
            refused = web.Response(status=503, text="shutting down")
            refused.force_close()
            return refused
        return await handler(request)

    app = web.Application(middlewares=[refuse_when_draining])
    # The dispatcher's start-up and shutdown hooks run with the app's; registered before the
    # request handler, whose own shutdown hook closes the bot's session after them.
    setup_application(app, dispatcher, bot=bot)
    JournalingRequestHandler(
        dispatcher, bot, journal, secret_token=secret, metrics=metrics, draining=draining
    ).register(app, path=path)
    add_health_routes(app, readiness, metrics)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start `app` on host:port (its start-up hooks run first); returns the runner to clean
    up. A start that fails leaves nothing running."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        raise
    return runner
