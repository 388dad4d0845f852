"""Building the configured providers: one HTTP client, auth, limiter, breaker and catalog each.

A provider is enabled by its key (LLM_API_KEY, GIGACHAT_CREDENTIALS, MASHAGPT_API_KEY). Each
gets its own `httpx.AsyncClient` with its own proxy and CA bundle, so a GigaChat CA or a proxy
for one upstream never changes how another is reached; its own limiter and breaker, so one
provider queueing or failing never holds back the users of the others.

Adding another OpenAI-compatible provider: a settings section (key, base URL, proxy, rate), a
builder here like `_primary` (an `LLMClient` with the provider's auth headers wrapped in
`OpenAIChat`, a `ModelCatalog`) and its name in `services.llm.provider.KNOWN_NAMESPACES`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx

from bot.settings import Settings
from services.http_clients import HttpTarget, build_http_client
from services.llm import (
    CircuitBreaker,
    FairRateLimiter,
    LLMClient,
    MediaClient,
    ModelCatalog,
    vsegpt,
)
from services.llm.openai_compat import OpenAIChat
from services.llm.provider import Provider, ProviderRegistry

if TYPE_CHECKING:  # redis-py is loaded only with REDIS_URL
    from bot.shared_state import SharedState

log = logging.getLogger(__name__)

# Starts are spaced 2% wider than the configured rate: arrival jitter on the network must
# not make two starts look too close to the upstream's counter (the starts themselves keep
# their spacing exactly, also across replicas).
RATE_SAFETY = 0.98


def _breaker(settings: Settings, shared: SharedState | None, provider: str) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=settings.llm.breaker_failures,
        cooldown=settings.llm.breaker_cooldown_seconds,
        # With replicas, one open/closed state (and one admin notice) for all of them (Redis).
        shared=shared.breakers.share(provider) if shared is not None else None,
    )


def _primary_title(base_url: str) -> str:
    host = httpx.URL(base_url).host
    return "VseGPT" if host == vsegpt.HOST else host


def _primary(settings: Settings, shared: SharedState | None) -> Provider:
    """The OpenAI-compatible provider of LLM_*: VseGPT by default; bare model ids."""
    llm = settings.llm
    assert llm.api_key is not None
    key = llm.api_key.get_secret_value()
    # httpx's API on aiohttp's wire (services/http_clients.py), with the upstream's own
    # proxy and CA bundle; queueing happens in our fair limiter, not in the pool.
    http = build_http_client(
        HttpTarget(proxy=llm.proxy, ca_bundle=llm.ca_bundle, read_timeout=llm.timeout_seconds)
    )
    rate = llm.rps * RATE_SAFETY
    # With replicas, LLM_RPS holds for all of them together (Redis).
    gate = shared.start_gate("openai", rate) if shared is not None and rate else None
    limiter = FairRateLimiter(rate, gate=gate)
    breaker = _breaker(settings, shared, "openai")
    client = LLMClient(
        http,
        llm.base_url,
        key,
        limiter=limiter,
        breaker=breaker,
        app_title=llm.app_title,
        deadline=llm.request_deadline_seconds,
        stream_gap=llm.stream_gap_seconds,
        # VseGPT's cost header and id prefixes: other servers send no such header and use
        # no such prefixes, so reading them costs those nothing.
        credits_header=vsegpt.CREDITS_HEADER,
    )
    chat = OpenAIChat(client, model_kinds=vsegpt.with_prefix_kinds)
    media = MediaClient(
        http,
        llm.base_url,
        key,
        limiter=limiter,
        breaker=breaker,
        app_title=llm.app_title,
        deadline=llm.request_deadline_seconds,
    )
    is_vsegpt = httpx.URL(llm.base_url).host == vsegpt.HOST
    return Provider(
        name="openai",
        title=_primary_title(llm.base_url),
        chat=chat,
        catalog=ModelCatalog(chat, ttl=llm.models_cache_seconds),
        breaker=breaker,
        primary=True,
        # Any OpenAI-compatible server may offer these; one that does not answers 404,
        # which the user sees as "not offered by this provider".
        stt=media,
        tts=media,
        images=media,
        video=media,
        balance=media,
        units=("credits",) if is_vsegpt else (),
        closers=[http.aclose],
        limiter=limiter,
    )


def _gigachat(settings: Settings, shared: SharedState | None) -> Provider:
    # Imported only when configured: a bot without GigaChat does not carry its code.
    from services.llm.gigachat import build_gigachat

    giga = settings.gigachat
    assert giga.credentials is not None
    llm = settings.llm
    if not giga.verify_ssl:
        log.warning(
            "GIGACHAT_VERIFY_SSL=false: GigaChat's certificates are not checked; "
            "set GIGACHAT_CA_BUNDLE to the Russian Trusted Root CA instead"
        )
    # One client for the OAuth and the API hosts: the CA bundle and the proxy apply to both.
    http = build_http_client(
        HttpTarget(
            proxy=giga.proxy,
            ca_bundle=giga.ca_bundle,
            verify=giga.verify_ssl,
            read_timeout=llm.timeout_seconds,
        )
    )
    breaker = _breaker(settings, shared, "gigachat")
    built = build_gigachat(
        http,
        base_url=giga.base_url,
        auth_url=giga.auth_url,
        credentials=giga.credentials.get_secret_value(),
        scope=giga.scope,
        max_streams=giga.max_streams,
        # With replicas, GIGACHAT_MAX_STREAMS holds for all of them together (Redis).
        shared_streams=(
            shared.stream_slots("gigachat", giga.max_streams) if shared is not None else None
        ),
        breaker=breaker,
        stream_gap=llm.stream_gap_seconds,
        # With replicas, one OAuth token for all of them (Redis).
        shared_token=(
            shared.gigachat_token(giga.credentials.get_secret_value(), giga.scope)
            if shared is not None
            else None
        ),
    )
    return Provider(
        name="gigachat",
        title="GigaChat",
        chat=built.chat,
        catalog=ModelCatalog(built, ttl=llm.models_cache_seconds),
        breaker=breaker,
        images=built.images,
        balance=built.balance_source,
        embeddings=built.embeddings,
        closers=[http.aclose],
    )


def _mashagpt(settings: Settings, shared: SharedState | None) -> Provider:
    from services.llm.mashagpt import build_mashagpt  # only when configured, as GigaChat

    masha = settings.mashagpt
    assert masha.api_key is not None
    llm = settings.llm
    http = build_http_client(HttpTarget(proxy=masha.proxy, read_timeout=llm.timeout_seconds))
    breaker = _breaker(settings, shared, "mashagpt")
    built = build_mashagpt(
        http,
        base_url=masha.base_url,
        api_key=masha.api_key.get_secret_value(),
        rps=masha.rps * RATE_SAFETY,
        rate_gate=(
            shared.start_gate("mashagpt", masha.rps * RATE_SAFETY)
            if shared is not None and masha.rps
            else None
        ),
        models=masha.models,
        breaker=breaker,
        deadline=llm.request_deadline_seconds,
        stream_gap=llm.stream_gap_seconds,
    )
    return Provider(
        name="mashagpt",
        title="MashaGPT",
        chat=built.chat,
        catalog=ModelCatalog(built.models, ttl=llm.models_cache_seconds),
        breaker=breaker,
        # Pictures and videos go through its task API, on the same resumable video jobs.
        images=built.tasks,
        video=built.tasks,
        image_jobs=True,
        units=("energy",),
        closers=[http.aclose],
    )


def build_providers(settings: Settings, shared: SharedState | None = None) -> ProviderRegistry:
    """The configured providers, the primary one first (menu order); with `shared` (Redis),
    their rate and stream limits hold for all replicas together."""
    providers: list[Provider] = []
    if settings.llm.api_key is not None:
        providers.append(_primary(settings, shared))
    if settings.gigachat.enabled:
        providers.append(_gigachat(settings, shared))
    if settings.mashagpt.enabled:
        providers.append(_mashagpt(settings, shared))
    return ProviderRegistry(providers)
