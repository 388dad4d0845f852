"""Albums collected across replicas: one answer per album, whichever replicas got its parts.

Telegram delivers each part of an album as its own update, and a load balancer spreads them
over the replicas; `services.albums.AlbumCollector` only sees one process's parts. Here the
parts of group `g` live in Redis under the bot's prefix, with the same contract
(`services.albums.Albums`): the first part, on any replica, leads and gets every part in
arrival order once the album is complete; every other part returns None at once.

- `album:g:items` (list): the parts not handed out yet, as the caller's codec dumped them.
  `album:g:ids` (set): the ids of every part seen (the caller's `key`), so a part delivered
  again (a replayed update) is never added twice.
  `album:g:leader`: the leader's token, `<its part's id>|<random>`.
  `album:g:taken:<id>` (list): the batch the part `<id>` led and took, kept for its replay.
- ADD (one script): adds a new part, tries SET NX on the leader key; returns the role.
- The leader polls every `window / 8` (at most 0.1 s, at least 0.01 s) with one script that
  reads the length and refreshes the leader key; the album is complete when the length has
  not changed for `window` seconds, or has reached `max_items`. TAKE (one script) then reads
  and deletes the parts and the leader key atomically: a part that arrives after that starts
  a new batch (a new leader) instead of being lost or merged into an answered one.
- A leader that finds another's token in the key (its own lapsed while its loop stalled,
  and a newer part took the lead) returns None: the newer leader answers for all, its part
  included. Whoever takes a set of parts is the only one to get them.

Leaders that stop (timeouts in the spirit of the rest of services/shared/):
- The leader key lives `window + 2 s` and each poll refreshes it.
- A cancelled or failing leader deletes its leader key (best effort) and re-raises, but
  leaves the parts: a cancelled handler leaves its update unfinished in the journal, and the
  update's replay (or the album's next part) leads the album again with every part, instead
  of answering one part alone.
- A replica killed while leading: the journal replays the leader's update on another replica
  once the dead one's heartbeat is older than REPLICA_TIMEOUT_SECONDS (default 20 s; with the
  5 s heartbeat and scan, the replay starts 15-25 s after the death). That part is known by
  its id: if it still holds the leader key, or nobody does, it leads again and gets the whole
  album; if it had taken its batch already (it died while answering), it gets that batch
  again at once. A replay of a part another leader answered gets None. Parts, ids and taken
  batches live `keep` seconds after the last part (bot/shared_state.py: 60 s, or the replica
  timeout + 40 s if longer), so the album outlives the replay's delay.

Memory: nothing per album stays in the process except a leader's own wait; Redis holds one
album's parts for `keep` seconds at most (every key has a TTL).

When Redis is unreachable (RedisGuard returns None) a part goes to this process's
`AlbumCollector`: albums are grouped per replica again until Redis is back (the guard logs
one line). A leader that loses Redis while waiting answers with its own part.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

from redis.asyncio import Redis

from services.albums import AlbumCollector
from services.shared.guard import RedisGuard

__all__ = ["KEEP", "RedisAlbumCollector"]

T = TypeVar("T")

# Parts, ids and taken batches live this long after the album's last part (see above).
KEEP = 60.0
# The leader key outlives the window by this much; every poll refreshes it.
LEAD_SLACK = 2.0
MAX_POLL = 0.1
MIN_POLL = 0.01

# KEYS: items, ids, leader, taken (of this part's id). ARGV: item, id, token, lead ms, keep ms.
# {1, n}: this part leads, n parts so far. {0, n}: handed over (or a duplicate of a handed-out
# part). {2, part...}: a replay of a part that led and took its batch: that batch again.
_ADD = """
local keep = tonumber(ARGV[5])
local fresh = redis.call('SADD', KEYS[2], ARGV[2]) == 1
redis.call('PEXPIRE', KEYS[2], keep)
if fresh then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], keep)
else
  local taken = redis.call('LRANGE', KEYS[4], 0, -1)
  if #taken > 0 then
    local reply = {2}
    for i = 1, #taken do reply[i + 1] = taken[i] end
    return reply
  end
end
local n = redis.call('LLEN', KEYS[1])
if n == 0 then
  return {0, 0}
end
if redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[4]) then
  return {1, n}
