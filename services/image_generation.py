"""/image: prompt parsing and generation, always returning picture bytes.

Results given as a URL are downloaded here, so the bot uploads the file itself
rather than relying on Telegram being able to fetch the upstream's URL.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from services.llm import UpstreamError
from services.llm.provider import ProviderRegistry
from services.storage import Storage, UsageRecord

log = logging.getLogger(__name__)

# Sizes DALL·E 3 accepts; other OpenAI-compatible image models take the same strings.
ASPECT_SIZES = {"1:1": "1024x1024", "16:9": "1792x1024", "9:16": "1024x1792"}
_ASPECT = re.compile(r"^\s*(\d{1,2}:\d{1,2})\s+", re.ASCII)
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # Telegram's photo upload limit
MAX_PROMPT = 4000


@dataclass(frozen=True, slots=True)
class ImageRequest:
    prompt: str
    aspect: str | None


class UnsupportedAspect(ValueError):
    pass


def parse_image_request(args: str | None) -> ImageRequest | None:
    """`16:9 a red fox` → aspect and prompt; None when there is no prompt."""
    text = (args or "").strip()
    aspect = None
    match = _ASPECT.match(text + " ")
    if match:
        aspect = match.group(1)
        if aspect not in ASPECT_SIZES:
            raise UnsupportedAspect(aspect)
        text = text[match.end() :].strip() if len(text) > match.end() else ""
    if not text:
        return None
    return ImageRequest(text[:MAX_PROMPT], aspect)


class ImageGenerator:
    def __init__(
        self, providers: ProviderRegistry, *, default_model: str, storage: Storage | None = None
    ) -> None:
        self._providers = providers
        self._default_model = default_model
        # Where a made picture is recorded as a usage record: it is a paid request, so it
        # shows in /usage and /stats and counts against the user's daily quota.
        self._storage = storage

    def made_as_job(self, model: str) -> bool:
        """Whether `model`'s pictures come from a task API, to be made as a resumable media
        job (services/video.py) rather than waited for here."""
        try:
            provider, _ = self._providers.resolve(model)
        except UpstreamError:
            return False
        return provider.image_jobs

    def model_for(self, chosen: str | None) -> str:
        """The user's image model; the default when none is chosen or its provider is gone."""
        if chosen and self._providers.offers(chosen, "images"):
            return chosen
        return self._default_model

    async def generate(
        self, request: ImageRequest, *, model: str | None, user_id: int, chat_id: int
    ) -> bytes:
        chosen = self.model_for(model)
        maker, own_model = self._providers.images_for(chosen)
        result = await maker.generate_image(
            request.prompt,
            model=own_model,
            size=ASPECT_SIZES.get(request.aspect or ""),
            user_key=user_id,
        )
        # Paid from here on, whether or not the picture reaches the user.
        await self._record(user_id, chat_id, chosen)
        if result.data:
            return result.data
        if result.url:
            return await maker.download(result.url, max_bytes=MAX_IMAGE_BYTES)
        raise UpstreamError(None, "the image service returned no picture")

    async def _record(self, user_id: int, chat_id: int, model: str) -> None:
        if self._storage is None:
            return
        record = UsageRecord(user_id, chat_id, model, 0, 0, None, "ok")
        try:
            await self._storage.record_usage(record)
        except Exception:
            # The picture is made and paid for: a failed write must not cost the user it.
            log.exception("could not record a picture's usage")
