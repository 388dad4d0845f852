"""The composition root: the one place that builds long-lived objects and closes them.

Production (`python -m bot`) and the end-to-end tests both call `build_app()`, so
the tests exercise exactly what runs in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramAPIError
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeChat,
    Message,
)

from bot.fsm_storage import CompactMemoryStorage
from bot.instance_lock import instance_lock_for
from bot.journal import JournalMiddleware, Replayer, RestartNote
from bot.log_context import LogContext, log_answer
from bot.metrics import Metrics, UpdateCounter
from bot.middlewares import InFlight, ProfileMiddleware
from bot.providers import build_providers
from bot.settings import Settings
from bot.spend_guard import SpendGuard
from bot.telegram_retry import DeliveryRetry, backoff_delays
from bot.telegram_session import FloodControl, TelegramSession, resolve_proxy
from bot.webhook import Draining, Readiness, health_app, serve, webhook_app
from handlers import get_routers
from handlers.settings import MediaDefaults
from handlers.ui.alert_notifier import TelegramAlertNotifier
from handlers.ui.answer import RenderConfig
from handlers.ui.broadcast import TelegramBroadcaster
from handlers.ui.callbacks import AnswerEveryCallback
from handlers.ui.group_admins import GroupAdmins
from handlers.ui.texts import t
from handlers.ui.video_notifier import TelegramVideoNotifier
from services.access import AccessService
from services.account import AccountService
from services.albums import AlbumCollector
from services.alerts import AlertService
from services.audio import AudioService
from services.broadcast import BroadcastService
from services.chat import ChatService
from services.conversation import ConversationService
from services.image_generation import ImageGenerator
from services.image_memory import ImageMemory
from services.journal import UpdateJournal
from services.llm.provider import ProviderRegistry
from services.model_choice import ModelChooser
from services.pacing import DraftBudget, KeyedPacer
from services.questions import QuestionService
from services.replicas import Replicas, replica_mode
from services.statistics import StatisticsService
from services.storage import Storage, open_storage
from services.users import UserService
from services.video import VideoService
from services.voice import VoiceService

if TYPE_CHECKING:  # redis-py is loaded only with REDIS_URL (bot/shared_state.py)
    from bot.shared_state import SharedState

log = logging.getLogger(__name__)

COMMANDS = (
    "start",
    "help",
    "new",
    "ask",
    "model",
    "settings",
    "image",
    "video",
    "usage",
    "balance",
    "lang",
)
# Shown in the menu of the admins' own chats only (with "balance" whatever the setting).
ADMIN_COMMANDS = ("stats", "broadcast", "user", "allow", "deny", "ban", "unban", "limit")
# The menu in every group: what members do there (no personal or admin commands).
GROUP_COMMANDS = ("ask", "new", "model", "settings", "image", "video", "help")


@dataclass(slots=True)
class Services:
    providers: ProviderRegistry
    storage: Storage
    users: UserService
    conversations: ConversationService
    chat: ChatService
    questions: QuestionService
    models: ModelChooser
    pacer: KeyedPacer
    drafts: DraftBudget
    audio: AudioService
    voice: VoiceService
    image_gen: ImageGenerator
    videos: VideoService
    account: AccountService
    access: AccessService
    broadcasts: BroadcastService
    statistics: StatisticsService
    alerts: AlertService
    # This process's replica id, heartbeat and the scan that takes over dead replicas' work.
    replicas: Replicas
    # REDIS_URL: the state replicas share (its client is closed last on shutdown).
    shared: SharedState | None = None


@dataclass(slots=True)
class App:
    settings: Settings
    bot: Bot
    dispatcher: Dispatcher
    services: Services
    metrics: Metrics
    readiness: Readiness
    draining: Draining
    journal: UpdateJournal
    # Set by stop() or SIGTERM in webhook mode.
    _stop: asyncio.Event | None = field(default=None)

    async def run(self, *, handle_signals: bool = True) -> None:
        """Webhook mode when WEBHOOK_URL is set, long polling otherwise."""
        if self.settings.server.webhook:
            await self.run_webhook(handle_signals=handle_signals)
        else:
            await self.run_polling(handle_signals=handle_signals)

    async def run_polling(self, *, handle_signals: bool = True) -> None:
        port = self.settings.server.health_port
        health = None
        if port is not None:
            health = await serve(
                health_app(self.readiness, self.metrics), self.settings.server.webhook_host, port
            )
        try:
            await self.dispatcher.start_polling(
                self.bot,
                polling_timeout=self.settings.telegram.polling_timeout,
                handle_signals=handle_signals,
                close_bot_session=True,
            )
        finally:
            if health is not None:
                await health.cleanup()

    async def run_webhook(self, *, handle_signals: bool = True) -> None:
        """Serve the webhook until stop() or SIGTERM/SIGINT: the dispatcher's start-up runs,
        the listener opens, then Telegram is told the URL (so its first delivery finds us).
        On stop the webhook path answers 503, the listener closes, answers in progress get
        SHUTDOWN_GRACE_SECONDS (the dispatcher's shutdown), then the bot's session closes.
        The webhook stays registered: other replicas keep serving it."""
        server = self.settings.server
        assert server.webhook_url is not None and server.webhook_secret is not None
        secret = server.webhook_secret.get_secret_value()
        stop = self._stop = asyncio.Event()
        self.draining.active = False
        app = webhook_app(
            self.dispatcher,
            self.bot,
            path=server.webhook_path,
            secret=secret,
            readiness=self.readiness,
            metrics=self.metrics,
            draining=self.draining,
            journal=self.journal,
        )
        try:
            runner = await serve(app, server.webhook_host, server.webhook_port)
        except BaseException:
            await self.bot.session.close()  # the app's own shutdown never ran
            raise
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        try:
            for sig in signals:
                loop.add_signal_handler(sig, stop.set)
            await self.bot.set_webhook(
                server.webhook_url,
                secret_token=secret,
                allowed_updates=self.dispatcher.resolve_used_update_types(),
                drop_pending_updates=False,
            )
            log.info("webhook mode: listening on %s:%d", server.webhook_host, server.webhook_port)
            await stop.wait()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            self.draining.active = True
            await runner.cleanup()
            self._stop = None

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
            return
        with contextlib.suppress(RuntimeError):  # not polling
            await self.dispatcher.stop_polling()


def _open_shared(settings: Settings) -> SharedState | None:
    if settings.storage.redis_url is None:
        return None
    from bot.shared_state import open_shared_state  # loads redis-py

    bot_id = int(settings.telegram.bot_token.get_secret_value().split(":", 1)[0])
    return open_shared_state(settings.storage.redis_url.get_secret_value(), bot_id)


def build_services(settings: Settings) -> Services:
    shared = _open_shared(settings)
    providers = build_providers(settings, shared)
    storage = open_storage(settings.storage.database_url)
    # PostgreSQL and Redis: several processes share the database (no instance lock).
    shared_db = replica_mode(settings.storage.database_url, shared is not None)
    replica_timeout = settings.storage.replica_timeout_seconds
    replicas = Replicas(
        storage,
        shared=shared_db,
        timeout=replica_timeout,
        heartbeat=min(5.0, replica_timeout / 4),
        scan_interval=min(5.0, replica_timeout / 4),
    )
    audio = AudioService(max_seconds=settings.limits.max_audio_seconds)
    users = UserService(
        storage,
        settings.admin.admin_ids,
        changes=shared.profiles if shared is not None else None,
        # With replicas a lost change notice leaves a record stale for a minute at most.
        max_age=60.0 if shared is not None else None,
    )
    conversations = ConversationService(
        storage,
        providers.context_length,
        max_tokens=settings.llm.max_tokens,
        default_context_tokens=settings.llm.default_context_tokens,
    )
    chat = ChatService(
        providers=providers,
        conversations=conversations,
        storage=storage,
        default_model=settings.llm.default_model,
        default_system_prompt=settings.llm.default_system_prompt,
        default_vision_model=settings.media.vision_model,
        images=ImageMemory(),
        users=users,
        stop_forwarder=shared.stops if shared is not None else None,
    )
    limits = settings.limits
    pacer = KeyedPacer(
        limits.telegram_global_rps,
        limits.telegram_chat_rps,
        shared=shared.rates if shared is not None else None,
    )
    # Drafts share the overall budget with messages (only what messages leave free), and
    # queue-position drafts a small part of that: see DraftBudget.
    drafts = DraftBudget(
        limits.draft_rps or limits.telegram_global_rps / 2,
        limits.progress_draft_rps or limits.telegram_global_rps / 10,
        overall=pacer,
    )
    voice = VoiceService(
        providers,
        audio,
        stt_model=settings.media.stt_model,
        tts_model=settings.media.tts_model,
        default_voice=settings.media.tts_voice,
    )
    access = AccessService(
        storage,
        mode=settings.access.mode,
        daily_requests=settings.access.user_daily_requests,
        daily_tokens=settings.access.user_daily_tokens,
        flood_per_minute=settings.access.user_flood_per_minute,
        # With replicas: flood windows and notices for all of them, levers seen at once.
        shared=shared.access_state() if shared is not None else None,
    )
    account = AccountService(providers, storage, quota=access)
    broadcasts = BroadcastService(
        storage,
        rate=settings.admin.broadcast_rps,
        progress_interval=settings.admin.broadcast_progress_seconds,
        replicas=replicas,
        users=users,
    )
    return Services(
        providers=providers,
        storage=storage,
        users=users,
        conversations=conversations,
        chat=chat,
        questions=QuestionService(chat, voice),
        models=ModelChooser(providers, users),
        pacer=pacer,
        drafts=drafts,
        audio=audio,
        voice=voice,
        image_gen=ImageGenerator(
            providers, default_model=settings.media.image_model, storage=storage
        ),
        videos=VideoService(
            storage,
            providers,
            default_model=settings.media.video_model,
            poll_seconds=settings.media.video_poll_seconds,
            timeout_minutes=settings.media.video_timeout_minutes,
            max_jobs_per_user=settings.limits.video_max_jobs_per_user,
            replicas=replicas,
        ),
        account=account,
        access=access,
        broadcasts=broadcasts,
        statistics=StatisticsService(
            storage,
            broadcasts,
            users=users,
            access=access,
            default_model=settings.llm.default_model,
        ),
        alerts=AlertService(
            providers,
            account,
            # Nobody to tell without admins: the balances are not even asked for.
            check_interval=settings.admin.balance_check_minutes * 60
            if settings.admin.admin_ids
            else 0,
            tokens_threshold=settings.gigachat.low_balance,
            # With replicas: one balance check per interval, each change told once.
            shared=shared.alert_state() if shared is not None else None,
        ),
        replicas=replicas,
        shared=shared,
    )


def build_bot(settings: Settings, pacer: KeyedPacer, metrics: Metrics | None = None) -> Bot:
    telegram = settings.telegram
    # 100 connections carry far more than Telegram's 30 messages/s (a call takes one round
    # trip); a burst waits its turn in the pool instead of opening a TLS session per call.
    session = TelegramSession(
        api=TelegramAPIServer.from_base(telegram.api_url),
        proxy=resolve_proxy(telegram.proxy, telegram.api_url),
        limit=100,
    )
    # Outermost first: every retry of an answer takes its own turn in flood control.
    delays = backoff_delays(telegram.retry_delay_seconds, telegram.retries)
    session.middleware(DeliveryRetry(delays))
    session.middleware(
        FloodControl(pacer, on_retry_after=metrics.telegram_429.inc if metrics else None)
    )
    return Bot(
        token=settings.telegram.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


def build_app(settings: Settings) -> App:
    # Before anything else: a second process on this database stops here, so broadcasts and
    # video jobs are never driven twice (released last on shutdown).
    # A file lock beside an SQLite database, an advisory lock on PostgreSQL.
    # Replica mode (PostgreSQL and REDIS_URL) takes none: work is owned per row instead.
    instance_lock = instance_lock_for(
        settings.storage.database_url,
        replicas=replica_mode(
            settings.storage.database_url, settings.storage.redis_url is not None
        ),
    )
    instance_lock.acquire()
    services = build_services(settings)
    metrics = Metrics()
    bot = build_bot(settings, services.pacer, metrics)
    services.chat.add_listener(metrics.answer_ended)
    # One log line per answer: status, model, latency (and the update it answers).
    services.chat.add_listener(log_answer)
    services.videos.add_state_listener(metrics.media_job)
    for provider in services.providers.providers:
        if provider.limiter is not None:
            provider.limiter.on_grant = metrics.queue_wait.observe
    metrics.watch(
        active_streams=lambda: services.chat.active,
        queues=[p.limiter.queued for p in services.providers.providers if p.limiter],
        media_jobs_active=lambda: services.videos.active_pollers,
    )
    draining = Draining()
    readiness = Readiness(
        services.storage,
        services.providers,
        draining,
        # Replicas share limits, forms and Stop there: one that cannot reach Redis is not ready.
        redis_ping=services.shared.redis.ping if services.shared is not None else None,
    )
    services.videos.set_notifier(TelegramVideoNotifier(bot))
    broadcaster = TelegramBroadcaster(bot, settings.admin.broadcast_rps)
    services.broadcasts.attach(broadcaster, broadcaster)
    services.alerts.attach(TelegramAlertNotifier(bot, services.users, settings.admin.admin_ids))
    # With replicas, forms live in Redis so that one continues on any replica.
    shared_forms = services.shared.fsm_storage() if services.shared is not None else None
    dispatcher = Dispatcher(
        # No FSM record is kept for chats that are not in the middle of a form.
        storage=shared_forms if shared_forms is not None else CompactMemoryStorage(),
        # What handlers receive by parameter name.
        chat=services.chat,
        questions=services.questions,
        users=services.users,
        models=services.models,
        render=RenderConfig(
            draft_interval=settings.limits.draft_interval_seconds,
            edit_interval=settings.limits.edit_interval_seconds,
            drafts=services.drafts,
        ),
        voice=services.voice,
        # With replicas an album's parts may reach several of them: collected in Redis, as
        # JSON read back bound to this bot (so that answering a part read back works).
        albums=services.shared.album_collector(
            settings.media.album_window_seconds,
            dump=lambda message: message.model_dump_json(exclude_unset=True, by_alias=True),
            load=lambda text: Message.model_validate_json(text, context={"bot": bot}),
            key=lambda message: str(message.message_id),
            replica_timeout=settings.storage.replica_timeout_seconds,
        )
        if services.shared is not None
        else AlbumCollector(window=settings.media.album_window_seconds),
        image_gen=services.image_gen,
        videos=services.videos,
        account=services.account,
        access=services.access,
        broadcasts=services.broadcasts,
        statistics=services.statistics,
        balance_for_everyone=settings.admin.balance_for_everyone,
        # Groups' admins as Telegram reports them, each answer kept a minute.
        group_admins=GroupAdmins(),
        max_audio_seconds=settings.limits.max_audio_seconds,
        media_defaults=MediaDefaults(
            image_model=settings.media.image_model,
            voice=settings.media.tts_voice,
            speech=services.voice.can_speak,
        ),
    )
    in_flight = InFlight()
    journal = UpdateJournal(services.storage, replicas=services.replicas)
    replayer = Replayer(dispatcher, bot, journal)
    # What each scan takes over from dead replicas (with one process: from the last run).
    services.replicas.add_scanner("video", services.videos.take_over)
    services.replicas.add_scanner("broadcast", services.broadcasts.take_over)
    services.replicas.add_scanner("journal", replayer.take_over)
    # One counter increment per update, by type (before anything can drop it as a duplicate).
    dispatcher.update.outer_middleware(UpdateCounter(metrics))
    dispatcher.update.outer_middleware(in_flight)
    # Right after InFlight: the update is stored before anything of ours works on it, and the
    # shutdown's drain waits for its final write.
    dispatcher.update.outer_middleware(JournalMiddleware(journal))
    dispatcher.update.outer_middleware(ProfileMiddleware(services.users))
    # Log lines written while handling an update (and its answer's tasks) carry its id.
    dispatcher.update.outer_middleware(LogContext())
    dispatcher.message.middleware(RestartNote())
    # Every handler flagged `spends`: ban → access list → flood → quota, before any upstream call.
    dispatcher.message.middleware(SpendGuard(services.access))
    # Every button press is answered, after its handler, with the toast it left in
    # `callback_answer` (a press nothing answers spins until Telegram gives up).
    dispatcher.callback_query.middleware(AnswerEveryCallback())
    dispatcher.include_routers(*get_routers())

    async def release() -> None:
        # No more taking over; what this replica owns is released last (below).
        await services.replicas.halt()
        await services.chat.close()
        await in_flight.drain(5.0)
        await replayer.close()
        await journal.close()
        await services.videos.close()
        # A broadcast keeps its place in storage and resumes on the next start.
        await services.broadcasts.close()
        # Notices already queued (a breaker that just opened) go out while the bot can send.
        await services.alerts.close()
        # Quota reservations being released reach Redis before it closes.
        await services.access.close()
        await services.audio.close()
        # Jobs, a broadcast and put-off updates still owned go to the other replicas at once.
        await services.replicas.close()
        await services.storage.close()
        await services.providers.aclose()
        if services.shared is not None:
            await services.shared.aclose()
        instance_lock.release()

    async def on_startup(bot: Bot, **_: Any) -> None:
        try:
            await services.storage.connect()
            journal.start()  # prunes old finished updates now and hourly
            if services.shared is not None:
                # A Stop pressed on another replica for an answer streaming here.
                services.shared.stops.listen(services.chat.stop_forwarded)
                # A breaker opened (closed) on another replica is followed here.
                services.shared.breakers.listen()
                # Settings changed (forms opened) on another replica leave this one's caches.
                services.shared.profiles.listen(services.users.cache)
                if shared_forms is not None:
                    services.shared.forms.listen(shared_forms.no_form)
            if not settings.server.webhook:
                # Long polling and a webhook exclude each other; a leftover webhook would
                # make getUpdates fail. Pending updates are kept. (Webhook mode registers
                # its URL once its listener is up: see App.run_webhook.)
                await bot.delete_webhook(drop_pending_updates=False)
            await register_commands(
                bot,
                settings.admin.admin_ids,
                balance_for_everyone=settings.admin.balance_for_everyone,
            )
            # Admins' notices: provider outages (breakers) and low balances.
            services.alerts.start()
            me = await bot.me()
            # Videos being generated, broadcasts being sent and questions left unanswered
            # (a crash, a kill, or put off by a shutdown) by the last run, or by a dead
            # replica, go on here: now, and with replicas at every scan.
            await services.replicas.start()
        except BaseException:
            # aiogram runs the shutdown hook only after a successful start-up: without
            # this, the database's worker thread would keep the failed process alive.
            await release()
            raise
        log.info(
            "bot @%s started (providers: %s)",
            me.username,
            ", ".join(p.title for p in services.providers.providers),
        )

    async def on_shutdown(**_: Any) -> None:
        # Questions not begun yet are put off: the journal keeps them and they are answered
        # after the restart instead of being cut short in the grace period.
        replayer.halt()
        deferred = services.chat.begin_shutdown()
        if deferred:
            log.info("%d questions put off until the restart", deferred)
        # Let answers in progress finish; after the grace period, stop them (their
        # partial text is delivered and stored), then close what they use.
        if not await in_flight.drain(settings.shutdown_grace_seconds):
            log.info("stopping %d unfinished updates", in_flight.active)
        await release()
        log.info("bot stopped")

    dispatcher.startup.register(on_startup)
    dispatcher.shutdown.register(on_shutdown)
    return App(
        settings=settings,
        bot=bot,
        dispatcher=dispatcher,
        services=services,
        metrics=metrics,
        readiness=readiness,
        draining=draining,
        journal=journal,
    )


async def register_commands(
    bot: Bot, admin_ids: frozenset[int] = frozenset(), *, balance_for_everyone: bool = False
) -> None:
    """Command menus in English (default) and Russian: everyone's (with /balance only when
    everyone may use it), the admins' own chats' (every command, the admin ones included) and
    every group's; a failure is not fatal."""
    everyone = [c for c in COMMANDS if balance_for_everyone or c != "balance"]
    menus: list[tuple[str, tuple[str, ...], Any]] = [
        ("default", tuple(everyone), None),
        ("group", GROUP_COMMANDS, BotCommandScopeAllGroupChats()),
    ]
    for name, menu, scope in menus:
        for lang, code in (("en", None), ("ru", "ru")):
            commands = [BotCommand(command=c, description=t(lang, f"cmd_{c}")) for c in menu]
            try:
                await bot.set_my_commands(commands, scope=scope, language_code=code)
            except TelegramAPIError as error:
                log.warning("could not register the %s %s commands: %s", name, lang, error)
    admin_menu = (*COMMANDS, *ADMIN_COMMANDS)
    for admin_id in sorted(admin_ids):
        for lang, code in (("en", None), ("ru", "ru")):
            commands = [BotCommand(command=c, description=t(lang, f"cmd_{c}")) for c in admin_menu]
            scope = BotCommandScopeChat(chat_id=admin_id)
            try:
                await bot.set_my_commands(commands, scope=scope, language_code=code)
            except TelegramAPIError as error:  # e.g. the admin has not started the bot yet
                log.info("could not register the admin menu for %d: %s", admin_id, error)
                break
