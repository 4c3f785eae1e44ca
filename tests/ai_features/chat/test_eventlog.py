"""MemoryEventLog: ids, waiting, the final event, retention; and the property that a reader
which drops and resumes from its last id sees every event exactly once, in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from ai_features.chat import eventlog
from ai_features.chat.eventlog import MemoryEventLog, UnknownStream
from ai_features.chat.events import PING, ChatEvent, content_data, done_data, error_data
from ai_features.chat.service import ChatService
from tests.support.coalesced import assert_coalesced_from

MID = "message-1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(eventlog, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


async def opened(log: MemoryEventLog, message_id: str = MID) -> MemoryEventLog:
    await log.aopen(message_id)
    return log


async def finish(log: MemoryEventLog, message_id: str) -> ChatEvent:
    return await log.aappend(message_id, done_data(message_id, "stop", None))


# --- examples ------------------------------------------------------------------------------


async def test_ids_are_one_based_positions() -> None:
    log = await opened(MemoryEventLog())
    events = [await log.aappend(MID, content_data(str(i))) for i in range(5)]

    assert [e.id for e in events] == [1, 2, 3, 4, 5]
    assert await log.aread_after(MID, 0, timeout=0) == events
    assert await log.aread_after(MID, 3, timeout=0) == events[3:]


async def test_append_before_open_is_refused() -> None:
    log = MemoryEventLog()
    with pytest.raises(UnknownStream):
        await log.aappend(MID, content_data("x"))
    with pytest.raises(UnknownStream):
        await log.aread_after(MID, 0, timeout=0)
    assert not await log.ahas(MID)


async def test_open_twice_keeps_the_events() -> None:
    log = await opened(MemoryEventLog())
    first = await log.aappend(MID, content_data("a"))
    await log.aopen(MID)

    assert await log.aread_after(MID, 0, timeout=0) == [first]


async def test_wait_times_out_with_no_events() -> None:
    log = await opened(MemoryEventLog())
    await log.aappend(MID, content_data("a"))

    assert await log.aread_after(MID, 1, timeout=0.01) == []


async def test_waiting_readers_all_wake_on_append() -> None:
    log = await opened(MemoryEventLog())
    readers = [asyncio.create_task(log.aread_after(MID, 0, timeout=30)) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(r.done() for r in readers)

    event = await log.aappend(MID, content_data("a"))

    assert await asyncio.gather(*readers) == [[event]] * 3


async def test_each_reader_times_out_at_its_own_deadline() -> None:
    """One timer per stream serves every reader: a reader that began waiting later is
    not woken with the first one."""
    log = await opened(MemoryEventLog())
    first = asyncio.create_task(log.aread_after(MID, 0, timeout=0.3))
    await asyncio.sleep(0.15)
    later = asyncio.create_task(log.aread_after(MID, 0, timeout=0.3))
    async with asyncio.timeout(5):
        assert await first == []
        assert not later.done()
        assert await later == []


async def test_a_shorter_timeout_is_not_kept_waiting_by_a_longer_one() -> None:
    log = await opened(MemoryEventLog())
    patient = asyncio.create_task(log.aread_after(MID, 0, timeout=30))
    await asyncio.sleep(0)
    async with asyncio.timeout(5):  # not the 30 s the stream's timer was armed for
        assert await log.aread_after(MID, 0, timeout=0.05) == []
    assert not patient.done()

    event = await log.aappend(MID, content_data("a"))
    assert await patient == [event]


async def test_reads_and_appends_do_not_arm_a_timer_each() -> None:
    log = await opened(MemoryEventLog())
    reader = asyncio.create_task(log.aread_after(MID, 0, timeout=30))
    await asyncio.sleep(0)
    timer = log._streams[MID].timer
    assert timer is not None

    for after_id in range(20):
        await log.aappend(MID, content_data("a"))
        assert await reader != []
        reader = asyncio.create_task(log.aread_after(MID, after_id + 1, timeout=30))
        await asyncio.sleep(0)
        assert log._streams[MID].timer is timer
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert log._streams[MID].waiters == []


async def test_nothing_after_the_final_event() -> None:
    log = await opened(MemoryEventLog())
    await log.aappend(MID, content_data("a"))
    final = await log.aappend(MID, error_data("upstream_error", "oops", MID))

    with pytest.raises(RuntimeError):
        await log.aappend(MID, content_data("late"))
    assert (await log.aread_after(MID, 0, timeout=0))[-1] == final


async def test_reader_past_the_end_gets_the_final_event_again() -> None:
    log = await opened(MemoryEventLog())
    await log.aappend(MID, content_data("a"))
    final = await finish(log, MID)

    # At once, without waiting out the timeout: a finished stream has nothing to wait for.
    assert await log.aread_after(MID, 2, timeout=30) == [final]
    assert await log.aread_after(MID, 99, timeout=30) == [final]


async def test_logs_are_separate_per_message() -> None:
    log = MemoryEventLog()
    await log.aopen("a")
    await log.aopen("b")
    event_a = await log.aappend("a", content_data("for a"))
    await finish(log, "b")

    assert await log.aread_after("a", 0, timeout=0) == [event_a]
    assert [e.type for e in await log.aread_after("b", 0, timeout=0)] == ["done"]


async def test_finished_streams_expire_after_retention(clock: FakeClock) -> None:
    log = await opened(MemoryEventLog(retention=60))
    await finish(log, MID)

    clock.now += 59
    assert await log.ahas(MID)
    clock.now += 2
    assert not await log.ahas(MID)


async def test_unfinished_streams_never_expire(clock: FakeClock) -> None:
    log = await opened(MemoryEventLog(retention=60, max_finished=1))
    await log.aappend(MID, content_data("still going"))
    for i in range(3):
        await log.aopen(f"other-{i}")
        await finish(log, f"other-{i}")

    clock.now += 10_000
    assert await log.ahas(MID)


async def test_at_most_max_finished_kept_oldest_finish_dropped_first(clock: FakeClock) -> None:
    log = MemoryEventLog(retention=1e9, max_finished=2)
    for name in ("a", "b", "c"):
        await log.aopen(name)
    # Finished in another order than opened: it is the finish time that counts.
    for name in ("b", "c", "a"):
        clock.now += 1
        await finish(log, name)

    assert await log.ahas("c")
    assert await log.ahas("a")
    assert not await log.ahas("b")


# --- property: resumable readers -------------------------------------------------------------


@dataclass(eq=False)  # readers are distinct even when in the same state
class Reader:
    last_id: int = 0
    received: list[ChatEvent] = field(default_factory=list)
    saw_final: bool = False
    resumes: int = 0


class ResumableReaders(RuleBasedStateMachine):
    """One writer appends; readers read part of what is there, drop the rest of the batch
    ("disconnect"), and later resume from the last id they kept. Whatever the interleaving,
    each reader's events are the log's events from 1, each exactly once, in order."""

    readers = Bundle("readers")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.log = MemoryEventLog()
        self.written: list[ChatEvent] = []
        self.finished = False
        self.all_readers: list[Reader] = []

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    @initialize()
    def open_stream(self) -> None:
        self.run(self.log.aopen(MID))
        self.written.append(self.run(self.log.aappend(MID, {"type": "start", "content": ""})))

    @precondition(lambda self: not self.finished)
    @rule(text=st.text(max_size=3))
    def append(self, text: str) -> None:
        event = self.run(self.log.aappend(MID, content_data(text)))
        assert event.id == len(self.written) + 1
        self.written.append(event)

    @precondition(lambda self: not self.finished)
    @rule(error=st.booleans())
    def append_final(self, error: bool) -> None:
        data = error_data("upstream_error", "x", MID) if error else done_data(MID, "stop", None)
        self.written.append(self.run(self.log.aappend(MID, data)))
        self.finished = True

    @rule(target=readers)
    def connect(self) -> Reader:
        reader = Reader()
        self.all_readers.append(reader)
        return reader

    @rule(reader=readers, keep=st.integers(0, 5))
    def read_then_drop(self, reader: Reader, keep: int) -> None:
        """Read one batch, keep its first `keep` events, lose the rest, resume later."""
        batch = self.run(self.log.aread_after(MID, reader.last_id, timeout=0))
        if reader.saw_final:
            # Already at the end: the final event again, and nothing else.
            assert batch == [self.written[-1]]
            return
        assert [e.id for e in batch] == list(
            range(reader.last_id + 1, reader.last_id + 1 + len(batch))
        )
        for event in batch[:keep]:
            reader.received.append(event)
            reader.last_id = event.id
            if event.is_final:
                reader.saw_final = True
                break
        reader.resumes += 1

    @rule(reader=consumes(readers))
    def leave_for_good(self, reader: Reader) -> None:
        self.all_readers.remove(reader)

    @invariant()
    def readers_hold_an_exact_prefix(self) -> None:
        for reader in self.all_readers:
            assert reader.received == self.written[: len(reader.received)]

    def teardown(self) -> None:
        try:
            if not self.finished:
                self.append_final(error=False)
            for reader in self.all_readers:
                # Resume until the end, a few events at a time.
                while not reader.saw_final:
                    self.read_then_drop(reader, keep=2)
                assert reader.received == self.written
                assert reader.received[-1].is_final
                assert sum(e.is_final for e in reader.received) == 1
        finally:
            self.loop.close()


ResumableReaders.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestResumableReaders = ResumableReaders.TestCase


@settings(max_examples=60, deadline=None)
@given(
    tokens=st.lists(st.text(min_size=1, max_size=3), max_size=25),
    writer_pauses=st.lists(st.integers(0, 3), min_size=25, max_size=25),
    drop_points=st.lists(st.lists(st.integers(1, 6), max_size=6), min_size=1, max_size=4),
)
def test_concurrent_followers_resume_without_loss_or_duplicates(
    tokens: list[str], writer_pauses: list[int], drop_points: list[list[int]]
) -> None:
    """Real tasks and real waiting: followers use ChatService.afollow, drop the connection
    after some events (aclose, as a server does when the client goes) and follow again
    from the last id they got, while the writer is still appending."""

    async def scenario() -> None:
        log = MemoryEventLog()
        service = ChatService(event_log=log, heartbeat=0.01)
        await log.aopen(MID)
        written: list[ChatEvent] = [await log.aappend(MID, {"type": "start", "content": ""})]

        async def writer() -> None:
            for token, pause in zip(tokens, writer_pauses, strict=False):
                for _ in range(pause):
                    await asyncio.sleep(0)
                written.append(await log.aappend(MID, content_data(token)))
            written.append(await finish(log, MID))

        async def follower(drops: list[int]) -> list[ChatEvent]:
            received: list[ChatEvent] = []
            plan = list(drops)
            last_id = 0
            while not (received and received[-1].is_final):
                budget = plan.pop(0) if plan else 10_000
                events = service.afollow(MID, after_id=last_id)
                try:
                    async for item in events:
                        if item is PING:
                            continue
                        assert isinstance(item, ChatEvent)
                        received.append(item)
                        last_id = item.id
                        budget -= 1
                        if budget == 0:
                            break
                finally:
                    await events.aclose()
            return received

        results = await asyncio.wait_for(
            asyncio.gather(writer(), *(follower(d) for d in drop_points)), timeout=30
        )
        for received in results[1:]:
            # Whatever a follower found waiting came as one event per run of content.
            assert_coalesced_from(received, written)

    asyncio.run(scenario())


# --- property: retention bounds --------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.integers(0, 7)),
        st.tuples(st.just("finish"), st.integers(0, 7)),
        st.tuples(st.just("tick"), st.floats(0, 40)),
        st.tuples(st.just("has"), st.integers(0, 7)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=operations, max_finished=st.integers(1, 4))
def test_purge_keeps_live_streams_and_bounds_finished_ones(
    ops: list[tuple[str, float]], max_finished: int
) -> None:
    retention = 50.0
    clock = FakeClock()
    original_time = eventlog.time
    eventlog.time = SimpleNamespace(monotonic=clock.monotonic)  # type: ignore[assignment]
    try:
        asyncio.run(_run_retention(ops, max_finished, retention, clock))
    finally:
        eventlog.time = original_time  # type: ignore[assignment]


async def _run_retention(
    ops: list[tuple[str, float]], max_finished: int, retention: float, clock: FakeClock
) -> None:
    log = MemoryEventLog(retention=retention, max_finished=max_finished)
    live: set[str] = set()
    finished: list[tuple[str, float]] = []  # (name, finished at), in finishing order
    for op, arg in ops:
        if op == "tick":
            clock.now += arg
            continue
        name = f"m{int(arg)}"
        if op == "finish":
            if name in live:
                await finish(log, name)
                live.discard(name)
                finished.append((name, clock.now))
            continue
        # open and has purge first: what must remain is every live stream and the newest
        # `max_finished` of the finished streams still within retention.
        fresh = [(n, t) for n, t in finished if clock.now - t <= retention]
        finished = fresh[len(fresh) - max_finished :] if len(fresh) > max_finished else fresh
        if op == "open":
            await log.aopen(name)
            if name not in {n for n, _ in finished}:
                live.add(name)
        else:
            await log.ahas(name)
        for n in live:
            assert await _state(log, n) == "live", f"live stream {n} was purged"
        kept = {n for n, _ in finished}
        for n in {f"m{i}" for i in range(8)} - live:
            assert await _state(log, n) == ("finished" if n in kept else "absent"), n
        assert len(kept) <= max_finished


async def _state(log: MemoryEventLog, name: str) -> str:
    # wait() looks without purging (has() would purge and change what is measured).
    try:
        events = await log.aread_after(name, 0, timeout=0)
    except UnknownStream:
        return "absent"
    return "finished" if events and events[-1].is_final else "live"


# --- memory: compaction and the byte budget (issue 8, item 7) --------------------------------


def _text(events: list[ChatEvent]) -> str:
    return "".join(e.data["content"] for e in events if e.type == "content")


@settings(max_examples=100, deadline=None)
@given(tokens=st.lists(st.text(max_size=4), min_size=2, max_size=30), error=st.booleans())
def test_a_compacted_answer_resumes_exactly_from_any_old_id(tokens: list[str], error: bool):
    async def scenario() -> None:
        log = MemoryEventLog()
        await log.aopen(MID)
        written = [await log.aappend(MID, {"type": "start", "content": ""})]
        written += [await log.aappend(MID, content_data(t)) for t in tokens]
        final = error_data("upstream_error", "x", MID) if error else done_data(MID, "stop", None)
        written.append(await log.aappend(MID, final))
        before = log.size
        await log.aopen("next")  # a new stream compacts the finished ones

        assert log.size < before
        for k in range(len(written) + 2):
            rest = await log.aread_after(MID, k, timeout=0)
            assert len(rest) <= 3
            ids = [e.id for e in rest]
            assert ids == sorted(set(ids)) and all(i > k for i in ids[:-1])
            assert rest[-1] == written[-1]
            # What a reader had up to id k, plus the rest, is the whole answer, once.
            assert _text(written[: min(k, len(written))]) + _text(rest) == "".join(tokens)
            if k == 0:
                assert rest[0] == written[0]

    asyncio.run(scenario())


async def test_finished_logs_are_dropped_oldest_first_to_make_room() -> None:
    # Room for one compacted answer (three events), not for two.
    log = MemoryEventLog(max_bytes=5 * eventlog.EVENT_OVERHEAD_BYTES)
    for name in ("old", "newer"):
        await log.aopen(name)
        await log.aappend(name, {"type": "start", "content": ""})
        for _ in range(6):
            await log.aappend(name, content_data("x" * 10))
        await finish(log, name)
    assert log.size >= log.max_bytes

    assert await log.ahas_room()
    assert log.size < log.max_bytes
    assert await log.ahas("newer")
    assert not await log.ahas("old")


async def test_live_logs_over_the_budget_refuse_new_streams() -> None:
    log = MemoryEventLog(max_bytes=10 * eventlog.EVENT_OVERHEAD_BYTES)
    await log.aopen(MID)
    for _ in range(12):
        await log.aappend(MID, content_data("still going"))

    assert not await log.ahas_room()
    assert await log.ahas(MID)  # a live answer is never dropped
    await finish(log, MID)
    assert await log.ahas_room()


async def test_no_budget_means_always_room() -> None:
    log = await opened(MemoryEventLog(max_bytes=0))
    for _ in range(100):
        await log.aappend(MID, content_data("x" * 1000))
    assert await log.ahas_room()


budget_ops = st.lists(
    st.tuples(
        st.sampled_from(["open", "token", "token", "finish", "has_room", "tick"]),
        st.integers(0, 2),
        st.text(max_size=6),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=budget_ops, budget=st.integers(0, 30))
def test_the_running_size_is_the_sum_of_the_streams_held(
    ops: list[tuple[str, int, str]], budget: int
) -> None:
    # The log keeps its size as a running total (a start no longer sums every stream):
    # after any mix of appends, compactions, evictions and expiries it is still the sum.
    clock = FakeClock()
    original_time = eventlog.time
    eventlog.time = SimpleNamespace(monotonic=clock.monotonic)  # type: ignore[assignment]

    async def scenario() -> None:
        log = MemoryEventLog(
            retention=30, max_finished=3, max_bytes=budget * eventlog.EVENT_OVERHEAD_BYTES
        )
        for op, number, text in ops:
            name = f"m{number}"
            held = name in log._streams and not log._streams[name].finished_at
            if op == "open" and name not in log._streams:
                await log.aopen(name)
                await log.aappend(name, {"type": "start", "content": ""})
            elif op == "token" and held:
                await log.aappend(name, content_data(text))
            elif op == "finish" and held:
                await finish(log, name)
            elif op == "has_room":
                await log.ahas_room()
            elif op == "tick":
                clock.now += number * 20
            assert log.size == sum(stream.size for stream in log._streams.values())

    try:
        asyncio.run(scenario())
    finally:
        eventlog.time = original_time  # type: ignore[assignment]
