"""Who may spend the providers' money, and how much: one decision for every paid question.

Every path that costs money (a text question in a private chat or a group, a photo or an
album, a voice note, /image, /video, /ask) passes the same checks in the same order:
ban → access list → flood → quota. The providers' own rate limiters come after, inside the
chat, image and video services. Admins pass every check and are never counted.

Where the state lives:
- the allow/ban list and the admins' /limit overrides are a few rows that admins write: read
  from storage once, on first use, and kept in memory, written through — a question costs no
  query for them;
- flood windows, "this bot is private" notice times and album burst keys are per process,
  in memory and bounded;
- with `shared` (REDIS_URL, several replicas): the flood window and its one notice, the
  "private" and ban notices are decided on Redis for all replicas together, and the cached list
  is checked against the list's version on Redis at every paid message (in the flood check's
  own round trip), so a lever pulled on one replica holds on every other at the next message.
  Redis unreachable: the local state decides that call, and the list is re-read from storage
  every `LIST_REREAD_WHEN_DOWN` seconds while it stays unreachable. Album burst keys stay per
  replica (an album whose parts reach two replicas counts once on each). The answers in flight
  that the quota counts are reserved on Redis too (a sorted set of holders per user, each
  expiring after `RESERVATION_SECONDS` should its replica die), so a user at the limit gets
  no extra answer from asking two replicas at once;
- quota counts are the stored usage records of the UTC day (a restart changes nothing) plus
  the questions being answered right now: a passing verdict that says ``reserved`` holds one
  request until the caller calls ``release`` (after the answer is stored).

The reservation is released when the answer has been delivered, a moment after its usage
record was stored; a question checked in between sees that answer twice. The error is on
the side of refusing early (and only while an answer is being delivered), never of letting
a user past the limit.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from services.storage import Storage
from services.storage.base import AccessEntry

log = logging.getLogger(__name__)

# The flood window, and how often one user may be told the bot is private.
WINDOW_SECONDS = 60.0
DAY_SECONDS = 86400.0
ACCESS_MODES = ("open", "allowlist")
# Album burst keys remembered per user: an album is ten messages at most, a few at a time.
MAX_BURSTS_PER_USER = 16
# With shared state but Redis unreachable, the cached list is re-read this often (seconds), so
# a lever pulled on another replica still holds here within this time.
LIST_REREAD_WHEN_DOWN = 30.0
# A reservation shared by replicas frees itself after this long should its replica die before
# releasing it (longer than any answer takes).
RESERVATION_SECONDS = 900.0


class Refusal(enum.StrEnum):
    BANNED = "banned"
    NOT_ALLOWED = "not_allowed"
    FLOOD = "flood"
    QUOTA_REQUESTS = "quota_requests"
    QUOTA_TOKENS = "quota_tokens"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to "may this message spend money?"."""

    refusal: Refusal | None  # None: it may
    # Tell the user why (False: stay silent — a ban after its one notice, flood after its one
    # notice, "private" more than once a minute, the other parts of a refused album).
    notify: bool
    # Quota refusals: the next UTC midnight (unix time). Flood refusals: when the next message
    # will be taken.
    resets_at: float | None = None
    # A pass that holds one in-flight request against the user's quota: the caller must call
    # AccessService.release(user_id, verdict.hold) once the answer is stored (or nothing was
    # sent).
    reserved: bool = False
    # With shared state: the reservation's holder on Redis (None: held on this replica only).
    hold: str | None = None


PASS = Verdict(None, False)


@dataclass(frozen=True, slots=True)
class FloodDecision:
    """A flood check made for all replicas together."""

    taken: bool
    wait: float  # refusals: seconds until the window takes a message again
    notify: bool  # refusals: the first of this burst, on any replica


