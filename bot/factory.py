"""The composition root: the one place that builds long-lived objects and closes them.

Production (`python -m bot`) and the end-to-end tests both call `build_app()`, so
the tests exercise exactly what runs in production.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeChat

from bot.fsm_storage import CompactMemoryStorage
from bot.middlewares import InFlight, ProfileMiddleware
from bot.settings import Settings
from bot.telegram_session import FloodControl, TelegramSession
from handlers import get_routers
from handlers.settings import MediaDefaults
from handlers.ui.answer import RenderConfig
from handlers.ui.broadcast import TelegramBroadcaster
from handlers.ui.texts import t
from handlers.ui.video_notifier import TelegramVideoNotifier
from services.account import AccountService
from services.albums import AlbumCollector
from services.audio import AudioService
from services.broadcast import BroadcastService
from services.chat import ChatService
from services.conversation import ConversationService
from services.http1 import ConnectionPool, CookielessAsyncClient, Http1Transport
from services.image_generation import ImageGenerator
from services.image_memory import ImageMemory
from services.llm import CircuitBreaker, FairRateLimiter, LLMClient, MediaClient, ModelCatalog
from services.model_choice import ModelChooser
from services.pacing import KeyedPacer
from services.statistics import StatisticsService
from services.storage import Storage, open_storage
from services.users import UserService
from services.video import VideoService
from services.voice import VoiceService

log = logging.getLogger(__name__)

RATE_SAFETY = 0.97
COMMANDS = (
    "start",
    "help",
    "new",
    "model",
    "settings",
    "image",
    "video",
    "usage",
    "balance",
    "lang",
)
# Shown in the menu of the admins' own chats only.
ADMIN_COMMANDS = ("stats", "broadcast")


@dataclass(slots=True)
class Services:
    http: httpx.AsyncClient
    storage: Storage
    limiter: FairRateLimiter
    breaker: CircuitBreaker
    llm: LLMClient
    catalog: ModelCatalog
    users: UserService
    conversations: ConversationService
    chat: ChatService
    models: ModelChooser
    pacer: KeyedPacer
    media: MediaClient
    audio: AudioService
    voice: VoiceService
    image_gen: ImageGenerator
    videos: VideoService
    account: AccountService
    broadcasts: BroadcastService
    statistics: StatisticsService


@dataclass(slots=True)
class App:
    settings: Settings
    bot: Bot
    dispatcher: Dispatcher
    services: Services

    async def run_polling(self, *, handle_signals: bool = True) -> None:
        await self.dispatcher.start_polling(
            self.bot,
            polling_timeout=self.settings.polling_timeout,
            handle_signals=handle_signals,
            close_bot_session=True,
        )

    async def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # not polling
            await self.dispatcher.stop_polling()


def build_services(settings: Settings) -> Services:
    # Queueing happens in our own fair limiter, not in the connection pool; the pool is
    # sized for every answer being written at once.
    http = CookielessAsyncClient(
        timeout=httpx.Timeout(settings.llm_timeout_seconds, connect=10.0, pool=None),
        # httpx's API on a lean HTTP/1.1 wire (services/http1): httpcore and h11 cost more
        # per streamed chunk than the bot's own work with it.
        transport=Http1Transport(
            ConnectionPool(
                ssl_context=httpx.create_ssl_context(),
                max_connections=2000,
                max_idle=200,
                idle_expiry=5.0,
            )
        ),
    )
    storage = open_storage(settings.database_url)
    # Starts are spaced 3% wider than the configured rate: arrival jitter on the
    # network must not make two starts look too close to the upstream's counter.
    limiter = FairRateLimiter(settings.llm_rps * RATE_SAFETY)
    breaker = CircuitBreaker(
        failure_threshold=settings.breaker_failures, cooldown=settings.breaker_cooldown_seconds
    )
    llm = LLMClient(
        http,
        settings.llm_base_url,
        settings.llm_api_key.get_secret_value(),
        limiter=limiter,
        breaker=breaker,
        app_title=settings.llm_app_title,
    )
    media = MediaClient(
        http,
        settings.llm_base_url,
        settings.llm_api_key.get_secret_value(),
        limiter=limiter,
        breaker=breaker,
        app_title=settings.llm_app_title,
    )
    audio = AudioService(max_seconds=settings.max_audio_seconds)
    catalog = ModelCatalog(llm, ttl=settings.models_cache_seconds)
    users = UserService(storage, settings.admin_ids)
    conversations = ConversationService(
        storage,
        catalog,
        max_tokens=settings.max_tokens,
        default_context_tokens=settings.default_context_tokens,
    )
    chat = ChatService(
        client=llm,
        conversations=conversations,
        storage=storage,
        default_model=settings.default_model,
        default_system_prompt=settings.default_system_prompt,
        default_vision_model=settings.vision_model,
        images=ImageMemory(),
    )
    pacer = KeyedPacer(settings.telegram_global_rps, settings.telegram_chat_rps)
    broadcasts = BroadcastService(
        storage,
        rate=settings.broadcast_rps,
        progress_interval=settings.broadcast_progress_seconds,
    )
    return Services(
        http=http,
        storage=storage,
        limiter=limiter,
        breaker=breaker,
        llm=llm,
        catalog=catalog,
        users=users,
        conversations=conversations,
        chat=chat,
        models=ModelChooser(catalog, users),
        pacer=pacer,
        media=media,
        audio=audio,
        voice=VoiceService(
            media,
            audio,
            stt_model=settings.stt_model,
            tts_model=settings.tts_model,
            default_voice=settings.tts_voice,
        ),
        image_gen=ImageGenerator(media, default_model=settings.image_model),
        videos=VideoService(
            storage,
            media,
            default_model=settings.video_model,
            poll_seconds=settings.video_poll_seconds,
            timeout_minutes=settings.video_timeout_minutes,
            max_jobs_per_user=settings.video_max_jobs_per_user,
        ),
        account=AccountService(media, storage),
        broadcasts=broadcasts,
        statistics=StatisticsService(storage, broadcasts),
    )


def build_bot(settings: Settings, pacer: KeyedPacer) -> Bot:
    # 100 connections carry far more than Telegram's 30 messages/s (a call takes one round
    # trip); a burst waits its turn in the pool instead of opening a TLS session per call.
    session = TelegramSession(api=TelegramAPIServer.from_base(settings.telegram_api_url), limit=100)
    session.middleware(FloodControl(pacer))
    return Bot(
        token=settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


def build_app(settings: Settings) -> App:
    services = build_services(settings)
    bot = build_bot(settings, services.pacer)
    services.videos.set_notifier(TelegramVideoNotifier(bot))
    broadcaster = TelegramBroadcaster(bot, settings.broadcast_rps)
    services.broadcasts.attach(broadcaster, broadcaster)
    dispatcher = Dispatcher(
        # No FSM record is kept for chats that are not in the middle of a form.
        storage=CompactMemoryStorage(),
        # What handlers receive by parameter name.
        chat=services.chat,
        users=services.users,
        models=services.models,
        render=RenderConfig(
            draft_interval=settings.draft_interval_seconds,
            edit_interval=settings.edit_interval_seconds,
        ),
        voice=services.voice,
        albums=AlbumCollector(window=settings.album_window_seconds),
        image_gen=services.image_gen,
        videos=services.videos,
        account=services.account,
        broadcasts=services.broadcasts,
        statistics=services.statistics,
        balance_for_everyone=settings.balance_for_everyone,
        max_audio_seconds=settings.max_audio_seconds,
        media_defaults=MediaDefaults(image_model=settings.image_model, voice=settings.tts_voice),
    )
    in_flight = InFlight()
    dispatcher.update.outer_middleware(in_flight)
    dispatcher.update.outer_middleware(ProfileMiddleware(services.users))
    dispatcher.include_routers(*get_routers())

    async def release() -> None:
        await services.chat.close()
        await in_flight.drain(5.0)
        await services.videos.close()
        # A broadcast keeps its place in storage and resumes on the next start.
        await services.broadcasts.close()
        await services.audio.close()
        await services.storage.close()
        await services.http.aclose()

    async def on_startup(bot: Bot, **_: Any) -> None:
        try:
            await services.storage.connect()
            # Long polling and a webhook exclude each other; a leftover webhook would
            # make getUpdates fail. Pending updates are kept.
            await bot.delete_webhook(drop_pending_updates=False)
            await register_commands(bot, settings.admin_ids)
            # Videos being generated and broadcasts being sent when the bot stopped go on.
            await services.videos.start()
            await services.broadcasts.resume()
            me = await bot.me()
        except BaseException:
            # aiogram runs the shutdown hook only after a successful start-up: without
            # this, the database's worker thread would keep the failed process alive.
            await release()
            raise
        log.info("bot @%s started (upstream %s)", me.username, settings.llm_base_url)

    async def on_shutdown(**_: Any) -> None:
        # Let answers in progress finish; after the grace period, stop them (their
        # partial text is delivered and stored), then close what they use.
        if not await in_flight.drain(settings.shutdown_grace_seconds):
            log.info("stopping %d unfinished updates", in_flight.active)
        await release()
        log.info("bot stopped")

    dispatcher.startup.register(on_startup)
    dispatcher.shutdown.register(on_shutdown)
    return App(settings=settings, bot=bot, dispatcher=dispatcher, services=services)


async def register_commands(bot: Bot, admin_ids: frozenset[int] = frozenset()) -> None:
    """Command menus in English (default) and Russian, with the admin commands in admins'
    own chats; a failure is not fatal."""
    for lang, code in (("en", None), ("ru", "ru")):
        commands = [BotCommand(command=c, description=t(lang, f"cmd_{c}")) for c in COMMANDS]
        try:
            await bot.set_my_commands(commands, language_code=code)
        except TelegramAPIError as error:
            log.warning("could not register %s commands: %s", lang, error)
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
