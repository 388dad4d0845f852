"""The end-to-end fakes with the timestamps the benchmarks need.

All servers run in the driver process, so every timestamp here comes from the same
`time.monotonic()` clock. Each question carries a key ("q<user>x<n>") that the fake upstream
echoes at the start of its answer, so an update, its upstream request, its drafts and its
final message can be matched without relying on ordering.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from tests.fakes.gigachat_server import CHAT_PATH as GIGACHAT_CHAT_PATH
from tests.fakes.gigachat_server import FakeGigaChat, GigaChatRequest
from tests.fakes.telegram_server import Call, FakeTelegram
from tests.fakes.upstream_server import FakeUpstream, UpstreamRequest

KEY_RE = re.compile(r"q\d+x\d+")
FINAL_METHODS = frozenset({"sendRichMessage", "sendMessage"})
DRAFT_METHODS = frozenset({"sendRichMessageDraft", "sendMessageDraft"})

# A short, typical chat answer (about 420 characters) with a little Markdown in it.
ANSWER_BODY = (
    "Here is a short answer with **some emphasis** and a list:\n\n"
    "- the first point, explained in a sentence or two;\n"
    "- the second point, with `inline code` in it;\n"
    "- the third point, which is the last one.\n\n"
    "A closing paragraph wraps the answer up in a few more words, so that the whole "
    "answer is about as long as a typical short reply in a chat with a bot."
)


def key_of(text: str) -> str | None:
    match = KEY_RE.search(text)
    return match.group() if match else None


def question(user: int, n: int) -> tuple[str, str]:
    """(key, text) of the n-th question of a user."""
    key = f"q{user}x{n}"
    return key, f"{key} please tell me something"


def _text_of_call(call: Call) -> str:
    rich = call.params.get("rich_message")
    if isinstance(rich, dict):
        return str(rich.get("markdown") or rich.get("html") or "")
    return str(call.params.get("text", ""))


def _last_user_text(payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    for message in reversed(payload.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def answer_for(payload: dict[str, Any]) -> str:
    key = key_of(_last_user_text(payload)) or "q0x0"
    return f"[{key}] {ANSWER_BODY}"


class _CallLog(list[Call]):
    """The fake's call list, telling its owner about every call as it is recorded."""

    def __init__(self, owner: TimedTelegram) -> None:
        super().__init__()
        self._owner = owner

    def append(self, call: Call) -> None:
        super().append(call)
        self._owner._seen(call)


