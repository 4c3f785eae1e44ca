"""Per-message event logs: generation appends, any number of responses read.

A response never owns the generation; it only reads this log from an event id onwards, so
a client that disconnects (or reconnects with Last-Event-ID) changes nothing for the
generation or for other readers. The in-memory log lives in one process's event loop; a
shared backend (Redis) can implement the same small interface.
"""

from __future__ import annotations

import asyncio
import sys
import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from .events import ChatEvent, content_data


class UnknownStream(LookupError):
    """The log has no events for this message (never here, or expired)."""


class EventLog(Protocol):
    async def aopen(self, message_id: str) -> None: ...

    async def aappend(self, message_id: str, data: dict[str, Any]) -> ChatEvent: ...

    async def aread_after(self, message_id: str, after_id: int, timeout: float) -> list[ChatEvent]:
        """Events with id > after_id; waits up to `timeout` for one, then returns []."""
        ...

    async def ahas(self, message_id: str) -> bool: ...

    async def ahas_room(self) -> bool:
        """Whether memory allows one more stream (STREAM_EVENT_LOG_MAX_BYTES)."""
        ...


# What one event costs in memory besides its text (the event, its dict, list slot): the
# budget is an estimate, not an exact count.
EVENT_OVERHEAD_BYTES = 400


def _event_bytes(data: dict[str, Any]) -> int:
    content = data.get("content")
    return EVENT_OVERHEAD_BYTES + (sys.getsizeof(content) if isinstance(content, str) else 0)


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(eq=False, slots=True)
class _Waiter:
    """A reader waiting for the next event, until `deadline` (loop time) at the latest."""

    future: asyncio.Future
    deadline: float


@dataclass(eq=False)  # identity: the log finds a stream in its lists by `is`
class _Stream:
    events: list[ChatEvent] = field(default_factory=list)
    finished_at: float | None = None
    # Readers waiting for the next event: one bare future each, resolved by the next append
    # or, once its deadline passed, by the stream's one timer (cheaper than an
    # asyncio.Event plus a wait_for task per read, which was a measurable share of the
    # relay's CPU; and than a timer armed and cancelled per read, ~2 µs a token).
    waiters: list[_Waiter] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None  # armed for the earliest waiter's deadline
    size: int = 0
    # Set once compacted: `text_before[i]` is how many characters of the answer the events
    # up to id i carried, so a reader resuming from any old id gets exactly the rest.
    text_before: array | None = None

    def after(self, after_id: int) -> list[ChatEvent]:
        if self.text_before is None:
            # Ids are 1-based positions, so the slice is the events after `after_id`.
            return self.events[max(after_id, 0) :]
        start, content, final = self.events
        events = [start] if after_id < start.id else []
        if after_id < content.id:
            text = content.data["content"]
            rest = text[self.text_before[max(after_id, 0)] :]
            if rest:
                events.append(ChatEvent(id=content.id, data=content_data(rest)))
        if after_id < final.id:
            events.append(final)
        return events

    def compact(self) -> None:
        """A finished answer as three events: its start, all its text as one content event
        (with the id of the last one) and its final event; ids stay valid for resume."""
        events = self.events
        if self.text_before is not None or len(events) < 4:
            return
        start, middle, final = events[0], events[1:-1], events[-1]
        if start.data.get("type") != "start" or any(e.type != "content" for e in middle):
            return  # only the plain shape is compacted
        text_before = array("I", [0, 0])
        parts: list[str] = []
        length = 0
        for event in middle:
            parts.append(event.data["content"])
            length += len(parts[-1])
            text_before.append(length)
        content = ChatEvent(id=middle[-1].id, data=content_data("".join(parts)))
        self.events = [start, content, final]
        self.text_before = text_before
        self.size = sum(_event_bytes(e.data) for e in self.events) + text_before.itemsize * len(
            text_before
        )


def _wake_overdue(stream: _Stream) -> None:
    """The stream's timer: wake the readers whose deadline passed (each then sends a
    ping), and arm again for the earliest deadline left, if any. Appends do not touch the
    timer; it runs at most once per reader's timeout, not once per event."""
    stream.timer = None
    if not stream.waiters:
        return
    loop = asyncio.get_running_loop()
    # A loop may run a timer up to its clock's resolution early (uvloop: whole
    # milliseconds); such a waiter is due all the same.
    due = loop.time() + 0.001
    waiting = []
    for waiter in stream.waiters:
        if waiter.deadline <= due:
            _wake(waiter.future)
        else:
            waiting.append(waiter)
    stream.waiters = waiting
    if waiting:
        stream.timer = loop.call_at(min(w.deadline for w in waiting), _wake_overdue, stream)


