"""The update journal on the Telegram side: record before handling, replay after a crash.

`JournalMiddleware` (an outer update middleware) records each update before any handler sees
it and finishes it afterwards; a duplicate delivery is dropped. `Replayer` feeds the unfinished
ones of dead replicas (with one process: of the last run) to the dispatcher once, beside normal
polling: at start-up and, with replicas, at each scan of services/replicas.py; `RestartNote`
tells each of their chats first that the bot restarted.

The window that remains in polling mode: aiogram confirms an update to Telegram by the
`offset` of its next `getUpdates`, which it sends as soon as it has handed the update to a
handler task, and the journal's INSERT runs when that task first runs. A kill between the two
(well under a millisecond of work: aiogram's own in-memory middlewares, then the INSERT as this
task's first await) loses the update. Closing it would take a polling loop of our own; the
journal is registered outermost among ours so that nothing of ours runs before the INSERT.
Webhook mode has no such window: bot/webhook.py writes the row before Telegram gets its 200
(and marks the update `RECORDED_KEY`, so this middleware does not record it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message, TelegramObject, Update
from pydantic import ValidationError

from handlers.ui.continuation import CONTINUATION_KEY, Continuation
from handlers.ui.texts import t
from services.journal import UpdateDeferred, UpdateJournal
from services.storage.base import JournalEntry

log = logging.getLogger(__name__)

# The handler data key that marks an update fed again by the Replayer.
REPLAY_KEY = "journal_replay"
# The handler data key that marks an update the webhook recorded before taking it.
RECORDED_KEY = "journal_recorded"
CLOSE_TIMEOUT = 5.0


class ReplayRun:
    """One start-up's replay: which chats were told about the restart already."""

    def __init__(self) -> None:
        self._told: set[tuple[int, int | None]] = set()

    def first_in(self, chat_id: int, thread_id: int | None) -> bool:
        key = (chat_id, thread_id)
        if key in self._told:
            return False
        self._told.add(key)
        return True


def update_payload(update: Update) -> str | None:
    """What is stored to replay the update: message updates only (a question); None for the
    rest, which are recorded by id for dedupe."""
    if update.message is None:
        return None
    # exclude_unset: what Telegram sent, not every default of the model; by_alias: "from".
    return update.model_dump_json(exclude_unset=True, by_alias=True)


async def write_quietly(write: Callable[[int], Awaitable[None]], update_id: int) -> None:
    """A journal write whose failure is logged, not raised: the update was handled (or is
    being put off) either way; at worst it is replayed once more after a restart."""
    try:
        await write(update_id)
    except Exception:
        log.warning("journal: could not update update %d", update_id, exc_info=True)


class JournalMiddleware(BaseMiddleware):
    """Records an update before it is handled and finishes it after; drops a duplicate.

    Register it right after `InFlight`: the shutdown's drain then also waits for the final
    write, made before the database closes.
    """

    def __init__(self, journal: UpdateJournal) -> None:
        self._journal = journal

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Update):
            return await handler(event, data)
        update_id = event.update_id
        # A replayed update, or one the webhook recorded, is in the journal already.
        if data.get(REPLAY_KEY) is None and not data.get(RECORDED_KEY):
            try:
                fresh = await self._journal.record(update_id, update_payload(event))
            except Exception:
                # Better answered without a safety net than not answered at all.
                log.warning("journal: could not record update %d", update_id, exc_info=True)
                try:
                    return await handler(event, data)
                except UpdateDeferred:
                    log.warning("journal: update %d put off but not recorded: lost", update_id)
                    return None
            if not fresh:
                log.info("journal: update %d was delivered again; not handled twice", update_id)
                return None
        continuation = data.get(CONTINUATION_KEY)
        if isinstance(continuation, Continuation):
            # Should the handler hand its answer over, the update is finished when it ends.
            continuation.after(functools.partial(self._work_ended, update_id))
        try:
            result = await handler(event, data)
        except UpdateDeferred:
            await self._defer(update_id)
            return None
        except Exception:
            # Handled, if badly (the errors handler tells the user): never replayed.
            await write_quietly(self._journal.finish, update_id)
            raise
        if isinstance(continuation, Continuation) and continuation.task is not None:
            return result  # finished by _work_ended
        # A cancelled handler (BaseException) leaves the update unfinished: answered at restart.
        await write_quietly(self._journal.finish, update_id)
        return result

    async def _work_ended(self, update_id: int, error: Exception | None) -> None:
        if isinstance(error, UpdateDeferred):
            await self._defer(update_id)
            return
        if error is not None:
            # The work reports its own failures (see handlers/ui/continuation.py); a handled
            # update is never replayed.
            log.error("journal: work of update %d failed", update_id, exc_info=error)
        await write_quietly(self._journal.finish, update_id)

    async def _defer(self, update_id: int) -> None:
        log.info("journal: update %d put off until the restart", update_id)
        await write_quietly(self._journal.defer, update_id)