class SharedAccess(Protocol):
    """What replicas share for the checks (services/shared/access.py on Redis). Every call
    answers None when the shared store is unreachable: the local state decides then."""

    async def flood(self, user_id: int, limit: int, window: float) -> FloodDecision | None: ...

    async def admit(
        self, user_id: int, limit: int, window: float
    ) -> tuple[str, FloodDecision] | None:
        """`list_version()` and `flood(...)` in one call: (version, decision)."""
        ...

    async def once(self, key: str, seconds: float) -> bool | None: ...

    async def reserve(self, user_id: int, holder: str, seconds: float) -> int | None:
        """Hold one of the user's answers in flight (for at most `seconds`, should this
        process die); how many are held now, this one included."""
        ...

    async def unreserve(self, user_id: int, holder: str) -> None: ...

    async def list_version(self) -> str | None: ...

    async def list_changed(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Standing:
    """A user's access and quota as /usage and the admins' /user show them."""

    banned: bool
    allowed: bool  # open mode, or listed (allowlist mode)
    requests_today: int  # answered (or being answered) since the UTC day began
    tokens_today: int
    requests_limit: int  # 0 = unlimited; the /limit override when there is one
    tokens_limit: int  # 0 = unlimited
    limit_overridden: bool
    resets_at: float  # the next UTC midnight
    exempt: bool  # admins are never refused nor counted


def start_of_utc_day(now: float) -> float:
    return now - now % DAY_SECONDS


def next_utc_midnight(now: float) -> float:
    return start_of_utc_day(now) + DAY_SECONDS


def utc_day(now: float) -> str:
    """The UTC date of a unix time as the refusals table stores it: "YYYY-MM-DD"."""
    return time.strftime("%Y-%m-%d", time.gmtime(now))


@dataclass(slots=True, eq=False)
class _Burst:
    """One album: decided (and counted) once, by the first of its messages."""

    at: float
    decided: asyncio.Event = field(default_factory=asyncio.Event)
    verdict: Verdict = PASS


@dataclass(slots=True, eq=False)
class _Recent:
    """What one user did lately (monotonic times)."""

    sent: deque[float]  # paid messages taken in the last WINDOW_SECONDS
    flood_silent_until: float = float("-inf")  # told "too fast" once; silent until then
    private_told_at: float = float("-inf")
    bursts: OrderedDict[str, _Burst] = field(default_factory=OrderedDict)


class AccessService:
    def __init__(
        self,
        storage: Storage,
        *,
        mode: str = "open",
        daily_requests: int = 0,
        daily_tokens: int = 0,
        flood_per_minute: int = 20,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_tracked_users: int = 10_000,
        shared: SharedAccess | None = None,
    ) -> None:
        if mode not in ACCESS_MODES:
            raise ValueError(f"access mode must be one of {', '.join(ACCESS_MODES)}")
        if min(daily_requests, daily_tokens, flood_per_minute) < 0:
            raise ValueError("limits must be >= 0 (0 = none)")
        self._storage = storage
        self._mode = mode
        self._daily_requests = daily_requests
        self._daily_tokens = daily_tokens
        self._flood = flood_per_minute
        self._clock = clock
        self._monotonic = monotonic
        self._max_tracked = max_tracked_users
        # Loaded from storage on first use (the database opens at start-up, after building).
        self._entries: dict[int, AccessEntry] | None = None
        self._shared = shared
        self._version: str | None = None  # the shared list version the cache was read under
        self._loaded_at = float("-inf")  # monotonic
        self._overrides: dict[int, int] = {}
        self._load_lock = asyncio.Lock()
        self._recent: OrderedDict[int, _Recent] = OrderedDict()
        # Requests being answered per user; never evicted (bounded by the questions in flight).
        self._in_flight: dict[int, int] = {}
        # Shared reservations being released (the release itself is called from a callback).
        self._releasing: set[asyncio.Task[None]] = set()

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def default_requests_limit(self) -> int:
        return self._daily_requests

    def limits(self, user_id: int) -> tuple[int, int]:
        """The user's daily (requests, tokens) limits, 0 = unlimited; known without a query
        once the list is loaded (any check loads it)."""
        return self._overrides.get(user_id, self._daily_requests), self._daily_tokens

    # ------------------------------------------------------------------------ the decision

    async def check(
        self,
        *,
        user_id: int,
        chat_id: int,
        is_admin: bool,
        kind: str,
        burst_key: str | None = None,
    ) -> Verdict:
        """May `user_id` spend money in `chat_id` now? Checks ban → access → flood → quota.

        `kind` is what the message spends ("chat", "image", "video"); every kind is checked
        the same way today. Messages sharing a `burst_key` (the parts of one album) are
        decided and counted once, by the first of them; the others get the same verdict,
        silently. A refusal is counted in the refusal statistics (burst followers are not).
        """
        if is_admin:
            return PASS
        recent = self._recent_of(user_id)
        if burst_key is None:
            return await self._decide(user_id, chat_id, recent)
        now = self._monotonic()
        burst = recent.bursts.get(burst_key)
        if burst is not None and now - burst.at < WINDOW_SECONDS:
            await burst.decided.wait()
            verdict = burst.verdict
            return PASS if verdict.refusal is None else replace(verdict, notify=False)
        # Registered before any await, so parts arriving meanwhile wait for this decision.
        burst = _Burst(now)
        recent.bursts[burst_key] = burst
        recent.bursts.move_to_end(burst_key)
        while len(recent.bursts) > MAX_BURSTS_PER_USER:
            recent.bursts.popitem(last=False)
        try:
            burst.verdict = await self._decide(user_id, chat_id, recent)
        finally:
            # Also on an error (storage down): the other parts must not wait forever. They
            # then pass and the album is answered as the handlers see fit.
            burst.decided.set()
        return burst.verdict

    def release(self, user_id: int, hold: str | None = None) -> None:
        """The answer of a `reserved` verdict is stored (or was never sent); `hold` is the
        verdict's."""
        count = self._in_flight.get(user_id, 0)
        if count <= 1:
            self._in_flight.pop(user_id, None)
        else:
            self._in_flight[user_id] = count - 1
        if hold is not None and self._shared is not None:
            self._unreserve_later(user_id, hold)

    def _unreserve_later(self, user_id: int, hold: str) -> None:
        # Called from a task's done callback, so the Redis call runs in a task of its own.
        assert self._shared is not None
        task = asyncio.get_running_loop().create_task(self._shared.unreserve(user_id, hold))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def close(self) -> None:
        """Let the shared reservations being released reach Redis (before it closes)."""
        if self._releasing:
            await asyncio.wait(set(self._releasing), timeout=2.0)

    async def _decide(self, user_id: int, chat_id: int, recent: _Recent) -> Verdict:
        entries, shared_flood = await self._lists_and_flood(user_id, chat_id)
        entry = entries.get(user_id)
        if entry is not None and entry.banned:
            notify = not entry.ban_noticed
            if notify:
                # Marked before the write: two messages racing still get one notice.
                entries[user_id] = replace(entry, ban_noticed=True)
                # Two replicas racing too (each has its own copy of the list).
                notify = await self._first(f"ban:{user_id}", WINDOW_SECONDS)
            if notify:
                try:
                    await self._storage.mark_ban_noticed(user_id)
                except Exception:
                    log.warning("could not store that user %d was told of the ban", user_id)
                else:
                    if self._shared is not None:
                        await self._shared.list_changed()  # the others' copies say "not told"
            return await self._refuse(Refusal.BANNED, notify)
        if self._mode == "allowlist" and not self._listed(entries, user_id, chat_id):
            now = self._monotonic()
            notify = now - recent.private_told_at >= WINDOW_SECONDS
            if notify:
                recent.private_told_at = now
                notify = await self._first(f"private:{user_id}", WINDOW_SECONDS)
            return await self._refuse(Refusal.NOT_ALLOWED, notify)
        if shared_flood is None and self._flood and self._shared is not None:
            shared_flood = await self._shared.flood(user_id, self._flood, WINDOW_SECONDS)
        if shared_flood is not None:
            if not shared_flood.taken:
                resets_at = self._clock() + shared_flood.wait
                return await self._refuse(Refusal.FLOOD, shared_flood.notify, resets_at)
        elif self._flood:
            now = self._monotonic()
            sent = recent.sent
            while sent and now - sent[0] >= WINDOW_SECONDS:
                sent.popleft()
            if len(sent) >= self._flood:
                free_at = sent[0] + WINDOW_SECONDS
                notify = now >= recent.flood_silent_until
                if notify:
                    recent.flood_silent_until = free_at
                resets_at = self._clock() + (free_at - now)
                return await self._refuse(Refusal.FLOOD, notify, resets_at)
            # Counted once it passed ban and access, also when the quota then refuses it:
            # someone over quota who keeps writing is throttled like anyone else.
            sent.append(now)
        requests_limit = self._overrides.get(user_id, self._daily_requests)
        if not requests_limit and not self._daily_tokens:
            return PASS  # nothing to count: no query, no reservation
        return await self._quota(user_id, requests_limit)

    async def _lists_and_flood(
        self, user_id: int, chat_id: int
    ) -> tuple[dict[int, AccessEntry], FloodDecision | None]:
        """The access list (re-read when another replica changed it) and, with shared flood
        windows, the flood decision asked in the same Redis call: one round trip per paid
        message instead of two. Asked together only when the list as this replica knows it
        lets the user through: a banned or unlisted user's messages take no place in the
        window (should the list have changed just now to refuse them, this one message did).
        """
        shared, cached = self._shared, self._entries
        if (
            shared is None
            or not self._flood
            or cached is None
            or self._refused_by_list(cached, user_id, chat_id)
        ):
            return await self._current(), None
        admitted = await shared.admit(user_id, self._flood, WINDOW_SECONDS)
        if admitted is None:  # Redis unreachable: local state, as _current() does then
            return await self._current(), None
        version, flood = admitted
        return await self._load(version, reread=lambda: self._version != version), flood

    def _refused_by_list(self, entries: dict[int, AccessEntry], user_id: int, chat_id: int) -> bool:
        entry = entries.get(user_id)
        if entry is not None and entry.banned:
            return True
        return self._mode == "allowlist" and not self._listed(entries, user_id, chat_id)

    @staticmethod
    def _listed(entries: dict[int, AccessEntry], user_id: int, chat_id: int) -> bool:
        entry = entries.get(user_id)
        if entry is not None and entry.allowed:
            return True
        # In a group (its chat id is not the user's), the group itself may be listed.
        group = entries.get(chat_id) if chat_id != user_id else None
        return group is not None and group.allowed

    async def _quota(self, user_id: int, requests_limit: int) -> Verdict:
        tokens_limit = self._daily_tokens
        now = self._clock()
        day_start = start_of_utc_day(now)
        used = await self._storage.quota_usage(user_id, day_start)
        resets_at = day_start + DAY_SECONDS
        hold: str | None = None
        held_elsewhere: int | None = None
        if self._shared is not None and requests_limit:
            # Reserved on Redis after the query: of two replicas checking at once, the second
            # to reserve sees the first one's answer in flight (what it counts is atomic).
            hold = uuid.uuid4().hex
            held = await self._shared.reserve(user_id, hold, RESERVATION_SECONDS)
            if held is None:  # Redis unreachable: this replica's own count decides
                hold = None
            else:
                held_elsewhere = held - 1
        # Read after the awaits and reserved without another in between: questions checked
        # meanwhile count here, and this one counts for the next.
        in_flight = self._in_flight.get(user_id, 0)
        # Redis' count includes this replica's own answers, unless some were reserved while
        # it was unreachable.
        counted = in_flight if held_elsewhere is None else max(in_flight, held_elsewhere)
        refusal: Refusal | None = None
        if requests_limit and used.requests + counted >= requests_limit:
            refusal = Refusal.QUOTA_REQUESTS
        elif tokens_limit and used.tokens >= tokens_limit:
            refusal = Refusal.QUOTA_TOKENS
        if refusal is not None:
            if hold is not None:
                self._unreserve_later(user_id, hold)
            return await self._refuse(refusal, True, resets_at)
        self._in_flight[user_id] = in_flight + 1
        return Verdict(None, False, reserved=True, hold=hold)

    async def _refuse(
        self, refusal: Refusal, notify: bool, resets_at: float | None = None
    ) -> Verdict:
        try:
            await self._storage.count_refusal(refusal.value, utc_day(self._clock()))
        except Exception:
            # Statistics only: the refusal itself stands.
            log.warning("could not count a %s refusal", refusal.value, exc_info=True)
        return Verdict(refusal, notify, resets_at)

    def _recent_of(self, user_id: int) -> _Recent:
        recent = self._recent.get(user_id)
        if recent is None:
            recent = _Recent(deque(maxlen=max(self._flood, 1)))
            self._recent[user_id] = recent
            if len(self._recent) > self._max_tracked:
                # The least recently active user forgets their window: at worst they may send
                # a few more messages in that minute.
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(user_id)
        return recent

    async def _first(self, key: str, seconds: float) -> bool:
        """Whether this replica is the first to tell within `seconds` (True without Redis)."""
        if self._shared is None:
            return True
        first = await self._shared.once(key, seconds)
        return first is None or first

    async def _current(self) -> dict[int, AccessEntry]:
        """The list, re-read when another replica changed it (shared state)."""
        if self._shared is None:
            entries = self._entries
            return entries if entries is not None else await self._load()
        version = await self._shared.list_version()
        if version is None:  # Redis unreachable: re-read now and then instead
            return await self._load(
                reread=lambda: self._monotonic() - self._loaded_at >= LIST_REREAD_WHEN_DOWN
            )
        return await self._load(version, reread=lambda: self._version != version)

    async def _load(
        self, version: str | None = None, *, reread: Callable[[], bool] | None = None
    ) -> dict[int, AccessEntry]:
        """The list, read from storage if not yet (or if `reread()` says so, under the lock:
        of the checks that saw a change at once, one reads)."""
        async with self._load_lock:
            if self._entries is None or (reread is not None and reread()):
                # Noted before reading: a change written meanwhile makes the next check re-read.
                if version is not None:
                    self._version = version
                self._loaded_at = self._monotonic()
                entries = {e.subject_id: e for e in await self._storage.access_list()}
                self._overrides = await self._storage.daily_limit_overrides()
                self._entries = entries
            return self._entries

    # ---------------------------------------------------------------------- /usage, /user

    async def standing(self, user_id: int, *, is_admin: bool) -> Standing:
        entries = await self._current()
        entry = entries.get(user_id)
        override = self._overrides.get(user_id)
        day_start = start_of_utc_day(self._clock())
        used = await self._storage.quota_usage(user_id, day_start)
        return Standing(
            banned=entry is not None and entry.banned,
            allowed=self._mode == "open" or (entry is not None and entry.allowed),
            requests_today=used.requests + self._in_flight.get(user_id, 0),
            tokens_today=used.tokens,
            requests_limit=self._daily_requests if override is None else override,
            tokens_limit=self._daily_tokens,
            limit_overridden=override is not None,
            resets_at=day_start + DAY_SECONDS,
            exempt=is_admin,
        )

    # ----------------------------------------------------------------- the admins' levers

    async def allow(self, target_id: int) -> None:
        """Put a user or a group (its chat id) on the allowlist."""
        await self._load()
        await self._storage.set_access_allowed(target_id, True)
        self._update(target_id, allowed=True)
        await self._tell_replicas()

    async def deny(self, target_id: int) -> None:
        await self._load()
        await self._storage.set_access_allowed(target_id, False)
        self._update(target_id, allowed=False)
        await self._tell_replicas()

    async def ban(self, user_id: int) -> None:
        """Refuse every paid message of the user, with one notice (the first time after)."""
        await self._load()
        await self._storage.set_access_banned(user_id, True)
        self._update(user_id, banned=True, ban_noticed=False)
        await self._tell_replicas()

    async def unban(self, user_id: int) -> None:
        await self._load()
        await self._storage.set_access_banned(user_id, False)
        self._update(user_id, banned=False, ban_noticed=False)
        await self._tell_replicas()

    async def set_daily_limit(self, user_id: int, requests: int | None) -> None:
        """Override one user's daily request limit at once (0 = unlimited); None removes the
        override (back to USER_DAILY_REQUESTS)."""
        if requests is not None and requests < 0:
            raise ValueError("the limit must be >= 0 (0 = unlimited)")
        await self._load()
        await self._storage.set_daily_requests_limit(user_id, requests)
        if requests is None:
            self._overrides.pop(user_id, None)
        else:
            self._overrides[user_id] = requests
        await self._tell_replicas()

    async def _tell_replicas(self) -> None:
        """A lever was pulled (and stored): every replica re-reads the list at its next check."""
        if self._shared is not None:
            await self._shared.list_changed()

    def _update(self, subject_id: int, **changes: bool) -> None:
        entries = self._entries
        assert entries is not None  # loaded by the caller
        current = entries.get(subject_id) or AccessEntry(subject_id, False, False, False)
        entry = replace(current, **changes)
        if entry.allowed or entry.banned:
            entries[subject_id] = entry
        else:
            entries.pop(subject_id, None)  # nothing to remember: keep the map small
