"""MashaGPT: OpenAI-shaped chat billed in energy, and a task API for pictures and videos.

`build_mashagpt` wires one account: its chat, task and model-list parts share the account's
rate limiter (the upstream counts all of its requests together) and the breaker the factory
keeps on the `Provider`; the factory wraps the result as provider `NAME` with units `UNITS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from services.llm.breaker import CircuitBreaker
from services.llm.client import LLMClient
from services.llm.limiter import FairRateLimiter, StartGate
from services.llm.mashagpt.auth import PROVIDER, auth_headers
from services.llm.mashagpt.models import MashaModels
from services.llm.mashagpt.tasks import MashaTasks
from services.llm.openai_compat import OpenAIChat

__all__ = [
    "NAME",
    "TITLE",
    "UNITS",
    "MashaModels",
    "MashaProvider",
    "MashaTasks",
    "build_mashagpt",
]

NAME = PROVIDER
TITLE = "MashaGPT"
UNITS = ("energy",)


@dataclass(frozen=True, slots=True)
class MashaProvider:
    chat: OpenAIChat  # a ChatBackend: OpenAI's wire shape, MashaGPT's model list
    tasks: MashaTasks  # an ImageMaker and a VideoMaker
    models: MashaModels  # what chat.list_models answers


def build_mashagpt(
    http: httpx.AsyncClient,
    *,
    base_url: str,
    api_key: str,
    rps: float,
    rate_gate: StartGate | None = None,
    models: tuple[str, ...],
    breaker: CircuitBreaker,
    deadline: float | None,
    stream_gap: float | None,
) -> MashaProvider:
    """One MashaGPT account on `http` (owned and closed by the caller).

    `rps`: request starts per second for the account (0: not paced), `rate_gate` the same
    rate shared by all replicas; `models`: the ids
    offered when `GET /models` does not answer; `deadline`: the longest one non-streamed
    attempt may take; `stream_gap`: the longest wait between two lines of a stream.
    """
    limiter = FairRateLimiter(rps, gate=rate_gate)
    client = LLMClient(
        http,
        base_url,
        api_key,
        limiter=limiter,
        breaker=breaker,
        deadline=deadline,
        auth_headers=auth_headers(api_key),
        provider=PROVIDER,
        stream_gap=stream_gap,
    )
    listing = MashaModels(client, models)
    tasks = MashaTasks(http, base_url, api_key, limiter=limiter, breaker=breaker, deadline=deadline)
    chat = OpenAIChat(client, models=listing)
    return MashaProvider(chat=chat, tasks=tasks, models=listing)
