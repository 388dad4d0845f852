"""Collect the messages of one Telegram album (media group) into a single batch.

Telegram has no "album" update: it delivers each photo of an album as its own message with a
shared `media_group_id`, and the dispatcher handles them as concurrent tasks, in no
guaranteed timing. The bot should answer an album once, with all its images, so the first
handler to see a group becomes its leader and waits for the rest; the others hand their item
over and return at once.

`Albums` is the contract the handler relies on; `AlbumCollector` keeps the albums of one
process, services/shared/albums.py those of every replica (with REDIS_URL).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

__all__ = ["AlbumCollector", "Albums"]

T = TypeVar("T")


class Albums(Protocol[T]):
    """Collects the parts of albums: one caller per album gets the whole batch."""

    async def add(self, group_id: str, item: T) -> list[T] | None:
        """The album's leader (its first part) gets every part in arrival order once the
        album is complete; every other part gets None at once."""
        ...


@dataclass(slots=True, eq=False)
class _Album(Generic[T]):
    items: list[T]
    # Set whenever an item arrives (or the album fills up): the leader then restarts its
    # quiet-period timer or finishes. One wake-up per item, never a polling loop.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False


class AlbumCollector(Generic[T]):
    """Batches items by group id; the first `add` of a group returns the whole batch.

    An album is complete when `window` seconds pass without a new item, or as soon as it
    holds `max_items` (Telegram allows at most 10 per album). A group's state is removed the
    moment its batch is handed out (or its leader is cancelled), so memory is bounded by the
    albums in flight. An item that arrives after its group was handed out starts a new batch
    under the same id rather than being dropped or merged into an answered one.
    """

    def __init__(self, *, window: float = 0.8, max_items: int = 10) -> None:
        if window < 0:
            raise ValueError("window must be >= 0")
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self._window = window
        self._max_items = max_items
        self._albums: dict[str, _Album[T]] = {}

    def __len__(self) -> int:
        """Albums being collected right now (0 when idle: nothing is kept for finished ones)."""
        return len(self._albums)

    async def add(self, group_id: str, item: T) -> list[T] | None:
        """Add `item` to its album. The leader (first caller) gets every item in arrival
        order once the album is complete; every other caller gets None immediately.

        If the leader is cancelled, its album is discarded, including items other callers
        already handed over: those callers have returned, and nobody is left to answer them.
        """
        album = self._albums.get(group_id)
        if album is not None:
            # No await between lookup and mutation: atomic with respect to other tasks.
            album.items.append(item)
            if len(album.items) >= self._max_items:
                self._close(group_id, album)
            album.changed.set()
            return None

        album = _Album([item])
        self._albums[group_id] = album
        try:
            if len(album.items) >= self._max_items:
                self._close(group_id, album)
            while not album.closed:
                album.changed.clear()
                try:
                    async with asyncio.timeout(self._window):
                        await album.changed.wait()
                except TimeoutError:
                    break
            return album.items
        finally:
            # Normal completion, cancellation or any error: the entry never outlives this
            # call. The identity check keeps a newer album under the same id intact.
            self._close(group_id, album)

    def _close(self, group_id: str, album: _Album[T]) -> None:
        # Closing detaches the album at once, so an item arriving after the batch is final
        # (full, or between the timeout and the leader resuming) starts a new one instead of
        # being appended to a list that has already been returned.
        album.closed = True
        if self._albums.get(group_id) is album:
            del self._albums[group_id]
