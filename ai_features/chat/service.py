"""The streaming core: one ChatService per process, called by both servers.

`astart` validates limits, stores the user's message and an empty assistant message, and
launches the generation as its own task. Responses only *read* the message's event log
(`afollow`, `aresume`), so a client that goes away never cancels the answer, and `astop` and
a shutdown end it cleanly with the text that had arrived.

Names follow Django's async API: whatever returns something to await or to `async for` is
`a`-prefixed (tests/ai_features/test_naming.py keeps it so).

Calling convention, here and in persistence.py: a public function or method takes at most
one argument by position, the one it acts on or for (the user for ChatService's entry
points, the message or conversation for persistence), and all others by keyword, so that
two ids or two strings cannot be swapped without notice. A callback keeps the signature of
the hook it is passed to (aend_orphaned_message: RedisEventLog's OrphanHandler).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from .. import metrics
from ..ids import new_hex
from ..models import Message
from ..providers import ChatProvider, ProviderError, get_provider
from ..redis_client import process_redis
from . import persistence, titles
from .errors import (
    ChatError,
    InternalError,
    NotFound,
    RateLimited,
    ServerBusy,
    ServerRestarting,
    TooManyStreams,
)
from .eventlog import EventLog, MemoryEventLog
from .events import (
    PING,
    ChatEvent,
    Ping,
    coalesce_content,
    content_data,
    done_data,
    error_data,
    start_data,
)
from .limits import RateLimit, StreamSlots
from .liveness import Liveness, new_liveness
from .persistence import MessageSnapshot, PreparedChat
from .requests import ChatRequest
from .text import TextNormalizer, clean_finish_reason, clean_usage

logger = logging.getLogger(__name__)

RESTARTING_MESSAGE = "サーバーが再起動しました。再開すると続きを読み込みます。"
INTERNAL_ERROR_MESSAGE = InternalError.default_message
INTERRUPTED_MESSAGE = "この回答はサーバーの再起動で中断されました。"


@dataclass(frozen=True, slots=True)
class Ending:
    """How a generation ended: what is stored on the message and, through `final_data`, the
    final event its readers get. One value for the four places that end a message (the
    token loop, a cancelled task, an answer ended elsewhere, an orphan found by a reader)."""

    status: str
    finish_reason: str
    error_code: str = ""
    usage: dict[str, int] | None = None
    message: str = ""  # the error event's text for the user (errors only)

    def final_data(self, message_id: str) -> dict[str, Any]:
        if self.status in (Message.Status.COMPLETE, Message.Status.STOPPED):
            return done_data(message_id, self.finish_reason, self.usage)
        return error_data(self.error_code, self.message, message_id)

    @classmethod
    def complete(cls, finish_reason: str, *, usage: dict[str, int] | None) -> Ending:
        return cls(Message.Status.COMPLETE, finish_reason, usage=usage)

    @classmethod
    def failed(cls, code: str, *, message: str) -> Ending:
        return cls(Message.Status.ERROR, "error", code, message=message)

    @classmethod
    def cancelled(cls, reason: str | None) -> Ending:
        """A stop is a `done`; anything else (a shutdown) an interrupted answer the client
        is told to resume."""
        if reason == "stopped":
            return cls(Message.Status.STOPPED, "stopped")
        return cls(
            Message.Status.INTERRUPTED,
            "interrupted",
            "server_restarting",
            message=RESTARTING_MESSAGE,
        )

    @classmethod
    def stored(cls, snapshot: MessageSnapshot) -> Ending:
        """The ending of a message that is no longer streaming, as its row tells it."""
        if snapshot.status in (Message.Status.COMPLETE, Message.Status.STOPPED):
            return cls(snapshot.status, snapshot.finish_reason or "stop", usage=snapshot.usage)
        if snapshot.status == Message.Status.INTERRUPTED:
            return cls(snapshot.status, "interrupted", "interrupted", message=INTERRUPTED_MESSAGE)
        code = snapshot.error_code or "upstream_error"
        message = ProviderError.MESSAGES.get(code, INTERNAL_ERROR_MESSAGE)
        return cls(snapshot.status, snapshot.finish_reason or "error", code, message=message)


# Ids of events replayed from the database start above this, so a resume can tell them from
# live-log ids (see aresume()).
REPLAY_ID_BASE = 1_000_000_000


class StoppedElsewhere(Exception):
    """The message stopped being `streaming` in the database while this process was
    generating it: a stop request that reached another process."""


@dataclass
class Generation:
    message_id: str
    user_id: int
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None and self.task is not None and not self.task.done():
            self.cancel_reason = reason
            self.task.cancel()


def make_event_log() -> EventLog:
    """The event log this process uses: in Redis when REDIS_URL is set, else in memory."""
    redis = process_redis()
    if redis is None:
        return MemoryEventLog(
            retention=settings.STREAM_EVENT_LOG_RETENTION_SECONDS,
            max_bytes=settings.STREAM_EVENT_LOG_MAX_BYTES,
        )
    from .redis_eventlog import RedisEventLog

    return RedisEventLog(
        redis,
        retention=settings.STREAM_EVENT_LOG_RETENTION_SECONDS,
        stale_after=settings.STREAM_STALE_AFTER_SECONDS,
        timeout=settings.REDIS_TIMEOUT_SECONDS,
        max_bytes=settings.STREAM_EVENT_LOG_MAX_BYTES,
        on_orphan=aend_orphaned_message,
    )


@dataclass
class ChatService:
    event_log: EventLog = field(default_factory=make_event_log)
    provider_factory: Callable[[], ChatProvider] = get_provider
    rate_limit: RateLimit = field(
        default_factory=lambda: RateLimit(settings.CHAT_RATE_LIMIT_PER_MINUTE)
    )
    max_concurrent: int = field(default_factory=lambda: settings.CHAT_MAX_CONCURRENT_STREAMS)
    max_readers: int = field(default_factory=lambda: settings.STREAM_MAX_READERS_PER_USER)
    # The same cap across processes (Redis); without Redis the count below is per process.
    slots: StreamSlots = field(
        default_factory=lambda: StreamSlots(settings.CHAT_MAX_CONCURRENT_STREAMS)
    )
    heartbeat: float = field(default_factory=lambda: settings.STREAM_HEARTBEAT_SECONDS)
    save_interval: float = field(default_factory=lambda: settings.CHAT_SAVE_INTERVAL_SECONDS)
    shutdown_grace: float = field(default_factory=lambda: settings.STREAM_SHUTDOWN_GRACE_SECONDS)
    # Heartbeats of this process's live generations (a dead process is noticed by them).
    liveness: Liveness = field(default_factory=new_liveness)
    generations: dict[str, Generation] = field(default_factory=dict)
    accepting: bool = True
    _reserved: Counter[int] = field(default_factory=Counter)
    _readers: Counter[int] = field(default_factory=Counter)
    _drain_task: asyncio.Task[None] | None = None
    _background: set[asyncio.Task[str | None]] = field(default_factory=set)  # auto titles

    def __post_init__(self) -> None:
        if hasattr(self.event_log, "on_stop"):
            # A stop published by another process for a generation of this one.
            self.event_log.on_stop = self._stop_here

    def _stop_here(self, message_id: str) -> None:
        generation = self.generations.get(message_id)
        if generation is not None:
            generation.cancel("stopped")

    # --- starting ------------------------------------------------------------------------

    async def astart(self, user_id: int, *, request: ChatRequest) -> PreparedChat:
        """Store the question, open the answer's event log and launch the generation.

        Raises a ChatError (with its HTTP status) for anything refused before streaming.
        """
        try:
            return await self._start(user_id, request)
        except ChatError as error:
            reason = "too_many_streams" if isinstance(error, TooManyStreams) else error.code
            metrics.REQUESTS_REFUSED.labels(reason).inc()
            raise

    async def _start(self, user_id: int, request: ChatRequest) -> PreparedChat:
        if not self.accepting:
            raise ServerRestarting()
        running = sum(1 for g in self.generations.values() if g.user_id == user_id)
        if self.max_concurrent > 0 and running + self._reserved[user_id] >= self.max_concurrent:
            raise TooManyStreams(retry_after=5)
        if not await self.event_log.ahas_room():
            # The event logs hold STREAM_EVENT_LOG_MAX_BYTES already (live answers only,
            # finished ones were compacted or dropped): refuse before storing anything.
            logger.warning("event log memory budget reached: new stream refused")
            raise ServerBusy(retry_after=10)
        # Reserve the slot before the first await, so parallel requests cannot all pass.
        self._reserved[user_id] += 1
        pending_slot = new_hex()
        slot_taken: bool | None = None
        bound = False
        try:
            slot_taken = await self.slots.atake(user_id, pending_slot)
            if slot_taken is False:
                raise TooManyStreams(retry_after=5)
            await self.rate_limit.ahit(user_id)
            provider = self.provider_factory()
            prepared = await persistence.aprepare_chat(
                user_id,
                request=request,
                model_for=provider.model_for,
                producer=self.liveness.producer,
            )
            message_id = prepared.assistant_message_id
            if not self.accepting:
                # A shutdown began while the rows were written: nobody would drain this
                # generation, so end it now; the question stays stored with its answer
                # marked interrupted.
                await persistence.afinish_message(
                    message_id,
                    content="",
                    status=Message.Status.INTERRUPTED,
                    finish_reason="interrupted",
                    error_code="server_restarting",
                )
                raise ServerRestarting()
            await self.event_log.aopen(message_id)
            if slot_taken:
                await self.slots.abind(user_id, pending_slot, message_id)
                bound = True
            await self.event_log.aappend(
                message_id,
                start_data(prepared.conversation_id, message_id, **prepared.start_fields()),
            )
            generation = Generation(message_id=message_id, user_id=user_id)
            self.generations[message_id] = generation
            metrics.STREAMS_ACTIVE.inc()
            generation.task = asyncio.create_task(
                self._generate(generation, provider, prepared), name=f"generate-{message_id}"
            )
            generation.task.add_done_callback(
                functools.partial(self._finalize_if_never_ran, generation)
            )
        finally:
            self._reserved[user_id] -= 1
            if slot_taken and not bound:
                await self.slots.arelease(user_id, pending_id=pending_slot)
        logger.info("chat started message=%s", message_id)
        return prepared

    # --- reading -------------------------------------------------------------------------

    def afollow(self, message_id: str, *, after_id: int = 0) -> AsyncIterator[ChatEvent | Ping]:
        """Events after `after_id` until the final one, with a ping whenever the log is
        quiet for `heartbeat` seconds (also while waiting for a slow first token)."""
        return self._follow(message_id, after_id)

    async def _follow(self, message_id: str, after_id: int) -> AsyncIterator[ChatEvent | Ping]:
        # What aended_by_a_final_event does for other readers, written in: this one runs
        # for every token of every live reader, and each generator layer costs.
        try:
            while True:
                events = await self.event_log.aread_after(message_id, after_id, self.heartbeat)
                if not events:
                    yield PING
                    continue
                # What piled up while this reader was away goes out as few events as possible.
                for event in coalesce_content(events):
                    yield event
                    after_id = event.id
                    if event.is_final:
                        return
        except Exception:
            yield reader_failure(after_id)

    async def aresume(
        self, user_id: int, *, message_id: str, after_id: int = 0
    ) -> AsyncIterator[ChatEvent | Ping]:
        """Owner only (NotFound otherwise). From the live log while it has the message,
        else from the database. At most `max_readers` at once per user (429 beyond)."""
        if self.max_readers > 0 and self._readers[user_id] >= self.max_readers:
            raise RateLimited("同時に開いている読み込みが多すぎます。", retry_after=5)
        snapshot = await persistence.aget_owned_assistant_message(user_id, message_id=message_id)
        if await self.event_log.ahas(snapshot.id):
            # An id from a database replay (another process answered before) says nothing
            # about this log: replay it all; its `start` resets the client's text.
            events = self.afollow(
                snapshot.id, after_id=0 if after_id >= REPLAY_ID_BASE else after_id
            )
        else:
            events = aended_by_a_final_event(self._replay_stored(snapshot, after_id))
        return CountedReader(events, counter=self._readers, user_id=user_id)

    async def _replay_stored(
        self, snapshot: MessageSnapshot, after_id: int
    ) -> AsyncIterator[ChatEvent | Ping]:
        """The stored text as one event after a `start` (which tells the client to reset);
        if another process is still writing it, follow the stored text until it ends."""
        # Replay ids live in their own range, so that a later resume can tell them apart
        # from the ids of a live log (which count from 1 in the generating process).
        next_id = max(after_id, REPLAY_ID_BASE) + 1

        def event(data: dict[str, Any]) -> ChatEvent:
            nonlocal next_id
            next_id += 1
            return ChatEvent(id=next_id - 1, data=data)

        yield event(start_data(snapshot.conversation_id, snapshot.id, **snapshot.start_fields()))
        sent = 0
        quiet = 0.0
        while True:
            if len(snapshot.content) > sent:
                yield event(content_data(snapshot.content[sent:]))
                sent = len(snapshot.content)
                quiet = 0.0
            if snapshot.status != Message.Status.STREAMING:
                yield event(final_data_for(snapshot))
                return
            poll = min(self.save_interval, self.heartbeat)
            await asyncio.sleep(poll)
            quiet += poll
            if quiet >= self.heartbeat:
                yield PING
                quiet = 0.0
            latest = await persistence.afind_message_snapshot(snapshot.id)
            if latest is None:  # deleted meanwhile (conversation or history cleared)
                yield event(error_data("not_found", NotFound.default_message, snapshot.id))
                return
            snapshot = latest

    # --- stopping ------------------------------------------------------------------------

    async def astop(self, user_id: int, *, message_id: str) -> MessageSnapshot:
        """Owner only. Cancels the generation if this process runs it; idempotent."""
        snapshot = await persistence.aget_owned_assistant_message(user_id, message_id=message_id)
        generation = self.generations.get(snapshot.id)
        if generation is not None and generation.task is not None:
            generation.cancel("stopped")
            await asyncio.wait({generation.task}, timeout=5)
        elif snapshot.status == Message.Status.STREAMING:
            # Generated by another process (the other service, or one that died): mark it
            # stopped in the database; a live generator sees that at its next save, or at
            # once when the stop reaches it through Redis.
            await persistence.amark_stopped(snapshot.id)
            asignal_stop = getattr(self.event_log, "asignal_stop", None)
            if asignal_stop is not None:
                await asignal_stop(snapshot.id)
        else:
            return snapshot
        latest = await persistence.afind_message_snapshot(snapshot.id)
        if latest is None:
            raise NotFound()
        return latest

    # --- the generation ------------------------------------------------------------------

    async def _generate(
        self, generation: Generation, provider: ChatProvider, prepared: PreparedChat
    ) -> None:
        """The generation task: relay the answer, store how it ended (whatever ended it)
        and send the final event; then, for a conversation's first answer, ask for a title."""
        message_id = generation.message_id
        # The text relayed so far, filled by _relay_tokens: stored however the answer ends.
        parts: list[str] = []
        try:
            # From now on the row shows a sign of life every few seconds, even while the
            # model sends nothing (and a stop from another process is noticed).
            await self.liveness.aregister(message_id, claimed=True)  # by aprepare_chat
            self.liveness.start(self._stopped_elsewhere)
            ending = await self._relay_tokens(message_id, provider, prepared, parts)
        except ProviderError as exc:
            metrics.UPSTREAM_ERRORS.labels(exc.code).inc()
            ending = Ending.failed(exc.code, message=exc.message)
        except StoppedElsewhere:
            ending = Ending.cancelled("stopped")
        except asyncio.CancelledError:
            ending = Ending.cancelled(generation.cancel_reason)
        except Exception:
            logger.exception("generation failed message=%s", message_id)
            ending = Ending.failed("internal_error", message=INTERNAL_ERROR_MESSAGE)
        # The final write and event must land even if another cancel arrives meanwhile.
        finalize = asyncio.ensure_future(self._finalize(message_id, "".join(parts), ending))
        try:
            await asyncio.shield(finalize)
        except asyncio.CancelledError:
            await finalize
        # The status stored, which is not ours when the answer was ended elsewhere first.
        if prepared.wants_title and finalize.result() == Message.Status.COMPLETE:
            # After the final event: a slow or failing title never touches the answer.
            task = asyncio.create_task(
                titles.agenerate_title(provider, prepared), name=f"title-{message_id}"
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _relay_tokens(
        self,
        message_id: str,
        provider: ChatProvider,
        prepared: PreparedChat,
        parts: list[str],
    ) -> Ending:
        """The token loop: each piece of the model's text goes to the event log as it comes
        and onto `parts`; the text so far is saved every `save_interval` seconds. Returns
        the ending of an answer the model completed; a provider error, a stop noticed at a
        save (StoppedElsewhere) or a cancellation propagates to _generate."""
        loop = asyncio.get_running_loop()
        text_len = saved_chars = 0
        # The model is asked now: the time to the first token counts from here.
        last_save = loop.time()
        finish_reason = "stop"
        usage: dict[str, int] | None = None
        last_text_at: float | None = None
        # Where the model's text enters: from here on readers and the database get the same,
        # storable text (see text.py).
        normalizer = TextNormalizer()
        async for delta in provider.astream(
            prepared.context, model=prepared.model, language=prepared.language
        ):
            text = normalizer.feed(delta.text) if isinstance(delta.text, str) else ""
            if text:
                now = loop.time()
                if last_text_at is None:
                    metrics.TIME_TO_FIRST_TOKEN.observe(now - last_save)
                else:
                    metrics.INTER_TOKEN_GAP.observe(now - last_text_at)
                last_text_at = now
                metrics.TOKENS_RELAYED.inc()
                parts.append(text)
                text_len += len(text)
                await self.event_log.aappend(message_id, content_data(text))
            if delta.finish_reason:
                finish_reason = clean_finish_reason(delta.finish_reason)
            if delta.usage is not None:
                usage = clean_usage(delta.usage.prompt_tokens, delta.usage.completion_tokens)
            # Partial text is saved seconds apart, never per token.
            now = loop.time()
            if now - last_save >= self.save_interval and text_len != saved_chars:
                if not await persistence.asave_partial(message_id, content="".join(parts)):
                    raise StoppedElsewhere()
                saved_chars, last_save = text_len, now
        if tail := normalizer.flush():  # a high surrogate that nothing completed
            parts.append(tail)
            await self.event_log.aappend(message_id, content_data(tail))
        return Ending.complete(finish_reason, usage=usage)

    def _stopped_elsewhere(self, message_id: str) -> None:
        generation = self.generations.get(message_id)
        if generation is not None:
            generation.cancel("stopped")

    def _finalize_if_never_ran(self, generation: Generation, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never enters _generate's handlers: end
        its message here, so that no reader waits forever and no slot stays taken."""
        if task.cancelled():
            ending = Ending.cancelled(generation.cancel_reason)
            task.get_loop().create_task(self._finalize(generation.message_id, "", ending))

    async def _finalize(self, message_id: str, text: str, ending: Ending) -> str:
        """Store the ending, send the final event, free the slot; returns the status that
        stands."""
        self.liveness.unregister(message_id)
        ended_elsewhere: MessageSnapshot | None = None
        try:
            ended_elsewhere = await persistence.afinish_message(
                message_id,
                content=text,
                status=ending.status,
                finish_reason=ending.finish_reason,
                error_code=ending.error_code,
                usage=ending.usage,
            )
        except Exception:
            # Metadata the database refused must not cost the answer: store the text on
            # its own. The client still gets its final event either way.
            logger.exception("could not store the final state of message=%s", message_id)
            try:
                await persistence.astore_text(
                    message_id, content=text, status=ending.status, error_code=ending.error_code
                )
            except Exception:
                logger.exception("could not store the text of message=%s", message_id)
        finally:
            if ended_elsewhere is not None:
                # The stale sweep or a reader of the Redis log took this generation for
                # dead and ended the message first (and counted it): its ending stands, and
                # readers here get the same final event as readers there.
                ending = Ending.stored(ended_elsewhere)
                logger.warning("message=%s was ended elsewhere as %s", message_id, ending.status)
            await self.event_log.aappend(message_id, ending.final_data(message_id))
            generation = self.generations.pop(message_id, None)
            if generation is not None:
                metrics.STREAMS_ACTIVE.dec()
                await self.slots.arelease(generation.user_id, message_id=message_id)
            if ended_elsewhere is None:
                metrics.STREAMS_TOTAL.labels(str(ending.status)).inc()
            logger.info("chat finished message=%s status=%s", message_id, ending.status)
        return str(ending.status)

    # --- shutdown ------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Refuse new streams; let running ones finish within the grace period."""
        if self._drain_task is None:
            self.accepting = False
            logger.info(
                "shutting down: %d generation(s) running, grace %.0fs",
                len(self.generations),
                self.shutdown_grace,
            )
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_grace
        # Starts already past the `accepting` check end on their own (see astart()); the
        # generations running now get the grace period to finish.
        tasks = {g.task for g in self.generations.values() if g.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=self.shutdown_grace)
        while sum(self._reserved.values()) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        remaining = list(self.generations.values())
        for generation in remaining:
            generation.cancel("interrupted")
        tasks = {g.task for g in remaining if g.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        # Titles still on their way are dropped: the cut-off question stays the title.
        for task in list(self._background):
            task.cancel()

    async def ashutdown(self) -> None:
        self.begin_shutdown()
        assert self._drain_task is not None
        await self._drain_task
        self.liveness.close()

        close_event_log = getattr(self.event_log, "aclose", None)
        if close_event_log is not None:
            await close_event_log()

    async def arecover(self) -> int:
        """At startup: end the answers left `streaming` by dead processes (those past the
        heartbeat window, and at once those of this instance's previous incarnation)."""
        repaired = await persistence.aexpire_stale_streaming()
        return repaired + await self.liveness.arepair_previous()


class CountedReader:
    """A reader that holds one of its user's reader slots until it ends, fails or is
    closed (a server closes it when the client goes away)."""

    def __init__(
        self, events: AsyncIterator[ChatEvent | Ping], *, counter: Counter[int], user_id: int
    ) -> None:
        self._events = events
        self._counter = counter
        self._user_id = user_id
        self._held = True
        counter[user_id] += 1

    def _release(self) -> None:
        if self._held:
            self._held = False
            self._counter[self._user_id] -= 1
            if self._counter[self._user_id] <= 0:
                del self._counter[self._user_id]

    def __aiter__(self) -> CountedReader:
        return self

    async def __anext__(self) -> ChatEvent | Ping:
        try:
            return await self._events.__anext__()
        except BaseException:  # the end, a failure or a cancellation: the slot is free
            self._release()
            raise

    async def aclose(self) -> None:
        self._release()
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()

    def __del__(self) -> None:  # a reader dropped without being closed
        self._release()


async def aended_by_a_final_event(
    events: AsyncIterator[ChatEvent | Ping],
) -> AsyncIterator[ChatEvent | Ping]:
    """The last line of the contract: a reader whose source fails unexpectedly (a database
    outage while following stored text, a bug) still gets a final `error` event."""
    last_id = 0
    try:
        async for item in events:
            if isinstance(item, ChatEvent):
                last_id = item.id
            yield item
    except Exception:
        yield reader_failure(last_id)


def reader_failure(last_id: int) -> ChatEvent:
    """The final event of a reader whose source failed after event `last_id` (logged here,
    with the exception being handled)."""
    logger.exception("stream reader failed")
    return ChatEvent(id=last_id + 1, data=error_data("internal_error", INTERNAL_ERROR_MESSAGE))


async def aend_orphaned_message(message_id: str, logged_text: str) -> dict[str, Any]:
    """A message whose producer died (found by a reader of the shared log): its stored text
    becomes the logged text, its status `interrupted`; returns the final event."""
    ending = await persistence.ainterrupt_orphan(message_id, logged_text=logged_text)
    if ending is None:
        return error_data("not_found", NotFound.default_message, message_id)
    return final_data_for(ending.snapshot)  # counted in metrics by ainterrupt_orphan, once


def final_data_for(snapshot: MessageSnapshot) -> dict[str, Any]:
    """The closing event for a message that is no longer streaming."""
    return Ending.stored(snapshot).final_data(snapshot.id)
