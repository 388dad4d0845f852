"""Text chat: one `Reply` per question, owning its upstream stream, stop and history.

The Telegram side only watches a reply and draws it. Everything that decides what
the user gets (which model, which history, what happens on Stop or on a broken
stream, what is stored) lives here, so it is testable without Telegram.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from services.conversation import (
    PARTLY_DELIVERED,
    UNDELIVERED,
    ConversationService,
    PreparedRequest,
)
from services.image_memory import ImageMemory, RememberedImages
from services.llm import (
    CircuitOpen,
    ContextTooLong,
    StreamInterrupted,
    UpstreamError,
    Usage,
)
from services.llm.errors import rejects_temperature
from services.llm.provider import ProviderRegistry
from services.storage import Storage, UsageRecord, UserRecord
from services.tokens import estimate_tokens
from services.users import UserService

log = logging.getLogger(__name__)

# Draft ids are sent to Telegram as integers; keep them positive and within int32.
_MAX_ID = 2**31 - 1
# When the upstream says the context is too long despite the estimate, the request
# is sent again with half, then a quarter, of the history it carried the first time.
HISTORY_SHARES = (1.0, 0.5, 0.25)  # the first entry is the full estimate-based history


class ReplyStatus(enum.StrEnum):
    COMPLETE = "complete"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"  # the stream broke after text was shown
    FAILED = "failed"  # nothing usable came back
    # Put off by a shutdown before the upstream answered: nothing is shown or stored; the
    # question is answered after the restart (the update journal keeps it).
    DEFERRED = "deferred"
    # The provider declined the topic (GigaChat's `blacklist`): the user gets a short polite
    # refusal, and neither the question nor the provider's canned text enters history (the
    # model must not see its refusal as its own answer next time).
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class ChatInput:
    chat_id: int
    thread_id: int | None
    user_id: int
    text: str
    # In groups several people share one history; their names tell the model who said what.
    speaker: str | None = None
    images: tuple[bytes, ...] = ()  # JPEG bytes: the question goes to a vision model
    stored_text: str | None = None  # what history keeps instead of `text` (image placeholder)


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    status: ReplyStatus
    text: str
    model: str
    error: UpstreamError | None = None
    # The answer hit max_tokens (finish_reason "length"): the user is told it was cut.
    truncated: bool = False
    # The model refused the user's temperature; the answer came without it.
    temperature_dropped: bool = False


class DeliveryResult(enum.Enum):
    """What reached the user of a reply's final message(s), as the Telegram side saw it."""

    FULL = "full"
    PARTIAL = "partial"  # some parts were lost; the user was told
    NONE = "none"  # nothing of the answer arrived


class StopResult(enum.Enum):
    STOPPED = "stopped"
    NOT_FOUND = "not_found"
    NOT_ALLOWED = "not_allowed"


class StopForwarder(Protocol):
    """Replicas: hands a Stop to the other processes (services/shared/stop.py)."""

    def send(self, chat_id: int, reply_id: int, user_id: int | None, force: bool) -> None: ...


