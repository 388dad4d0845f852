"""GigaChat's account endpoints: the model list, the token balance and embeddings.

The list and the balance are free and cheap: retried on 5xx and network errors, but neither
paced nor held back by the breaker. Embeddings cost tokens and are paced like a chat start.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from typing import Any

import httpx

from services.llm.errors import (
    AuthFailed,
    BalanceUnavailable,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
)
from services.llm.provider import TokenBalance
from services.llm.transport import Classifier, Failure, UpstreamTransport
from services.llm.types import ModelInfo, parse_model_info, to_float

__all__ = ["DEFAULT_EMBEDDINGS_MODEL", "GigaChatAccount"]

DEFAULT_EMBEDDINGS_MODEL = "Embeddings"


def _balance_classifier(classify: Classifier) -> Classifier:
    """`classify` (the provider's) for the balance: only a bad key and upstream trouble keep
    their classes; anything else means "no balance to show"."""

    def classify_balance(status: int, body: str) -> UpstreamError:
        if status == 403:
            # GigaChat keeps no balance for accounts billed after use.
            return BalanceUnavailable(
                status, "the account is pay-as-you-go: it has no token balance"
            )
        error = classify(status, body)
        if isinstance(error, AuthFailed | RateLimited | ServiceUnavailable):
            return error
        return BalanceUnavailable(status, error.detail)

    return classify_balance


class GigaChatAccount:
    def __init__(self, transport: UpstreamTransport) -> None:
        """`transport` is the provider's: its auth, classifier, breaker and retries."""
        self._t = transport
        self._classify_balance = _balance_classifier(transport.classify)

    def __repr__(self) -> str:
        return f"GigaChatAccount(base_url={self._t.base_url!r})"

    async def list_models(self) -> list[ModelInfo]:
        """GET /models: every model, its `kind` from GigaChat's `type` (chat, embedding, and
        GigaChat's own words such as "aicheck"); no context lengths (the list gives none)."""
        t = self._t

        def parse(response: httpx.Response, body: bytes) -> list[ModelInfo] | Failure:
            data: Any = t.json_or_failure(body, "models list", response.status_code)
            if isinstance(data, Failure):
                return data
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list):
                return t.malformed("malformed models list: no data array", response.status_code)
            return [info for item in items if (info := parse_model_info(item)) is not None]

        return await t.request("GET", t.url("models"), parse)

    async def balance(self) -> TokenBalance:
        """GET /balance: the prepaid tokens left per model. BalanceUnavailable on a
        pay-as-you-go account (GigaChat answers 403 there)."""
        t = self._t

        def parse(response: httpx.Response, body: bytes) -> TokenBalance | Failure:
            data: Any = t.json_or_failure(body, "balance", response.status_code)
            if isinstance(data, Failure):
                return data
            items = data.get("balance") if isinstance(data, dict) else None
            if not isinstance(items, list):
                return t.malformed("malformed balance: no balance array", response.status_code)
            pairs: list[tuple[str, float]] = []
            for item in items:
                if not isinstance(item, dict):
                    continue
                usage, value = item.get("usage"), to_float(item.get("value"))
                if isinstance(usage, str) and usage.strip() and value is not None:
                    pairs.append((usage.strip(), value))
            return TokenBalance(per_model=tuple(pairs))

        return await t.request("GET", t.url("balance"), parse, classify=self._classify_balance)

    async def embed(
        self,
        texts: Sequence[str],
        *,
        model: str = DEFAULT_EMBEDDINGS_MODEL,
        user_key: Hashable = None,
    ) -> list[list[float]]:
        """POST /embeddings: one vector per text, in the order of `texts`."""
        if not texts:
            return []
        t = self._t
        expected = len(texts)

        def parse(response: httpx.Response, body: bytes) -> list[list[float]] | Failure:
            data: Any = t.json_or_failure(body, "embeddings", response.status_code)
            if isinstance(data, Failure):
                return data
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list) or len(items) != expected:
                return t.malformed(
                    f"embeddings answer without {expected} vectors", response.status_code
                )
            vectors: list[list[float] | None] = [None] * expected
            for position, item in enumerate(items):
                vector = _vector(item.get("embedding")) if isinstance(item, dict) else None
                index = item.get("index", position) if isinstance(item, dict) else position
                if vector is None or not isinstance(index, int) or not 0 <= index < expected:
                    return t.malformed("malformed embeddings answer", response.status_code)
                vectors[index] = vector
            if any(vector is None for vector in vectors):
                return t.malformed("embeddings answer with a repeated index", response.status_code)
            return [vector for vector in vectors if vector is not None]

        return await t.request(
            "POST",
            t.url("embeddings"),
            parse,
            paced=True,
            user_key=user_key,
            model=model,
            headers=t.json_headers,
            content=json.dumps({"model": model, "input": list(texts)}, ensure_ascii=False).encode(),
        )


def _vector(value: Any) -> list[float] | None:
    if not isinstance(value, list) or not value:
        return None
    vector: list[float] = []
    for number in value:
        if isinstance(number, bool) or not isinstance(number, int | float):
            return None
        vector.append(float(number))
    return vector