class RestartNote(BaseMiddleware):
    """Before a replayed message is handled, tell its chat once that the bot restarted.

    An inner message middleware: it runs only when a handler took the message, so a replayed
    group message that was not meant for the bot draws no note. `profile` comes from the
    outer ProfileMiddleware.
    """

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        run = data.get(REPLAY_KEY)
        if isinstance(run, ReplayRun) and isinstance(event, Message):
            thread = event.message_thread_id if event.is_topic_message else None
            if run.first_in(event.chat.id, thread):
                profile = data.get("profile")
                lang = getattr(profile, "lang", "en")
                with contextlib.suppress(TelegramAPIError):
                    await event.answer(t(lang, "restart_note"), parse_mode=None)
        return await handler(event, data)


class Replayer:
    """Feeds the unfinished updates of dead replicas (or the last run) to the dispatcher once,
    beside polling.

    A chat's updates go one after another, in the order they arrived (so a question sees the
    answer to the one before it); chats go side by side.
    """

    def __init__(self, dispatcher: Dispatcher, bot: Bot, journal: UpdateJournal) -> None:
        self._dispatcher = dispatcher
        self._bot = bot
        self._journal = journal
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Take over in the background (a start-up without the replicas' scan)."""
        self._track(asyncio.create_task(self.take_over(), name="journal-replay"))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def take_over(self) -> None:
        """Claim the unfinished updates of dead replicas and feed them in the background (the
        replicas' scan calls this; it returns once they are claimed)."""
        if self._stopping.is_set():
            return
        try:
            entries = await self._journal.replayable()
        except Exception:
            log.warning("journal: could not read unfinished updates", exc_info=True)
            return
        if entries:
            self._track(asyncio.create_task(self._run(entries), name="journal-replay"))

    def halt(self) -> None:
        """Feed nothing more: what was not fed yet stays unfinished for the next start."""
        self._stopping.set()

    async def close(self) -> None:
        """Halt and wait for the updates being fed (the shutdown has stopped them by now)."""
        self._stopping.set()
        tasks = set(self._tasks)
        if tasks:
            # The shutdown has ended the answers by now; anything else gets a short wait.
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, entries: list[JournalEntry]) -> None:
        chats: dict[int, list[tuple[JournalEntry, Update]]] = {}
        for entry in entries:
            update = self._parse(entry)
            if update is None or update.message is None:
                await write_quietly(self._journal.finish, entry.update_id)
                continue
            chats.setdefault(update.message.chat.id, []).append((entry, update))
        if not chats:
            return
        log.info(
            "journal: answering %d unfinished updates in %d chats again",
            sum(len(items) for items in chats.values()),
            len(chats),
        )
        run = ReplayRun()
        await asyncio.gather(*(self._replay_chat(items, run) for items in chats.values()))

    def _parse(self, entry: JournalEntry) -> Update | None:
        if entry.payload is None:
            return None
        try:
            return Update.model_validate_json(entry.payload, context={"bot": self._bot})
        except ValidationError:
            log.warning("journal: update %d cannot be read back; dropped", entry.update_id)
            return None

    async def _replay_chat(self, items: list[tuple[JournalEntry, Update]], run: ReplayRun) -> None:
        for entry, update in items:
            if self._stopping.is_set():
                return
            try:
                # Marked before it is fed: if it crashes the bot again, it is not fed a third time.
                if not await self._journal.begin_replay(entry.update_id):
                    continue
                await self._dispatcher.feed_update(self._bot, update, **{REPLAY_KEY: run})
            except Exception:
                # The journal middleware has finished it; the errors handler told the user.
                log.warning("journal: replay of update %d failed", entry.update_id, exc_info=True)
