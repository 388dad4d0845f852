"""GigaChat as an `ImageMaker`: drawing is a built-in function of its chat.

With `function_call: "auto"` and a request to draw, GigaChat calls its text-to-image function
and answers with `<img src="<file id>" fuse="true"/>` in the message; the picture is then
downloaded from the file storage. The chat call is paid and counts against the key's
concurrent requests, so it holds a slot of the provider's `FairSlots` like a chat stream; the
download after it is free and does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from typing import Any

import httpx

from services.llm.errors import BadRequest, ModerationRefused
from services.llm.gigachat.files import MAX_DOWNLOAD_BYTES, GigaChatFiles
from services.llm.media import ImageResult
from services.llm.slots import FairSlots
from services.llm.transport import Failure, UpstreamTransport

__all__ = ["GigaChatImages", "image_file_id"]

# The instruction that makes GigaChat draw rather than describe (its users speak Russian).
_ARTIST = "Ты — художник. Нарисуй картинку по описанию пользователя."
_IMG_SRC = re.compile(r"""<img\b[^>]*?\bsrc\s*=\s*["']([^"'<>\s]{1,200})["']""", re.IGNORECASE)


def image_file_id(content: str) -> str | None:
    """The file id in the first `<img src="...">` of an answer, if it has one."""
    match = _IMG_SRC.search(content)
    return match.group(1) if match else None


class GigaChatImages:
    def __init__(
        self, transport: UpstreamTransport, *, files: GigaChatFiles, slots: FairSlots
    ) -> None:
        self._t = transport
        self._files = files
        self._slots = slots

    def __repr__(self) -> str:
        return f"GigaChatImages(base_url={self._t.base_url!r})"

    async def generate_image(
        self, prompt: str, *, model: str, size: str | None = None, user_key: Hashable = None
    ) -> ImageResult:
        """The drawing's bytes (`ImageResult.url` is None). GigaChat chooses the size itself:
        `size` is not sent. BadRequest when the model answered without drawing;
        ModerationRefused when it refused the topic."""
        async with self._slots.hold(user_key):
            file_id = await self._draw(prompt, model, user_key)
        data = await self._files.download(file_id, max_bytes=MAX_DOWNLOAD_BYTES)
        return ImageResult(url=None, data=data)

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """The stored file `url` names: GigaChat's results are file ids, not links."""
        return await self._files.download(url, max_bytes=max_bytes)

    async def _draw(self, prompt: str, model: str, user_key: Hashable) -> str:
        t = self._t
        payload = {
            "model": model,
            "messages": [
                {"role": "system", "content": _ARTIST},
                # The model calls its text2image function when asked to draw: the request
                # says so itself, whatever language the prompt is in.
                {"role": "user", "content": f"Нарисуй: {prompt}"},
            ],
            "function_call": "auto",
        }

        def parse(response: httpx.Response, body: bytes) -> str | Failure:
            data: Any = t.json_or_failure(body, "drawing answer", response.status_code)
            if isinstance(data, Failure):
                return data
            choices = data.get("choices") if isinstance(data, dict) else None
            choice = choices[0] if isinstance(choices, list) and choices else None
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(choice, dict) or not isinstance(message, dict):
                return t.malformed("drawing answer without a message", response.status_code)
            status = response.status_code
            if choice.get("finish_reason") == "blacklist":
                return Failure(ModerationRefused(status, "the topic is refused"), retryable=False)
            content = message.get("content")
            file_id = image_file_id(content) if isinstance(content, str) else None
            if file_id is None:
                # The model talked instead of drawing (its words are not kept: they may quote
                # the prompt).
                return Failure(BadRequest(status, "the model drew nothing"), retryable=False)
            return file_id

        return await t.request(
            "POST",
            t.url("chat/completions"),
            parse,
            paced=True,
            user_key=user_key,
            model=model,
            headers=t.json_headers,
            content=json.dumps(payload, ensure_ascii=False).encode(),
        )