end
if not fresh then
  -- This part led the album, and its update is replayed: that leader is gone.
  local mark = ARGV[2] .. '|'
  if string.sub(redis.call('GET', KEYS[3]) or '', 1, #mark) == mark then
    redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
    return {1, n}
  end
end
return {0, n}
"""

# KEYS: leader, items. ARGV: token, lead ms. The parts so far; -1: another leader took over.
_POLL = """
local holder = redis.call('GET', KEYS[1])
local n = redis.call('LLEN', KEYS[2])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif holder or n == 0 then
  return -1
else
  -- Our lead lapsed (the loop stalled) and nobody took it: lead on.
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return n
"""

# KEYS: leader, items, taken (of the leader's part). ARGV: token, keep ms.
# {1, part...}: the batch (possibly empty); {0}: another leader took over.
_TAKE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return {0}
end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
if holder then
  redis.call('DEL', KEYS[1])
end
local reply = {1}
if #items > 0 then
  redis.call('DEL', KEYS[3])
  redis.call('RPUSH', KEYS[3], unpack(items))
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[2]))
  for i = 1, #items do reply[i + 1] = items[i] end
end
return reply
"""

# KEYS: leader. ARGV: token. Deletes the leader key if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisAlbumCollector(Generic[T]):
    """`services.albums.Albums` for every replica at once (see the module docstring).

    `dump`/`load` turn an item into text and back (the caller's codec keeps services free of
    Telegram types); `key` names an item uniquely within its album (default: a hash of its
    dump), so a replayed part is recognised.
    """

    def __init__(
        self,
        redis: Redis,
        guard: RedisGuard,
        *,
        prefix: str,
        dump: Callable[[T], str],
        load: Callable[[str], T],
        key: Callable[[T], str] | None = None,
        window: float = 0.8,
        max_items: int = 10,
        keep: float = KEEP,
    ) -> None:
        if window < 0:
            raise ValueError("window must be >= 0")
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        if keep <= window + LEAD_SLACK:
            raise ValueError("keep must be longer than the window")
        self._guard = guard
        self._prefix = f"{prefix}album:"
        self._dump = dump
        self._load = load
        self._key = key
        self._window = window
        self._max_items = max_items
        self._keep_ms = int(keep * 1000)
        self._lead_ms = int((window + LEAD_SLACK) * 1000)
        self._poll = min(MAX_POLL, max(MIN_POLL, window / 8))
        self._add = redis.register_script(_ADD)
        self._poll_script = redis.register_script(_POLL)
        self._take = redis.register_script(_TAKE)
        self._release = redis.register_script(_RELEASE)
        # Only while Redis is unreachable.
        self._local: AlbumCollector[T] = AlbumCollector(window=window, max_items=max_items)

    def _keys(self, group_id: str) -> tuple[str, str, str]:
        base = f"{self._prefix}{group_id}:"
        return f"{base}items", f"{base}ids", f"{base}leader"

    def _taken_key(self, group_id: str, item_id: str) -> str:
        return f"{self._prefix}{group_id}:taken:{item_id}"

    async def add(self, group_id: str, item: T) -> list[T] | None:
        """As `AlbumCollector.add`, for the parts of all replicas."""
        text = self._dump(item)
        item_id = self._key(item) if self._key is not None else _digest(text)
        token = f"{item_id}|{uuid.uuid4().hex}"
        items, ids, leader = self._keys(group_id)
        taken = self._taken_key(group_id, item_id)

        async def call() -> list[object]:
            keys = [items, ids, leader, taken]
            args: list[str | int] = [text, item_id, token, self._lead_ms, self._keep_ms]
            return list(await self._add(keys=keys, args=args))

        reply = await self._guard.run(call, "an album part")
        if reply is None:
            return await self._local.add(group_id, item)
        role = int(str(reply[0]))
        if role == 2:
            return [self._load(_text(part)) for part in reply[1:]]
        if role == 0:
            return None
        try:
            return await self._lead(group_id, item, item_id, token, int(str(reply[1])))
        except BaseException:
            # Cancelled or failed: give the lead up at once and leave the parts to the
            # replay of this update (or to the album's next part); they expire otherwise.
            await asyncio.shield(self._give_up(leader, token))
            raise

    async def _lead(
        self, group_id: str, item: T, item_id: str, token: str, length: int
    ) -> list[T] | None:
        items, _, leader = self._keys(group_id)
        loop = asyncio.get_running_loop()
        changed = loop.time()

        async def poll() -> int:
            return int(await self._poll_script(keys=[leader, items], args=[token, self._lead_ms]))

        while length < self._max_items:
            quiet_left = changed + self._window - loop.time()
            await asyncio.sleep(max(0.0, min(self._poll, quiet_left)))
            now = loop.time()
            polled = await self._guard.run(poll, "an album wait")
            if polled is None:
                break  # Redis went away: take what can be taken
            if polled < 0:
                return None  # a newer leader answers for all, this part included
            if polled != length:
                length, changed = polled, now
            elif now - changed >= self._window:
                break

        async def take() -> list[object]:
            keys = [leader, items, self._taken_key(group_id, item_id)]
            return list(await self._take(keys=keys, args=[token, self._keep_ms]))

        reply = await self._guard.run(take, "an album batch")
        if reply is None:
            return [item]  # Redis unreachable: this part at least is answered
        if int(str(reply[0])) == 0:
            return None
        return [self._load(_text(part)) for part in reply[1:]] or None

    async def _give_up(self, leader: str, token: str) -> None:
        async def call() -> None:
            await self._release(keys=[leader], args=[token])

        await self._guard.run(call, "an album release")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
