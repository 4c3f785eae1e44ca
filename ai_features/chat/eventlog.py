"""Per-message event logs: generation appends, any number of responses read.

A response never owns the generation; it only reads this log from an event id onwards, so
a client that disconnects (or reconnects with Last-Event-ID) changes nothing for the
generation or for other readers. The in-memory log lives in one process's event loop; a
shared backend (Redis) can implement the same small interface.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from .events import ChatEvent


class UnknownStream(LookupError):
    """The log has no events for this message (never here, or expired)."""


class EventLog(Protocol):
    async def open(self, message_id: str) -> None: ...

    async def append(self, message_id: str, data: dict[str, Any]) -> ChatEvent: ...

    async def wait(self, message_id: str, after_id: int, timeout: float) -> list[ChatEvent]:
        """Events with id > after_id; waits up to `timeout` for one, then returns []."""
        ...

    async def has(self, message_id: str) -> bool: ...


@dataclass
class _Stream:
    events: list[ChatEvent] = field(default_factory=list)
    finished_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryEventLog:
    """Bounded in-process log: finished streams are kept `retention` seconds, and at most
    `max_finished` of them, oldest dropped first. Must be used from one event loop."""

    def __init__(self, retention: float = 300.0, max_finished: int = 2000) -> None:
        self.retention = retention
        self.max_finished = max_finished
        self._streams: OrderedDict[str, _Stream] = OrderedDict()

    async def open(self, message_id: str) -> None:
        self._purge()
        self._streams.setdefault(message_id, _Stream())

    async def append(self, message_id: str, data: dict[str, Any]) -> ChatEvent:
        stream = self._streams.get(message_id)
        if stream is None:
            raise UnknownStream(message_id)
        if stream.finished_at is not None:
            raise RuntimeError("append after the final event")
        event = ChatEvent(id=len(stream.events) + 1, data=data)
        stream.events.append(event)
        if event.is_final:
            stream.finished_at = time.monotonic()
            self._streams.move_to_end(message_id)
        # Wake every waiting reader, then arm a fresh event for the next append.
        stream.changed.set()
        stream.changed = asyncio.Event()
        return event

    async def wait(self, message_id: str, after_id: int, timeout: float) -> list[ChatEvent]:
        stream = self._streams.get(message_id)
        if stream is None:
            raise UnknownStream(message_id)
        if len(stream.events) <= after_id and stream.finished_at is None:
            changed = stream.changed
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except TimeoutError:
                return []
        # Ids are 1-based positions, so the slice is the events after `after_id`.
        events = stream.events[max(after_id, 0) :]
        if not events and stream.finished_at is not None:
            # A reader that already saw the end still gets a final event, so that no
            # stream of ours ever ends without one.
            return stream.events[-1:]
        return events

    async def has(self, message_id: str) -> bool:
        self._purge()
        return message_id in self._streams

    def events_of(self, message_id: str) -> list[ChatEvent]:
        """The events held for a message so far ([] when none)."""
        stream = self._streams.get(message_id)
        return list(stream.events) if stream is not None else []

    def _purge(self) -> None:
        now = time.monotonic()
        finished = [key for key, stream in self._streams.items() if stream.finished_at is not None]
        excess = len(finished) - self.max_finished
        for index, key in enumerate(finished):
            stream = self._streams[key]
            assert stream.finished_at is not None
            if index < excess or now - stream.finished_at > self.retention:
                del self._streams[key]
