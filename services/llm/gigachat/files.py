"""GigaChat's file storage: pictures go up before a chat can see them, drawings come down.

GigaChat takes no inline images: each is uploaded (`POST /files`) and the chat message names
it by id. A conversation re-sends its pictures with every follow-up question, so the ids of
recent uploads are remembered by the picture's hash and a picture already stored is not sent
again. The memory is bounded (least recently used ids go first) and lives as long as the
process; the files themselves stay in the account's storage.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any
from urllib.parse import quote

import httpx

from services.llm.errors import BadRequest, UpstreamError
from services.llm.retry import should_retry
from services.llm.transport import Classifier, Failure, UpstreamTransport

__all__ = ["MAX_DOWNLOAD_BYTES", "GigaChatFiles", "file_path"]

# A drawing is a JPEG of a few hundred KB; uploads are capped at 15 MB by GigaChat itself.
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# GigaChat's file ids are UUIDs: a longer "id" (from a model's reply) is none.
_MAX_ID_LENGTH = 200


def _download_classifier(classify: Classifier) -> Classifier:
    """`classify` (the provider's) for downloads: a file that answers 404 is gone, not "no
    such model". Retryable statuses keep their classes (the transport retries them), and a
    401 stays an auth failure."""

    def classify_download(status: int, body: str) -> UpstreamError:
        if should_retry(status) or status == 401:
            return classify(status, body)
        return BadRequest(status, "file download failed")

    return classify_download


def file_path(file_id: str) -> str:
    """The API path of a stored file's content; the id is quoted (it may come from a model's
    reply)."""
    if not file_id or len(file_id) > _MAX_ID_LENGTH:
        raise BadRequest(None, "not a GigaChat file id")
    return f"files/{quote(file_id, safe='')}/content"


class GigaChatFiles:
    def __init__(self, transport: UpstreamTransport, *, cache_size: int = 256) -> None:
        """`transport` is the provider's (its auth, breaker and retries); `cache_size` ids of
        uploaded pictures are remembered."""
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._t = transport
        self._classify_download = _download_classifier(transport.classify)
        self._cache_size = cache_size
        self._ids: OrderedDict[bytes, str] = OrderedDict()  # sha256 of the picture -> file id

    def __repr__(self) -> str:
        return f"GigaChatFiles(cached={len(self._ids)})"

    async def upload_image(self, image: bytes, *, user_key: Hashable = None) -> str:
        """The file id of `image` (JPEG or PNG bytes): remembered, or uploaded now."""
        digest = hashlib.sha256(image).digest()
        known = self._ids.get(digest)
        if known is not None:
            self._ids.move_to_end(digest)
            return known
        file_id = await self._upload(image, user_key)
        if self._cache_size:
            self._ids[digest] = file_id
            while len(self._ids) > self._cache_size:
                self._ids.popitem(last=False)
        return file_id

    async def _upload(self, image: bytes, user_key: Hashable) -> str:
        t = self._t
        if image.startswith(_PNG_SIGNATURE):
            name, mime = "image.png", "image/png"
        else:
            name, mime = "image.jpg", "image/jpeg"

        def parse(response: httpx.Response, body: bytes) -> str | Failure:
            data: Any = t.json_or_failure(body, "upload answer", response.status_code)
            if isinstance(data, Failure):
                return data
            file_id = data.get("id") if isinstance(data, dict) else None
            if not isinstance(file_id, str) or not file_id.strip():
                return t.malformed("upload answer without an id", response.status_code)
            return file_id.strip()

        # Paced: an upload is the start of a chat, and held back with it when the breaker
        # is open.
        return await t.request(
            "POST",
            t.url("files"),
            parse,
            paced=True,
            user_key=user_key,
            files={"file": (name, image, mime)},
            data={"purpose": "general"},
        )

    async def download(self, file_id: str, *, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
        """A stored file's bytes (`GET /files/{id}/content`); ResponseTooLarge above
        `max_bytes`."""
        t = self._t

        def parse(response: httpx.Response, body: bytes) -> bytes | Failure:
            if not body:
                return t.malformed("empty file", response.status_code)
            return body

        return await t.request(
            "GET",
            t.url(file_path(file_id)),
            parse,
            # GigaChat's own clients ask for the picture this way.
            headers={**t.headers, "Accept": "application/jpg"},
            max_bytes=max_bytes,
            classify=self._classify_download,
        )