class MemoryEventLog:
    """Bounded in-process log: finished streams are kept `retention` seconds, at most
    `max_finished` of them, and within `max_bytes` in all (estimated), oldest finished
    dropped first; a new stream is refused (`ahas_room`) when live ones fill the budget.
    Finished streams are compacted to three events when the next stream opens. Must be used
    from one event loop.

    A start costs what it changes, not a walk over every stream held: the finished ones are
    kept in their order of finishing (the order they expire and are evicted in), the ones
    not yet compacted in a list of their own, and the estimated size as a running total. At
    a thousand streams the walks were a visible share of each start (bench/README.md)."""

    def __init__(
        self, retention: float = 300.0, max_finished: int = 2000, max_bytes: int = 0
    ) -> None:
        self.retention = retention
        self.max_finished = max_finished
        self.max_bytes = max_bytes  # 0: no byte budget
        self._streams: dict[str, _Stream] = {}
        # Finished streams, oldest finish first; their finish times never decrease.
        self._finished: OrderedDict[str, _Stream] = OrderedDict()
        self._to_compact: list[_Stream] = []
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    async def ahas_room(self) -> bool:
        """Whether a new stream may start: compacts and evicts finished logs to make room."""
        self._purge()
        if not self.max_bytes:
            return True
        self._compact_finished()
        while self._finished and self._size >= self.max_bytes:
            self._drop(next(iter(self._finished)))
        return self._size < self.max_bytes

    async def aopen(self, message_id: str) -> None:
        self._purge()
        self._compact_finished()
        if message_id not in self._streams:
            self._streams[message_id] = _Stream()

    async def aappend(self, message_id: str, data: dict[str, Any]) -> ChatEvent:
        stream = self._streams.get(message_id)
        if stream is None:
            raise UnknownStream(message_id)
        if stream.finished_at is not None:
            raise RuntimeError("append after the final event")
        event = ChatEvent(id=len(stream.events) + 1, data=data)
        stream.events.append(event)
        grown = _event_bytes(data)
        stream.size += grown
        self._size += grown
        if event.is_final:
            stream.finished_at = time.monotonic()
            self._finished[message_id] = stream
            self._to_compact.append(stream)
        if stream.waiters:
            waiters, stream.waiters = stream.waiters, []
            for waiter in waiters:
                _wake(waiter.future)
        return event

    async def aread_after(self, message_id: str, after_id: int, timeout: float) -> list[ChatEvent]:
        stream = self._streams.get(message_id)
        if stream is None:
            raise UnknownStream(message_id)
        if len(stream.events) <= after_id and stream.finished_at is None:
            loop = asyncio.get_running_loop()
            waiter = _Waiter(loop.create_future(), loop.time() + timeout)
            stream.waiters.append(waiter)
            if stream.timer is None or waiter.deadline < stream.timer.when():
                if stream.timer is not None:  # only with a shorter timeout than the others'
                    stream.timer.cancel()
                stream.timer = loop.call_at(waiter.deadline, _wake_overdue, stream)
            try:
                await waiter.future
            finally:
                if waiter in stream.waiters:  # not woken by an append: timed out or cancelled
                    stream.waiters.remove(waiter)
            if len(stream.events) <= after_id and stream.finished_at is None:
                return []  # quiet for `timeout`: the caller sends a ping
        events = stream.after(after_id)
        if not events and stream.finished_at is not None:
            # A reader that already saw the end still gets a final event, so that no
            # stream of ours ever ends without one.
            return stream.events[-1:]
        return events

    async def ahas(self, message_id: str) -> bool:
        self._purge()
        return message_id in self._streams

    def events_of(self, message_id: str) -> list[ChatEvent]:
        """The events held for a message so far ([] when none)."""
        stream = self._streams.get(message_id)
        return list(stream.events) if stream is not None else []

    def _compact_finished(self) -> None:
        for stream in self._to_compact:
            before = stream.size
            stream.compact()
            self._size += stream.size - before
        self._to_compact.clear()

    def _drop(self, message_id: str) -> None:
        stream = self._streams.pop(message_id)
        self._finished.pop(message_id, None)
        self._size -= stream.size
        if stream in self._to_compact:  # rare: dropped before the next open compacted it
            self._to_compact.remove(stream)

    def _purge(self) -> None:
        """Drops the finished streams past `retention` and those beyond `max_finished`:
        both are the oldest finishes, so it stops at the first one it keeps."""
        now = time.monotonic()
        excess = len(self._finished) - self.max_finished
        while self._finished:
            message_id, stream = next(iter(self._finished.items()))
            assert stream.finished_at is not None
            if excess <= 0 and now - stream.finished_at <= self.retention:
                break
            self._drop(message_id)
            excess -= 1
