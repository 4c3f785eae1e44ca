"""The event log in Redis, so that any process can follow, resume and stop any message.

Same interface as MemoryEventLog (the core picks one by REDIS_URL), built around it:
every process keeps the events it produces or follows in a MemoryEventLog, and Redis carries
them between processes:

- writes: `aappend` is served from memory at once; the appends of one event-loop tick go to
  Redis in one pipeline (a Redis Stream per message, entry id `0-<event id>`, so event ids
  are the same in every process; TTL STREAM_EVENT_LOG_RETENTION_SECONDS);
- reads of a message produced elsewhere: one task per process follows all of them with one
  blocking XREAD, copying their events into memory, where every local reader waits on them
  (never one Redis round trip per token per reader);
- liveness: each generation's `live` key is refreshed by one heartbeat task per process and
  expires STREAM_STALE_AFTER_SECONDS after the producer's last sign of life; a follower that
  finds it gone (SIGKILL, a crashed host) stores the logged text, and ends the log with an
  `error` event `interrupted` and a seal entry above every event id, in one script: a
  producer that was only slow (a stalled loop, a Redis outage longer than the window) can
  then add nothing after that final event, and stops writing to Redis when it is refused;
- stop: a stop for a message generated elsewhere is published on one channel; the process
  that generates it cancels it at once.

Redis unreachable: events stay in this process's memory (resumes elsewhere fall back to the
database), the outage is logged once (see redis_client.RedisOutage), and nothing waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import redis.asyncio as aredis
from django.conf import settings
from redis.exceptions import ResponseError
from redis.typing import KeyT, StreamIdT

from ..redis_client import REDIS_ERRORS, ProcessRedis, RedisUnavailable, make_client
from .eventlog import MemoryEventLog
from .events import ChatEvent, error_data

logger = logging.getLogger(__name__)

STOP_CHANNEL = "c3:stop"
FOLLOW_BLOCK_SECONDS = 0.25  # a message followed from now on waits at most this for its XREAD
LIVENESS_CHECK_SECONDS = 1.0  # how often followers check the producers of quiet messages
CLOSE_ATTEMPTS, CLOSE_WAIT_SECONDS = 3, 1.5  # aclose: cancels, and the wait after each


# Replies as this module's clients get them (make_client: bytes, RESP2). redis-py types each
# command for every protocol and decoding at once, so the reads are cast to these.
RawEntries = list[tuple[bytes, dict[bytes, bytes]]]  # XRANGE: (entry id, fields), in order
RawStreams = list[tuple[bytes, RawEntries]]  # XREAD: (stream key, its new entries) per stream


def log_key(message_id: str) -> str:
    return f"c3:log:{message_id}"


def live_key(message_id: str) -> str:
    return f"c3:live:{message_id}"


def _entry_id(event_id: int) -> str:
    return f"0-{event_id}"


# Events are entries 0-<n>. SEAL_ID is above all of them, so once it is in a log every
# later XADD of an event is refused: the orphan's final event stays the last one.
SEAL_ID = "1-0"
# KEYS[1] the log; ARGV: the final's entry id, its data, the TTL. Atomic: either the final
# takes the next id and the log is sealed, or (that id was taken: the producer was alive
# after all, or another follower was first) nothing is written and 0 comes back.
END_ORPHAN_SCRIPT = """
local added = redis.pcall('XADD', KEYS[1], ARGV[1], 'd', ARGV[2])
if type(added) == 'table' and added.err then return 0 end
redis.call('XADD', KEYS[1], '1-0', 'seal', '1')
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


# (message_id, text in the log) -> the final event data, after storing the text.
OrphanHandler = Callable[[str, str], Awaitable[dict[str, Any]]]
StopHandler = Callable[[str], None]


