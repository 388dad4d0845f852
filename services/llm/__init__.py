"""OpenAI-compatible upstream client: streaming, retries, fair rate limiting, circuit breaker."""

from __future__ import annotations

from services.llm.breaker import CircuitBreaker
from services.llm.catalog import ModelCatalog
from services.llm.client import LLMClient
from services.llm.errors import (
    AuthFailed,
    BadRequest,
    CircuitOpen,
    ContextTooLong,
    InsufficientFunds,
    MaxTokensTooLarge,
    ModelUnavailable,
    ModerationRefused,
    RateLimited,
    RequestCostLimit,
    ServiceUnavailable,
    StreamInterrupted,
    UpstreamError,
    classify_error,
)
from services.llm.limiter import FairRateLimiter
from services.llm.retry import RetryPolicy, parse_retry_after, retry_delay, should_retry
from services.llm.sse import iter_sse_data
from services.llm.types import ModelInfo, StreamChunk, Usage

__all__ = [
    "AuthFailed",
    "BadRequest",
    "CircuitBreaker",
    "CircuitOpen",
    "ContextTooLong",
    "FairRateLimiter",
    "InsufficientFunds",
    "LLMClient",
    "MaxTokensTooLarge",
    "ModelCatalog",
    "ModelInfo",
    "ModelUnavailable",
    "ModerationRefused",
    "RateLimited",
    "RequestCostLimit",
    "RetryPolicy",
    "ServiceUnavailable",
    "StreamChunk",
    "StreamInterrupted",
    "UpstreamError",
    "Usage",
    "classify_error",
    "iter_sse_data",
    "parse_retry_after",
    "retry_delay",
    "should_retry",
]
