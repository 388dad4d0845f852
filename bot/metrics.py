"""Prometheus metrics: collectors in a registry of their own, built once by the factory.

Nothing here is module-level state: `Metrics()` makes a `CollectorRegistry` and its collectors,
the factory hands its small callbacks to the seams that see the events (an update middleware,
the chat service's answer listener, the limiters' grant hook, flood control's 429 hook, the
media jobs' state listener) and `/metrics` renders it. The hot path costs one counter increment
or histogram observation per event; labelled children are looked up once and kept.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from services.chat import Reply, ReplyOutcome

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "UpdateCounter"]

# Upstream latencies: from a fraction of a second (a short answer) to minutes (a long one).
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
QUEUE_BUCKETS = (0.01, 0.1, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.updates = Counter(
            "bot_updates", "Updates received, by type", ["type"], registry=registry
        )
        self.answers = Counter(
            "bot_answers", "Chat answers ended, by status", ["status"], registry=registry
        )
        self.upstream_latency = Histogram(
            "bot_upstream_request_seconds",
            "Chat answers: from the turn of the question to the end of the upstream stream",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "bot_upstream_ttft_seconds",
            "Chat answers: from the turn of the question to the first token",
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "bot_upstream_errors",
            "Chat answers that ended with an upstream error, by kind",
            ["kind"],
            registry=registry,
        )
        self.queue_length = Gauge(
            "bot_llm_queue_length",
            "Requests waiting in the providers' rate limiters",
            registry=registry,
        )
        self.queue_wait = Histogram(
            "bot_llm_queue_wait_seconds",
            "Time a request waited in a provider's rate limiter",
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.telegram_429 = Counter(
            "bot_telegram_429", "Telegram answers 429 Too Many Requests", registry=registry
        )
        self.active_streams = Gauge(
            "bot_active_streams", "Answers being generated now", registry=registry
        )
        self.media_jobs = Counter(
            "bot_media_jobs",
            "Media jobs (pictures, videos) reaching a state: submitted (IN_QUEUE), DELIVERED, "
            "FAILED, TIMEOUT, ERROR",
            ["kind", "state"],
            registry=registry,
        )
        self.media_jobs_active = Gauge(
            "bot_media_jobs_active", "Media jobs this process polls now", registry=registry
        )
        self._update_children: dict[str, Any] = {}
        self._answer_children: dict[str, Any] = {}

    # --- hooks, each cheap ------------------------------------------------------------------

    def update(self, kind: str) -> None:
        child = self._update_children.get(kind)
        if child is None:
            child = self._update_children[kind] = self.updates.labels(kind)
        child.inc()

    def answer_ended(self, reply: Reply, outcome: ReplyOutcome) -> None:
        """ChatService's listener: status, latency, time to first token, error kind."""
        status = outcome.status.value
        child = self._answer_children.get(status)
        if child is None:
            child = self._answer_children[status] = self.answers.labels(status)
        child.inc()
        began = reply.working_since
        if began is not None and status != "deferred":
            if reply.first_token_at is not None:
                self.ttft.observe(max(0.0, reply.first_token_at - began))
            self.upstream_latency.observe(max(0.0, time.monotonic() - began))
        if outcome.error is not None:
            self.upstream_errors.labels(type(outcome.error).__name__).inc()

    def media_job(self, kind: str, state: str) -> None:
        self.media_jobs.labels(kind, state).inc()

    def watch(
        self,
        *,
        active_streams: Callable[[], float],
        queues: Iterable[Callable[[], float]],
        media_jobs_active: Callable[[], float],
    ) -> None:
        """Gauges read when scraped: nothing is counted on the hot path for them."""
        queue_list = list(queues)
        self.active_streams.set_function(active_streams)
        self.queue_length.set_function(lambda: float(sum(q() for q in queue_list)))
        self.media_jobs_active.set_function(media_jobs_active)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class UpdateCounter(BaseMiddleware):
    """An outer update middleware: one increment per update, by its type."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if isinstance(event, Update):
            self._metrics.update(event.event_type)
        return await handler(event, data)