class TimedTelegram(FakeTelegram):
    """FakeTelegram that notes when each update left getUpdates and when each question's
    first draft and final message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self._init_timing()

    def _init_timing(self) -> None:
        self.calls = _CallLog(self)
        self.update_returned: dict[int, float] = {}
        self.first_draft: dict[str, float] = {}
        self.finals: dict[str, float] = {}
        self.final_texts: dict[str, str] = {}
        self.drafts = 0
        self.polls_started = 0
        self._poll_event = asyncio.Event()
        self._final_target = 0
        self._final_event = asyncio.Event()

    def reset(self) -> None:
        super().reset()
        self._init_timing()

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        # A long poll is only recorded as a Call when it returns (up to 30 s later); its
        # arrival is what tells that a bot is up.
        self.polls_started += 1
        self._poll_event.set()
        result = await super()._get_updates(params)
        now = time.monotonic()
        for update in result:
            # An update is returned again until confirmed; the first time is what counts.
            self.update_returned.setdefault(update["update_id"], now)
        return result

    def _seen(self, call: Call) -> None:
        method = call.method
        if method in DRAFT_METHODS:
            self.drafts += 1
            key = key_of(_text_of_call(call))
            if key is not None and key not in self.first_draft:
                self.first_draft[key] = call.at
            return
        final = (method in FINAL_METHODS) or (
            method == "editMessageText" and call.params.get("rich_message") is not None
        )
        if not final or not call.ok:
            return
        text = _text_of_call(call)
        key = key_of(text)
        if key is None or key in self.finals:
            return
        self.finals[key] = call.at
        self.final_texts[key] = text
        if self._final_target and len(self.finals) >= self._final_target:
            self._final_event.set()

    async def wait_poll(self, after: int, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until more than `after` getUpdates requests have arrived."""
        async with asyncio.timeout(timeout):
            while self.polls_started <= after:
                self._poll_event.clear()
                await self._poll_event.wait()

    async def wait_finals(self, count: int, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until `count` questions have their final message; False on timeout."""
        if len(self.finals) >= count:
            return True
        self._final_target = count
        self._final_event = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._final_event.wait()
        except TimeoutError:
            return False
        finally:
            self._final_target = 0
        return True

    def bot_calls(self, since: float, until: float) -> dict[str, int]:
        """Calls the bot made in [since, until], by method (long polling excluded)."""
        counts: dict[str, int] = {}
        for call in self.calls:
            if since <= call.at <= until and call.method != "getUpdates":
                counts[call.method] = counts.get(call.method, 0) + 1
        return counts


class _ChunkTimes:
    """Notes when a request's first and last content chunks were written.

    The fakes assign `chunks_sent` after each chunk they write; a property (a data descriptor,
    which wins over the instance dict) turns those assignments into timestamps without
    copying the fakes' streaming code. Mixed in ahead of a fake's request record.
    """

    @property
    def chunks_sent(self) -> int:
        return int(self.__dict__.get("_chunks", 0))

    @chunks_sent.setter
    def chunks_sent(self, value: int) -> None:
        now = time.monotonic()
        self.__dict__["_chunks"] = value
        if value == 1:
            self.__dict__["first_chunk_at"] = now
        if value:
            self.__dict__["last_chunk_at"] = now

    @property
    def first_chunk_at(self) -> float | None:
        return self.__dict__.get("first_chunk_at")

    @property
    def last_chunk_at(self) -> float | None:
        return self.__dict__.get("last_chunk_at")


class TimedRequest(_ChunkTimes, UpstreamRequest):
    """An upstream request with the times of its first and last content chunks."""


class TimedGigaChatRequest(_ChunkTimes, GigaChatRequest):
    """A GigaChat request with the times of its first and last content chunks."""


class TimedUpstream(FakeUpstream):
    """FakeUpstream answering "[key] <a short Markdown answer>" and indexing chat requests
    by key."""

    def __init__(self) -> None:
        super().__init__(api_key="bench-key")

    def reset(self) -> None:
        super().reset()
        self.by_key: dict[str, list[TimedRequest]] = {}
        self.reply = answer_for
        self.chunks = 20

    def _record(self, rec: UpstreamRequest) -> None:
        rec.__class__ = TimedRequest
        if rec.path == "/v1/chat/completions":
            key = key_of(_last_user_text(rec.json))
            if key is not None:
                self.by_key.setdefault(key, []).append(rec)  # type: ignore[arg-type]
        super()._record(rec)


class TimedGigaChat(FakeGigaChat):
    """FakeGigaChat answering as TimedUpstream does ("[key] <the short Markdown answer>" in
    20 chunks) and indexing chat requests by key.

    It never queues nor refuses for concurrency (the real service allows one stream per key
    for individuals, ten for companies: the bot's own slots are what is measured, not the
    fake's limit), and its tokens outlive any run, so a token refresh in the middle of a
    measurement cannot make one run cost more than another.
    """

    def __init__(self) -> None:
        super().__init__(max_streams=100_000)

    def reset(self) -> None:
        super().reset()
        self.by_key: dict[str, list[TimedGigaChatRequest]] = {}
        self.reply = answer_for
        self.chunks = 20
        self.token_lifetime = 24 * 3600.0

    def _record(self, rec: GigaChatRequest) -> None:
        rec.__class__ = TimedGigaChatRequest
        if rec.path == GIGACHAT_CHAT_PATH:
            key = key_of(_last_user_text(rec.json))
            if key is not None:
                self.by_key.setdefault(key, []).append(rec)  # type: ignore[arg-type]
        super()._record(rec)