class RedisEventLog:
    def __init__(
        self,
        redis: ProcessRedis,
        *,
        retention: float,
        stale_after: float,
        on_orphan: OrphanHandler,
        timeout: float,
        max_bytes: int = 0,
    ) -> None:
        self.redis = redis
        # Producers and readers of this process work on a local copy; Redis carries it to
        # the others. The copy keeps the memory budget of an in-memory log.
        self.local = MemoryEventLog(retention=retention, max_bytes=max_bytes)
        self.retention = retention
        self.stale_after = stale_after
        self.on_orphan = on_orphan
        self.on_stop: StopHandler | None = None
        self._timeout = timeout
        self._produced: set[str] = set()
        self._mirrors: dict[str, float] = {}  # followed from elsewhere -> last event (loop time)
        self._pending: dict[str, list[ChatEvent]] = {}
        self._wake_flusher: asyncio.Event | None = None
        self._wake_follower: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: aredis.Redis | None = None
        self._writing = False
        self._closing = False

    # --- the EventLog interface ------------------------------------------------------

    async def aopen(self, message_id: str) -> None:
        self._start_background()
        await self.local.aopen(message_id)
        self._produced.add(message_id)
        with contextlib.suppress(RedisUnavailable):
            await self.redis.acall(
                lambda r: r.set(live_key(message_id), os.getpid(), px=self._live_ms)
            )

    async def aappend(self, message_id: str, data: dict[str, Any]) -> ChatEvent:
        event = await self.local.aappend(message_id, data)
        if message_id in self._produced:
            self._pending.setdefault(message_id, []).append(event)
            if event.is_final:
                self._produced.discard(message_id)
            assert self._wake_flusher is not None
            self._wake_flusher.set()
        return event

    async def aread_after(self, message_id: str, after_id: int, timeout: float) -> list[ChatEvent]:
        if not await self.local.ahas(message_id):
            await self._mirror(message_id)
        return await self.local.aread_after(message_id, after_id, timeout)

    async def ahas(self, message_id: str) -> bool:
        if await self.local.ahas(message_id):
            return True
        try:
            return bool(await self.redis.acall(lambda r: r.exists(log_key(message_id))))
        except RedisUnavailable:
            return False

    async def ahas_room(self) -> bool:
        return await self.local.ahas_room()

    # --- stop across processes -------------------------------------------------------

    async def asignal_stop(self, message_id: str) -> None:
        """Ask whichever process generates the message to stop it now."""
        with contextlib.suppress(RedisUnavailable):
            await self.redis.acall(lambda r: r.publish(STOP_CHANNEL, message_id))

    # --- background tasks ------------------------------------------------------------

    @property
    def _live_ms(self) -> int:
        return max(1, int(self.stale_after * 1000))

    def _start_background(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        self._closing = False
        self._wake_flusher, self._wake_follower = asyncio.Event(), asyncio.Event()
        # A blocking XREAD (and the stop subscription) needs a longer socket timeout.
        self._reader = make_client(
            settings.REDIS_URL, self._timeout, extra_timeout=FOLLOW_BLOCK_SECONDS + 1
        )
        for coro in (self._flusher(), self._heartbeat(), self._follower(), self._stops()):
            self._tasks.append(loop.create_task(coro))

    async def aclose(self, flush_timeout: float = 2.0) -> None:
        """At shutdown: let the last events (the finals of a drain) reach Redis, then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + flush_timeout
        while (self._pending or self._writing) and self._tasks and loop.time() < deadline:
            await asyncio.sleep(0.01)
        self._closing = True
        pending = set(self._tasks)
        for _ in range(CLOSE_ATTEMPTS):
            if not pending:
                break
            # A cancel can be lost: redis-py's pub/sub read converts a cancellation that
            # races its own read timeout into "no message" (seen with redis 8.1 on Python
            # 3.11), and the loop would read again forever. So cancel again, and the loops
            # also stop at `_closing`, at the latest after one read timeout.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=CLOSE_WAIT_SECONDS)
        for task in self._tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved, so asyncio does not log it as lost
        if pending:
            logger.warning("%d Redis event log task(s) did not stop", len(pending))
        self._tasks.clear()
        self._loop = None

    async def _flusher(self) -> None:
        """One pipeline per tick for everything appended meanwhile, in order."""
        assert self._wake_flusher is not None
        while True:
            await self._wake_flusher.wait()
            self._wake_flusher.clear()
            await asyncio.sleep(0)  # let the rest of this tick's appends join the batch
            batch, self._pending = self._pending, {}
            if not batch or not self.redis.outage.should_try():
                continue  # during an outage the events stay in this process only
            # The message each XADD of the pipeline belongs to (None: other commands).
            owners: list[str | None] = []

            def write(
                r: aredis.Redis,
                batch: dict[str, list[ChatEvent]] = batch,
                owners: list[str | None] = owners,
            ) -> Any:
                pipe = r.pipeline(transaction=False)
                owners.clear()  # in case the call is tried again
                for message_id, events in batch.items():
                    key = log_key(message_id)
                    for event in events:
                        pipe.xadd(key, {"d": json.dumps(event.data)}, id=_entry_id(event.id))
                        owners.append(message_id)
                    pipe.expire(key, int(self.retention) + 1)
                    owners.append(None)
                    if events[-1].is_final:
                        pipe.delete(live_key(message_id))
                        owners.append(None)
                # A refused id must not fail the other messages' writes.
                return pipe.execute(raise_on_error=False)

            self._writing = True
            try:
                results = await self.redis.acall(write)
            except RedisUnavailable:
                results = []
            finally:
                self._writing = False
            refused = {
                owner
                for owner, result in zip(owners, results, strict=False)
                if owner is not None and isinstance(result, ResponseError)
            }
            for message_id in refused:
                self._superseded(message_id)

    def _superseded(self, message_id: str) -> None:
        """An event id of ours was refused: a follower elsewhere took this generation for
        dead and ended (and sealed) its log. Its ending stands (the database says the same,
        see persistence); this process stops writing the message to Redis and stops keeping
        it alive there. Readers here still get every event from memory."""
        logger.warning("message=%s was ended by another process; no more writes", message_id)
        self._produced.discard(message_id)
        self._pending.pop(message_id, None)

    async def _heartbeat(self) -> None:
        """Keeps every generation of this process alive in Redis, one pipeline a beat."""
        interval = max(0.2, min(self.stale_after / 3, 10.0))
        while True:
            await asyncio.sleep(interval)
            produced = list(self._produced)
            if not produced or not self.redis.outage.should_try():
                continue

            def beat(r: aredis.Redis, produced: list[str] = produced) -> Any:
                pipe = r.pipeline(transaction=False)
                for message_id in produced:
                    pipe.set(live_key(message_id), os.getpid(), px=self._live_ms)
                return pipe.execute()

            with contextlib.suppress(RedisUnavailable):
                await self.redis.acall(beat)

    async def _mirror(self, message_id: str) -> None:
        """Start following a message generated elsewhere (its events so far at once)."""
        self._start_background()
        await self.local.aopen(message_id)
        loop = asyncio.get_running_loop()
        self._mirrors[message_id] = loop.time()
        with contextlib.suppress(RedisUnavailable):
            entries = await self.redis.acall(lambda r: r.xrange(log_key(message_id)))
            await self._copy(message_id, cast(RawEntries, entries))
        assert self._wake_follower is not None
        self._wake_follower.set()

    async def _copy(self, message_id: str, entries: RawEntries) -> None:
        """Copy entries into memory in order; ones already copied are skipped."""
        stream_events = self.local.events_of(message_id)
        have = len(stream_events)
        if stream_events and stream_events[-1].is_final:
            self._mirrors.pop(message_id, None)
            return
        for entry_id, fields in entries:
            number = int(entry_id.split(b"-")[1])
            if number != have + 1:
                continue
            data = json.loads(fields[b"d"])
            # MemoryEventLog numbers from 1 in order, so the ids match the producer's.
            await self.local.aappend(message_id, data)
            have += 1
            if self._loop is not None:
                self._mirrors[message_id] = self._loop.time()
            if data["type"] in ("done", "error"):
                self._mirrors.pop(message_id, None)
                return

    async def _follower(self) -> None:
        """One XREAD for every message this process follows from elsewhere."""
        assert self._wake_follower is not None and self._reader is not None
        loop = asyncio.get_running_loop()
        last_check = loop.time()
        while not self._closing:  # see aclose: a cancel during a blocking read can be lost
            if not self._mirrors:
                self._wake_follower.clear()
                await self._wake_follower.wait()
                continue
            if not self.redis.outage.should_try():
                await asyncio.sleep(FOLLOW_BLOCK_SECONDS)
                await self._end_mirrors_after_long_outage()
                continue
            streams: dict[KeyT, StreamIdT] = {
                log_key(m): _entry_id(len(self.local.events_of(m))) for m in self._mirrors
            }
            try:
                result = cast(
                    RawStreams | None,
                    await self._reader.xread(
                        streams, count=1000, block=int(FOLLOW_BLOCK_SECONDS * 1000)
                    ),
                )
                self.redis.outage.succeeded()
            except REDIS_ERRORS as exc:
                self.redis.outage.failed(exc)
                continue
            for key, entries in result or []:
                message_id = key.decode().removeprefix("c3:log:")
                if message_id in self._mirrors:
                    await self._copy(message_id, entries)
            now = loop.time()
            if now - last_check >= LIVENESS_CHECK_SECONDS:
                last_check = now
                await self._check_producers(now)

    async def _check_producers(self, now: float) -> None:
        quiet = [m for m, at in self._mirrors.items() if now - at >= LIVENESS_CHECK_SECONDS]
        if not quiet:
            return
        try:
            alive = await self._alive_many(quiet)
        except RedisUnavailable:
            return
        for message_id, is_alive in zip(quiet, alive, strict=True):
            if not is_alive and message_id in self._mirrors:
                await self._end_orphan(message_id)

    async def _alive_many(self, message_ids: list[str]) -> list[bool]:
        def check(r: aredis.Redis) -> Any:
            pipe = r.pipeline(transaction=False)
            for message_id in message_ids:
                pipe.exists(live_key(message_id))
            return pipe.execute()

        return [bool(n) for n in await self.redis.acall(check)]

    async def _end_orphan(self, message_id: str) -> None:
        """The producer is gone without a final event: store what the log holds and end it
        (once: the final entry's id can only be written by one process)."""
        with contextlib.suppress(RedisUnavailable):
            entries = await self.redis.acall(lambda r: r.xrange(log_key(message_id)))
            await self._copy(message_id, cast(RawEntries, entries))
        if message_id not in self._mirrors:
            return  # it did end meanwhile
        events = self.local.events_of(message_id)
        text = "".join(e.data["content"] for e in events if e.type == "content")
        logger.warning("no live producer for message=%s: ending it interrupted", message_id)
        final = await self.on_orphan(message_id, text)
        next_id = len(events) + 1
        try:
            written = await self.redis.acall(
                lambda r: r.eval(
                    END_ORPHAN_SCRIPT,
                    1,
                    log_key(message_id),
                    _entry_id(next_id),
                    json.dumps(final),
                    int(self.retention) + 1,
                )
            )
        except RedisUnavailable:
            written = True  # readers here still get the final event
        if not written:
            return  # another process (or a late producer) wrote that id: follow it instead
        await self._copy(
            message_id, [(_entry_id(next_id).encode(), {b"d": json.dumps(final).encode()})]
        )

    async def _end_mirrors_after_long_outage(self) -> None:
        """Followers of other processes' messages must not wait forever on a dead Redis:
        after STREAM_STALE_AFTER_SECONDS of outage they get a final event telling the
        client to resume (which then reads the stored text from the database)."""
        down_since = self.redis.outage.down_since
        if down_since is None or time.monotonic() - down_since < self.stale_after:
            return
        for message_id in list(self._mirrors):
            self._mirrors.pop(message_id, None)
            await self.local.aappend(
                message_id,
                error_data(
                    "server_restarting",
                    "接続が切れました。再開すると続きを読み込みます。",
                    message_id,
                ),
            )

    async def _stops(self) -> None:
        """Obey stops published by other processes for generations running here."""
        assert self._reader is not None
        while not self._closing:
            if not self.redis.outage.should_try():
                await asyncio.sleep(1)
                continue
            pubsub = self._reader.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(STOP_CHANNEL)
                while not self._closing:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    message_id = message["data"].decode()
                    if self.on_stop is not None:
                        self.on_stop(message_id)
            except REDIS_ERRORS as exc:
                self.redis.outage.failed(exc)
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(BaseException):
                    await pubsub.aclose()