class Reply:
    """A running answer. `watch()` paces redraws; `wait()` gives the outcome."""

    def __init__(self, reply_id: int, request: ChatInput, model: str) -> None:
        self.id = reply_id
        self.request = request
        self.model = model
        self.queue_position: int | None = None
        self.started_at = time.monotonic()
        # When this chat's earlier answers were done and this one began (monotonic clock).
        self.working_since: float | None = None
        self._working = asyncio.Event()
        self.first_token_at: float | None = None
        self._parts: list[str] = []
        self._joined = ""
        self._joined_parts = 0
        self._version = 0
        self._changed = asyncio.Event()
        self._finished = asyncio.Event()
        self._outcome: ReplyOutcome | None = None
        self._stop_requested = False
        self._deferred = False
        # Set when the upstream's first response arrives: from then on a shutdown lets the
        # answer finish (or stops it with its partial text) instead of putting it off.
        self._upstream_started = False
        # Set once the stream has ended: from then on the answer is complete and a
        # late Stop must not cancel the task while it stores the answer.
        self._finalizing = False
        self._task: asyncio.Task[None] | None = None
        # The conversation the answer was stored in, once it is (see record_delivery).
        self._stored_in: int | None = None
        # The user's chosen model, when its provider is no longer configured and the
        # default answered instead (the user gets a short note).
        self.replaced_model: str | None = None
        self._truncated = False
        self._temperature_dropped = False

    # --- read side -------------------------------------------------------------
    @property
    def text(self) -> str:
        if self._joined_parts != len(self._parts):
            self._joined = "".join(self._parts)
            self._parts = [self._joined]
            self._joined_parts = 1
        return self._joined

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    async def watch(self, interval: float) -> AsyncIterator[None]:
        """Yield whenever there is something new to draw, at most once per `interval`.

        Ends when the reply is finished; the caller then draws the outcome.
        """
        loop = asyncio.get_running_loop()
        # Version 0 is the empty reply: nothing to draw. Yielding for it would spend the
        # first interval on nothing and hold the first draft back by up to `interval`.
        seen = 0
        last_emit = float("-inf")
        while not self.done:
            if self._version == seen:
                self._changed.clear()
                if self._version == seen and not self.done:
                    await self._changed.wait()
                continue
            delay = last_emit + interval - loop.time()
            if delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await self._finished.wait()
                except TimeoutError:
                    pass
                if self.done:
                    break
            seen = self._version
            last_emit = loop.time()
            yield

    async def wait(self) -> ReplyOutcome:
        await self._finished.wait()
        assert self._outcome is not None
        return self._outcome

    async def wait_working(self) -> float:
        """When this chat's earlier answers were done and this one began (monotonic clock);
        waits for that moment if it has not come yet."""
        await self._working.wait()
        assert self.working_since is not None
        return self.working_since

    # --- write side (the service) ----------------------------------------------
    def _start_work(self) -> None:
        self.working_since = time.monotonic()
        self._working.set()

    def _append(self, text: str) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self._parts.append(text)
        self._touch()

    def _touch(self) -> None:
        self._version += 1
        self._changed.set()

    async def _on_wait(self, position: int) -> None:
        self.queue_position = position
        self._touch()

    def stop(self) -> None:
        if self.done or self._stop_requested or self._finalizing or self._deferred:
            return
        self._stop_requested = True
        if self._task is not None:
            # Cancelling the task closes the HTTP stream at once: the upstream sees
            # the disconnect and stops billing for tokens nobody will read.
            self._task.cancel()

    def _defer(self) -> bool:
        """Cancel a reply the upstream has not answered yet, silently; False if too late."""
        if self.done or self._stop_requested or self._finalizing or self._upstream_started:
            return False
        self._deferred = True
        if self._task is not None:
            self._task.cancel()
        return True

    def _finish(self, outcome: ReplyOutcome) -> None:
        if self._outcome is not None:
            return  # published already (a complete answer is, before it is stored)
        self._outcome = outcome
        self._finished.set()
        self._changed.set()


