"""OpenAI-compatible upstream client: streaming chat, media endpoints, retries, fair rate
limiting, circuit breaker."""

from __future__ import annotations

from services.llm.breaker import CircuitBreaker
from services.llm.catalog import ModelCatalog
from services.llm.client import LLMClient
from services.llm.errors import (
    AuthFailed,
    BadRequest,
    BalanceUnavailable,
    CircuitOpen,
    ContextTooLong,
    InsufficientFunds,
    MaxTokensTooLarge,
    ModelUnavailable,
    ModerationRefused,
    NotOffered,
    RateLimited,
    RequestCostLimit,
    ResponseTooLarge,
    ServiceUnavailable,
    StreamInterrupted,
    UpstreamError,
    classify_error,
)
from services.llm.limiter import FairRateLimiter
from services.llm.media import Balance, ImageResult, MediaClient, VideoState, VideoStatus
from services.llm.retry import RetryPolicy, parse_retry_after, retry_delay, should_retry
from services.llm.sse import iter_sse_data
from services.llm.types import ModelInfo, StreamChunk, Usage

__all__ = [
    "AuthFailed",
    "BadRequest",
    "Balance",
    "BalanceUnavailable",
    "CircuitBreaker",
    "CircuitOpen",
    "ContextTooLong",
    "FairRateLimiter",
    "ImageResult",
    "InsufficientFunds",
    "LLMClient",
    "MaxTokensTooLarge",
    "MediaClient",
    "ModelCatalog",
    "ModelInfo",
    "ModelUnavailable",
    "ModerationRefused",
    "NotOffered",
    "RateLimited",
    "RequestCostLimit",
    "ResponseTooLarge",
    "RetryPolicy",
    "ServiceUnavailable",
    "StreamChunk",
    "StreamInterrupted",
    "UpstreamError",
    "Usage",
    "VideoState",
    "VideoStatus",
    "classify_error",
    "iter_sse_data",
    "parse_retry_after",
    "retry_delay",
    "should_retry",
]
