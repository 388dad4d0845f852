"""GigaChat (Sber) as a provider: OAuth, chat with pictures, drawing, balance, embeddings.

`build_gigachat()` wires the pieces on one httpx client (built by the factory with the proxy
and the CA bundle that reach both the OAuth and the API host): one `GigaChatAuth`, one breaker,
one `FairSlots` bounding the requests in flight per key (GigaChat limits concurrency, not
rate: one stream at a time for individuals, ten for companies).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from services.llm.breaker import CircuitBreaker
from services.llm.client import LLMClient
from services.llm.errors import UpstreamError
from services.llm.gigachat.account import GigaChatAccount
from services.llm.gigachat.auth import GigaChatAuth, SharedToken
from services.llm.gigachat.chat import PROGRESS_ROLES, GigaChatChat, display_model
from services.llm.gigachat.errors import classify_gigachat
from services.llm.gigachat.files import GigaChatFiles
from services.llm.gigachat.images import GigaChatImages
from services.llm.limiter import FairRateLimiter
from services.llm.retry import RetryPolicy
from services.llm.slots import FairSlots, SharedCount
from services.llm.transport import Classifier, UpstreamTransport
from services.llm.types import ModelInfo

__all__ = [
    "DEFAULT_AUTH_URL",
    "DEFAULT_BASE_URL",
    "GigaChatAccount",
    "GigaChatAuth",
    "GigaChatChat",
    "GigaChatFiles",
    "GigaChatImages",
    "GigaChatProvider",
    "build_gigachat",
    "classify_gigachat",
    "display_model",
]

DEFAULT_BASE_URL = "https://gigachat.devices.sberbank.ru/api/v1"
DEFAULT_AUTH_URL = "https://ngw.devices.sberbank.ru:9443/api/v2/oauth"
_PROVIDER = "gigachat"
_REDACTED = "***"


@dataclass(frozen=True, slots=True, eq=False)
class GigaChatProvider:
    """What the factory wraps in a `Provider`; it owns none of the HTTP client."""

    chat: GigaChatChat
    images: GigaChatImages
    account: GigaChatAccount
    files: GigaChatFiles
    slots: FairSlots
    auth: GigaChatAuth

    @property
    def balance_source(self) -> GigaChatAccount:
        return self.account

    @property
    def embeddings(self) -> GigaChatAccount:
        return self.account

    async def list_models(self) -> list[ModelInfo]:
        return await self.account.list_models()


def _redacting(classify: Classifier, auth: GigaChatAuth) -> Classifier:
    """`classify` on a body with the auth's current secrets masked."""

    def classify_redacted(status: int, body: str) -> UpstreamError:
        for secret in auth.secrets():
            body = body.replace(secret, _REDACTED)
        return classify(status, body)

    return classify_redacted


def build_gigachat(
    http: httpx.AsyncClient,
    *,
    base_url: str = DEFAULT_BASE_URL,
    auth_url: str = DEFAULT_AUTH_URL,
    credentials: str,
    scope: str,
    max_streams: int,
    shared_streams: SharedCount | None = None,
    breaker: CircuitBreaker,
    retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen dataclass, safe as a default
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    stream_gap: float | None = None,
    queue_notice_after: float = 1.0,
    shared_token: SharedToken | None = None,
) -> GigaChatProvider:
    """GigaChat's capabilities on `http` (which the caller closes).

    `credentials`: the authorization key; `scope`: GIGACHAT_API_PERS|B2B|CORP; `max_streams`:
    the requests the key may run at once (1 for individuals); users who wait for one longer
    than `queue_notice_after` seconds hear their queue position; `shared_streams`: the same
    limit held by all replicas together; `shared_token`: one OAuth token for all replicas.
    `sleep` waits between
    retries; `stream_gap` bounds the wait for a complete line of a stream.
    """
    auth = GigaChatAuth(
        http, auth_url=auth_url, credentials=credentials, scope=scope, shared=shared_token
    )
    # Not paced: GigaChat bounds concurrency (the slots), not the rate of starts.
    limiter = FairRateLimiter(0)
    # The transports redact a fixed list of secrets: the key. The token, renewed every half
    # hour, is taken out of error answers by the classifier, which sees each one first.
    secrets = (credentials.strip(),)
    classify = _redacting(classify_gigachat, auth)
    client = LLMClient(
        http,
        base_url,
        limiter=limiter,
        breaker=breaker,
        retry=retry,
        sleep=sleep,
        auth=auth,
        classify=classify,
        secrets=secrets,
        provider=_PROVIDER,
        stream_gap=stream_gap,
        skip_roles=PROGRESS_ROLES,
    )
    transport = UpstreamTransport(
        http,
        base_url,
        limiter=limiter,
        breaker=breaker,
        retry=retry,
        app_title=None,
        sleep=sleep,
        auth=auth,
        classify=classify,
        secrets=secrets,
        provider=_PROVIDER,
    )
    slots = FairSlots(max_streams, notice_after=queue_notice_after, shared=shared_streams)
    files = GigaChatFiles(transport)
    account = GigaChatAccount(transport)
    return GigaChatProvider(
        chat=GigaChatChat(client, files=files, slots=slots, account=account),
        images=GigaChatImages(transport, files=files, slots=slots),
        account=account,
        files=files,
        slots=slots,
        auth=auth,
    )