class ChatService:
    def __init__(
        self,
        *,
        providers: ProviderRegistry,
        conversations: ConversationService,
        storage: Storage,
        default_model: str,
        default_system_prompt: str,
        default_vision_model: str,
        images: ImageMemory | None = None,
        users: UserService | None = None,
        stop_forwarder: StopForwarder | None = None,
    ) -> None:
        self._providers = providers
        # With replicas, a Stop for a reply streamed elsewhere is forwarded to its replica.
        self._stop_forwarder = stop_forwarder
        self._users = users
        # Models that rejected a temperature: later requests leave it out from the start.
        self._no_temperature: set[str] = set()
        self._default_vision = default_vision_model
        self._images = images or ImageMemory()
        self._conversations = conversations
        self._storage = storage
        self._default_model = default_model
        self._default_prompt = default_system_prompt
        self._replies: dict[int, Reply] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # One answer at a time per conversation, so each question sees the previous
        # answer in its history. Entries exist only while someone holds or waits.
        self._chat_locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}
        self._next_id = random.randint(1, _MAX_ID // 2)
        self._closed = False
        self._closing = False  # shutdown began: nothing new starts
        # Told once about every answer that ended (the bot's metrics); must be cheap.
        self._listeners: list[Callable[[Reply, ReplyOutcome], None]] = []

    def add_listener(self, listener: Callable[[Reply, ReplyOutcome], None]) -> None:
        """Call `listener(reply, outcome)` once when each answer ends (not one put off at
        start-up of a shutdown). A failing listener is logged, never the answer's problem."""
        self._listeners.append(listener)

    def model_for(self, user: UserRecord) -> str:
        """The user's chat model; the default when none is chosen or its provider is gone."""
        chosen = user.model
        if chosen and self._providers.is_available(chosen):
            return chosen
        return self._default_model

    def vision_model_for(self, user: UserRecord) -> str:
        chosen = user.vision_model
        if chosen and self._providers.is_available(chosen):
            return chosen
        return self._default_vision

    def _replaced(self, user: UserRecord, model: str) -> str | None:
        """The user's stored choice when `model` stands in for it (its provider is gone)."""
        for chosen in (user.model, user.vision_model):
            if chosen and chosen != model and not self._providers.is_available(chosen):
                return chosen
        return None

    async def _forget_gone_choice(self, user: UserRecord) -> None:
        """Clear a stored model whose provider is gone, so the note is shown once."""
        if self._users is None:
            return
        try:
            if user.model and not self._providers.is_available(user.model):
                await self._users.set_model(user.user_id, None)
            if user.vision_model and not self._providers.is_available(user.vision_model):
                await self._users.set_media_choice(user.user_id, "vision_model", None)
        except Exception:
            log.exception("could not clear a gone model choice of user %s", user.user_id)

    def _new_id(self) -> int:
        self._next_id = self._next_id % _MAX_ID + 1
        while self._next_id in self._replies:
            self._next_id = self._next_id % _MAX_ID + 1
        return self._next_id

    def start(self, request: ChatInput, user: UserRecord) -> Reply:
        """Start answering. Images, or a follow-up to recent images, go to the vision model."""
        reattach: RememberedImages | None = None
        if request.images:
            model = self.vision_model_for(user)
        else:
            reattach = self._images.recent((request.chat_id, request.thread_id))
            model = self.vision_model_for(user) if reattach else self.model_for(user)
        reply = Reply(self._new_id(), request, model)
        reply.replaced_model = self._replaced(user, model)
        if self._closing or self._closed:
            # Shutting down: nothing new starts (storage may already be gone); the question
            # is put off until the restart rather than refused.
            reply._finish(ReplyOutcome(ReplyStatus.DEFERRED, "", reply.model))
            return reply
        self._replies[reply.id] = reply
        task = asyncio.create_task(self._run(reply, user, reattach), name=f"reply-{reply.id}")
        reply._task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return reply

    def get(self, reply_id: int) -> Reply | None:
        return self._replies.get(reply_id)

    def stop(
        self, chat_id: int, reply_id: int, *, user_id: int | None = None, force: bool = False
    ) -> StopResult:
        """Stop a reply in `chat_id`. With `user_id`, only its author may (or `force`).

        With replicas, a reply this process does not stream is forwarded to the others: the
        replica streaming it checks the permission and stops it. Forwarded, the answer is
        STOPPED (the presser sees "Stopping…"; a stale button is no longer told apart).
        """
        reply = self._replies.get(reply_id)
        if (reply is None or reply.request.chat_id != chat_id) and (
            self._stop_forwarder is not None
        ):
            self._stop_forwarder.send(chat_id, reply_id, user_id, force)
            return StopResult.STOPPED
        return self.stop_forwarded(chat_id, reply_id, user_id, force)

    def stop_forwarded(
        self, chat_id: int, reply_id: int, user_id: int | None, force: bool
    ) -> StopResult:
        """A Stop forwarded by a replica (or this one): stop the reply if it streams here."""
        reply = self._replies.get(reply_id)
        if reply is None or reply.request.chat_id != chat_id:
            return StopResult.NOT_FOUND
        if user_id is not None and not force and reply.request.user_id != user_id:
            return StopResult.NOT_ALLOWED
        reply.stop()
        return StopResult.STOPPED

    async def new_conversation(self, chat_id: int, thread_id: int | None) -> None:
        await self._conversations.start_new(chat_id, thread_id)
        self._images.forget((chat_id, thread_id))

    @property
    def active(self) -> int:
        return len(self._replies)

    def begin_shutdown(self) -> int:
        """First step of a graceful shutdown: start nothing new, and put off every reply the
        upstream has not answered yet (waiting for this chat's earlier answer, for the rate
        limiter, for a retry, or for the upstream's first response). They end DEFERRED at
        once, with nothing shown or stored, and are answered after the restart. Replies
        already streaming go on; `close()` stops them after the grace period.

        A request already sent but not yet answered is put off too: after the restart it is
        sent again, a rare second prompt in exchange for never cutting an answer that has
        not begun. Returns how many were put off.
        """
        self._closing = True
        return sum(reply._defer() for reply in list(self._replies.values()))

    async def close(self) -> None:
        """Stop everything still running (shutdown): partial answers are stored."""
        self._closing = True
        self._closed = True
        for reply in list(self._replies.values()):
            reply.stop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- the work ---------------------------------------------------------------
    async def _run(self, reply: Reply, user: UserRecord, reattach: RememberedImages | None) -> None:
        request = reply.request
        key = (request.chat_id, request.thread_id)
        status = ReplyStatus.FAILED
        error: UpstreamError | None = None
        usage: Usage | None = None
        prepared: PreparedRequest | None = None
        try:
            if reply.replaced_model is not None:
                await self._forget_gone_choice(user)
            async with self._chat_lock(key):
                reply._start_work()
                first_history: int | None = None
                for attempt, share in enumerate(HISTORY_SHARES):
                    limit = None if first_history is None else int(first_history * share)
                    prepared = await self._conversations.prepare(
                        chat_id=request.chat_id,
                        thread_id=request.thread_id,
                        user_id=request.user_id,
                        model=reply.model,
                        system_prompt=user.system_prompt or self._default_prompt,
                        user_text=request.text,
                        speaker=request.speaker,
                        images=request.images,
                        stored_text=request.stored_text
                        and _with_speaker(request, request.stored_text),
                        reattach=reattach,
                        history_limit=limit,
                    )
                    if first_history is None:
                        first_history = prepared.history_tokens
                    try:
                        usage = await self._stream(reply, user, prepared)
                        break
                    except ContextTooLong:
                        # The estimate is tuned to OpenAI's o200k vocabulary; other
                        # tokenizers count some languages higher. Retry with less history
                        # before asking the user to start over.
                        last = attempt == len(HISTORY_SHARES) - 1
                        if reply.text or prepared.history_tokens == 0 or last:
                            raise
                        log.info("context too long for %s; retrying with less history", reply.model)
                reply._finalizing = True
                status = ReplyStatus.COMPLETE
                # Complete: it can be drawn now, while it is stored; no draft of a finished
                # answer is sent, and the final message does not wait for the database.
                self._finish(reply, status, None)
                # Inside the lock, so the next question in this chat sees this answer.
                await self._persist_quietly(reply, prepared, status, usage)
        except asyncio.CancelledError:
            if reply._deferred:
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                # Nothing reached the user: nothing to store. (A request already sent may be
                # billed; the question is sent again after the restart, see begin_shutdown.)
                self._finish(reply, ReplyStatus.DEFERRED, None)
                return
            if not reply.stop_requested:
                self._finish(reply, ReplyStatus.FAILED, None)
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            status = ReplyStatus.STOPPED
            await self._persist_quietly(reply, prepared, status, usage)
        except _Refused as refused:
            # Billed, so counted; not stored: see ReplyStatus.REFUSED.
            status = ReplyStatus.REFUSED
            await self._record_usage(reply, prepared, "refused", refused.usage)
        except StreamInterrupted as exc:
            status, error = ReplyStatus.INTERRUPTED, exc
            await self._persist_quietly(reply, prepared, status, usage)
        except UpstreamError as exc:
            status, error = ReplyStatus.FAILED, exc
            if reply.text:
                status = ReplyStatus.INTERRUPTED
                await self._persist_quietly(reply, prepared, status, usage)
            elif prepared is not None and not isinstance(exc, CircuitOpen):
                # Sent upstream and failed: it counts as a request. One refused before
                # sending (our own context check, an open breaker) does not.
                await self._record_usage(reply, prepared, "error", None)
        except Exception:
            log.exception("reply %s failed", reply.id)
            status = ReplyStatus.INTERRUPTED if reply.text else ReplyStatus.FAILED
            if reply.text:
                await self._persist_quietly(reply, prepared, status, usage)
        self._finish(reply, status, error)

    async def _stream(
        self, reply: Reply, user: UserRecord, prepared: PreparedRequest
    ) -> Usage | None:
        temperature = user.temperature
        if reply.model in self._no_temperature:
            temperature = None
        try:
            return await self._stream_once(reply, prepared, temperature)
        except UpstreamError as exc:
            # A reasoning model (or a gateway) that takes no temperature: once more without
            # it, and the model is remembered so its next requests leave it out.
            if temperature is None or reply.text or not rejects_temperature(exc):
                raise
            log.info("model %s rejects a temperature; sending without it", reply.model)
            self._no_temperature.add(reply.model)
            reply._temperature_dropped = True
            return await self._stream_once(reply, prepared, None)

    async def _stream_once(
        self, reply: Reply, prepared: PreparedRequest, temperature: float | None
    ) -> Usage | None:
        usage: Usage | None = None
        provider, model = self._providers.resolve(reply.model)
        stream = provider.chat.stream_chat(
            model=model,
            turns=prepared.turns,
            max_tokens=prepared.max_tokens,
            temperature=temperature,
            user_key=reply.request.user_id,
            on_wait=reply._on_wait,
        )
        try:
            async for chunk in stream:
                reply._upstream_started = True
                if chunk.text:
                    if reply.queue_position is not None:
                        reply.queue_position = None
                    reply._append(chunk.text)
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.finish_reason == "refused":
                    raise _Refused(usage)
                if chunk.finish_reason == "length":
                    reply._truncated = True
        finally:
            await stream.aclose()
        return usage

    def _finish(self, reply: Reply, status: ReplyStatus, error: UpstreamError | None) -> None:
        self._replies.pop(reply.id, None)
        if reply._outcome is not None:
            return  # published already (a complete answer is, before it is stored)
        text = "" if status is ReplyStatus.REFUSED else reply.text
        outcome = ReplyOutcome(
            status,
            text,
            reply.model,
            error,
            truncated=reply._truncated,
            temperature_dropped=reply._temperature_dropped,
        )
        reply._finish(outcome)
        for listener in self._listeners:
            try:
                listener(reply, outcome)
            except Exception:
                log.exception("reply listener failed")

    async def _persist(
        self,
        reply: Reply,
        prepared: PreparedRequest | None,
        status: ReplyStatus,
        usage: Usage | None,
    ) -> None:
        if prepared is None:
            return
        # Usage first: it is queued before the answer reaches the user, so a /usage sent
        # right after the answer counts it. History needs no such care: the next question
        # in this chat waits for the chat lock, held until the exchange is stored.
        record = self._usage_record(
            reply, prepared, "ok" if status is ReplyStatus.COMPLETE else status.value, usage
        )
        text = reply.text
        if not text.strip():
            await self._store_usage(reply, record)
            return
        # The usage record and the exchange in one write: one round trip on PostgreSQL, where
        # a failing write stores neither (SQLite writes the usage first, on its own).
        await self._conversations.save_exchange(prepared, text, status=status.value, usage=record)
        reply._stored_in = prepared.conversation_id
        key = (reply.request.chat_id, reply.request.thread_id)
        placeholder = prepared.user_message.content
        if reply.request.images:
            self._images.remember(key, placeholder, reply.request.images)
        self._images.exchange_done(key, placeholder)

    async def _persist_quietly(
        self,
        reply: Reply,
        prepared: PreparedRequest | None,
        status: ReplyStatus,
        usage: Usage | None,
    ) -> None:
        # A failure to store must not turn a shown answer into an error for the user.
        try:
            await self._persist(reply, prepared, status, usage)
        except Exception:
            log.exception("could not store reply %s", reply.id)

    async def _record_usage(
        self, reply: Reply, prepared: PreparedRequest | None, status: str, usage: Usage | None
    ) -> None:
        await self._store_usage(reply, self._usage_record(reply, prepared, status, usage))

    @staticmethod
    def _usage_record(
        reply: Reply, prepared: PreparedRequest | None, status: str, usage: Usage | None
    ) -> UsageRecord:
        if usage is None:
            # Stopped or broken streams carry no usage chunk; estimate what was spent.
            usage = Usage(
                prompt_tokens=prepared.prompt_tokens if prepared else 0,
                completion_tokens=estimate_tokens(reply.text),
            )
        return UsageRecord(
            user_id=reply.request.user_id,
            chat_id=reply.request.chat_id,
            model=reply.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            credits=usage.credits,
            energy=usage.energy,
            status=status,
        )

    async def _store_usage(self, reply: Reply, record: UsageRecord) -> None:
        try:
            await self._storage.record_usage(record)
        except Exception:
            log.exception("could not record usage for reply %s", reply.id)

    # --- delivery -----------------------------------------------------------------
    async def record_delivery(self, reply: Reply, result: DeliveryResult) -> None:
        """Mark in history what the user actually received of a finished reply.

        The final message is sent while the answer is being stored (it must not wait for
        the database), so the mark comes afterwards: this waits for the reply's task, which
        ends once the answer is stored. A full delivery changes nothing.
        """
        if result is DeliveryResult.FULL:
            return
        task = reply._task
        if task is not None and not task.done():
            await asyncio.wait({task})
        if reply._stored_in is None:
            return  # nothing was stored (a failed reply, or storage failed)
        status = UNDELIVERED if result is DeliveryResult.NONE else PARTLY_DELIVERED
        try:
            await self._conversations.mark_answer(reply._stored_in, reply.text, status)
        except Exception:
            log.exception("could not mark reply %s as %s", reply.id, status)

    def _chat_lock(self, key: Hashable) -> _HeldLock:
        return _HeldLock(self._chat_locks, key)


class _HeldLock:
    """A per-key lock whose entry disappears when nobody holds or waits for it."""

    __slots__ = ("_key", "_lock", "_table")

    def __init__(self, table: dict[Hashable, tuple[asyncio.Lock, int]], key: Hashable) -> None:
        self._table = table
        self._key = key
        lock, users = table.get(key) or (asyncio.Lock(), 0)
        table[key] = (lock, users + 1)
        self._lock = lock

    async def __aenter__(self) -> None:
        try:
            await self._lock.acquire()
        except BaseException:
            self._release_entry()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()
        self._release_entry()

    def _release_entry(self) -> None:
        lock, users = self._table[self._key]
        if users <= 1:
            del self._table[self._key]
        else:
            self._table[self._key] = (lock, users - 1)


class _Refused(Exception):
    """The provider declined the topic; carries the usage it reported (it was billed)."""

    def __init__(self, usage: Usage | None) -> None:
        super().__init__("refused")
        self.usage = usage


def _with_speaker(request: ChatInput, text: str | None = None) -> str:
    text = request.text if text is None else text
    return f"{request.speaker}: {text}" if request.speaker else text
