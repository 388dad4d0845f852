"""What a provider can do, and the registry that finds the provider of a model id.

A provider is one upstream account: VseGPT (or any OpenAI-compatible server) as the primary
one, GigaChat, MashaGPT. Each is built once in the factory with its own HTTP client (proxy,
CA bundle), auth, rate limiter, circuit breaker and model catalog, so one provider failing or
queueing never touches the others. What it offers beyond chat is a set of optional
capabilities, each a small Protocol; the registry answers "who can do X for model Y".

Model ids: the primary provider's are bare (`openai/gpt-4o-mini`), the others' carry their
provider's name as a namespace (`gigachat:GigaChat-2-Max`). Only the registry knows that
rule: `resolve()` gives (provider, the id the provider itself uses), `qualify()` the reverse.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast, runtime_checkable

from services.llm.breaker import CircuitBreaker
from services.llm.catalog import ModelCatalog
from services.llm.errors import ModelUnavailable
from services.llm.limiter import FairRateLimiter
from services.llm.media import Balance, ImageResult, VideoStatus
from services.llm.turns import Turn
from services.llm.types import ModelInfo, StreamChunk

__all__ = [
    "BalanceSource",
    "ChatBackend",
    "Embedder",
    "ImageMaker",
    "Provider",
    "ProviderRegistry",
    "SpeechToText",
    "TextToSpeech",
    "TokenBalance",
    "UnknownProvider",
    "VideoMaker",
]

OnWait = Callable[[int], Awaitable[None]]
NAMESPACE_SEPARATOR = ":"


class UnknownProvider(ModelUnavailable):
    """A model id names a provider this bot has no key for (or no longer has)."""


@runtime_checkable
class ChatBackend(Protocol):
    """Streaming chat and the model list: what every provider has."""

    def stream_chat(
        self,
        *,
        model: str,
        turns: Sequence[Turn],
        max_tokens: int,
        temperature: float | None = None,
        user_key: Hashable = None,
        on_wait: OnWait | None = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        """StreamChunks; the last carries usage and finish_reason ("stop", "length",
        "refused" for a topic the provider declined). Raises UpstreamError subclasses."""
        ...

    async def list_models(self) -> list[ModelInfo]: ...


@runtime_checkable
class SpeechToText(Protocol):
    async def transcribe(
        self,
        audio: bytes,
        *,
        filename: str,
        model: str,
        language: str | None,
        user_key: Hashable = None,
    ) -> str: ...


@runtime_checkable
class TextToSpeech(Protocol):
    async def speech(
        self,
        text: str,
        *,
        model: str,
        voice: str,
        response_format: str = "mp3",
        user_key: Hashable = None,
    ) -> bytes: ...


@runtime_checkable
class ImageMaker(Protocol):
    async def generate_image(
        self, prompt: str, *, model: str, size: str | None = None, user_key: Hashable = None
    ) -> ImageResult: ...

    async def download(self, url: str, *, max_bytes: int) -> bytes: ...


@runtime_checkable
class VideoMaker(Protocol):
    async def start_video(
        self,
        prompt: str,
        *,
        model: str,
        aspect_ratio: str | None = None,
        image_url: str | None = None,
        user_key: Hashable = None,
    ) -> str: ...

    async def video_status(self, request_id: str) -> VideoStatus: ...

    async def download(self, url: str, *, max_bytes: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class TokenBalance:
    """Prepaid tokens left, per model (GigaChat's packages), as (model, tokens) pairs."""

    per_model: tuple[tuple[str, float], ...]


@runtime_checkable
class BalanceSource(Protocol):
    async def balance(self) -> Balance | TokenBalance:
        """Raises BalanceUnavailable when the provider offers none to this account (a 404:
        not offered; GigaChat's 403: pay-as-you-go)."""
        ...


@runtime_checkable
class Embedder(Protocol):
    async def embed(self, texts: Sequence[str], *, model: str) -> list[list[float]]: ...


@dataclass(slots=True, eq=False)
class Provider:
    """One configured upstream account and everything built for it."""

    name: str  # "openai" for the primary one, "gigachat", "mashagpt": the id namespace
    title: str  # what users see in menus: "VseGPT", "GigaChat", "MashaGPT", a host name
    chat: ChatBackend
    catalog: ModelCatalog
    breaker: CircuitBreaker
    primary: bool = False  # its model ids are bare
    stt: SpeechToText | None = None
    tts: TextToSpeech | None = None
    images: ImageMaker | None = None
    video: VideoMaker | None = None
    balance: BalanceSource | None = None
    embeddings: Embedder | None = None
    # Its pictures come from a task API (started, polled, downloaded): they are made as
    # resumable media jobs, like videos, with `video` as the task client.
    image_jobs: bool = False
    # The units its /usage is counted in, besides tokens: "credits", "energy".
    units: tuple[str, ...] = ()
    # Closed by the factory on shutdown (HTTP clients, background tasks), in order.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Its request-rate limiter with the fair queue, when it has one (queue metrics).
    limiter: FairRateLimiter | None = None

    def qualify(self, model: str) -> str:
        """The id users and storage see for this provider's own model id."""
        return model if self.primary else f"{self.name}{NAMESPACE_SEPARATOR}{model}"

    async def aclose(self) -> None:
        for close in self.closers:
            await close()


class ProviderRegistry:
    """The configured providers, in menu order (the primary one first when configured)."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        if not providers:
            raise ValueError("at least one provider is required")
        self._providers = list(providers)
        self._by_name = {p.name: p for p in self._providers}
        self._primary = next((p for p in self._providers if p.primary), None)

    @property
    def providers(self) -> list[Provider]:
        return list(self._providers)

    def get(self, name: str) -> Provider | None:
        return self._by_name.get(name)

    def resolve(self, model_id: str) -> tuple[Provider, str]:
        """(provider, the provider's own model id) for a model id as stored and shown.

        An id whose namespace is not a configured provider raises UnknownProvider. A bare
        id belongs to the primary provider; without one (a GigaChat-only bot), an id with a
        colon that names no provider is also unknown.
        """
        name, sep, rest = model_id.partition(NAMESPACE_SEPARATOR)
        if sep and rest:
            provider = self._by_name.get(name.lower())
            if provider is not None and not provider.primary:
                return provider, rest
            if provider is None and self._is_namespace(name):
                raise UnknownProvider(None, f"provider {name!r} is not configured")
        if self._primary is None:
            raise UnknownProvider(None, "no provider takes bare model ids")
        return self._primary, model_id

    def is_available(self, model_id: str) -> bool:
        try:
            self.resolve(model_id)
        except UnknownProvider:
            return False
        return True

    @staticmethod
    def _is_namespace(name: str) -> bool:
        # "gigachat:GigaChat-2" names a provider; "qwen2.5:7b" (an Ollama tag) does not.
        return name.lower() in KNOWN_NAMESPACES

    def with_capability(self, capability: str) -> list[Provider]:
        """Providers that offer `capability` ("stt", "tts", "images", "video", "balance",
        "embeddings")."""
        return [p for p in self._providers if getattr(p, capability) is not None]

    def _capable(self, model_id: str, capability: str) -> tuple[Provider, str, object]:
        provider, model = self.resolve(model_id)
        found = getattr(provider, capability)
        if found is None:
            raise ModelUnavailable(None, f"{provider.title} offers no {capability}")
        return provider, model, found

    def stt_for(self, model_id: str) -> tuple[SpeechToText, str]:
        _, model, found = self._capable(model_id, "stt")
        return cast(SpeechToText, found), model

    def tts_for(self, model_id: str) -> tuple[TextToSpeech, str]:
        _, model, found = self._capable(model_id, "tts")
        return cast(TextToSpeech, found), model

    def images_for(self, model_id: str) -> tuple[ImageMaker, str]:
        _, model, found = self._capable(model_id, "images")
        return cast(ImageMaker, found), model

    def video_for(self, model_id: str) -> tuple[VideoMaker, str]:
        _, model, found = self._capable(model_id, "video")
        return cast(VideoMaker, found), model

    def offers(self, model_id: str, capability: str) -> bool:
        """Whether `model_id`'s provider is configured and has `capability`."""
        try:
            self._capable(model_id, capability)
        except ModelUnavailable:
            return False
        return True

    async def context_length(self, model_id: str, default: int) -> int:
        provider, model = self.resolve(model_id)
        return await provider.catalog.context_length(model, default)

    async def aclose(self) -> None:
        for provider in self._providers:
            await provider.aclose()


# Namespaces this bot knows how to build; a stored id in one of them whose provider is not
# configured now is "gone", not a bare id of the primary provider.
KNOWN_NAMESPACES = frozenset({"gigachat", "mashagpt"})
