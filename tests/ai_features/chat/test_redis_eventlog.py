"""The Redis event log against a real redis-server: two logs stand for two processes (they
share nothing but Redis)."""

from __future__ import annotations

import asyncio
import json

import pytest

from ai_features.chat.events import content_data, done_data, error_data, start_data
from ai_features.chat.redis_eventlog import (
    END_ORPHAN_SCRIPT,
    RedisEventLog,
    live_key,
    log_key,
)
from ai_features.redis_client import ProcessRedis

pytestmark = pytest.mark.redis


class Orphans:
    """Records what the log asks the service to store for a dead producer's message."""

    def __init__(self) -> None:
        self.stored: dict[str, str] = {}

    async def __call__(self, message_id: str, text: str) -> dict:
        self.stored[message_id] = text
        return error_data("interrupted", "interrupted", message_id)


@pytest.fixture
def make_log(settings, redis_url: str):
    # Generous: under a loaded machine a short timeout would read as an outage.
    settings.REDIS_TIMEOUT_SECONDS = 2.0
    settings.REDIS_RETRY_SECONDS = 0.5

    def make(stale_after: float = 5.0, orphans: Orphans | None = None) -> RedisEventLog:
        log = RedisEventLog(
            ProcessRedis(),
            retention=60,
            stale_after=stale_after,
            timeout=2.0,
            on_orphan=orphans or Orphans(),
        )
        return log

    return make


async def _close(*logs: RedisEventLog) -> None:
    for log in logs:
        await log.aclose()


async def read_until_final(log: RedisEventLog, message_id: str, after_id: int = 0) -> list:
    events = []
    for _ in range(200):
        batch = await log.aread_after(message_id, after_id, 0.1)
        for event in batch:
            events.append(event)
            after_id = event.id
            if event.is_final:
                return events
    raise AssertionError(f"no final event; got {[e.data for e in events]}")


async def test_another_process_follows_with_the_same_ids(make_log) -> None:
    producer, reader = make_log(), make_log()
    try:
        await producer.aopen("m1")
        await producer.aappend("m1", start_data("c1", "m1"))
        for word in ("one ", "two ", "three"):
            await producer.aappend("m1", content_data(word))
        assert await reader.ahas("m1")
        # A resume after event 2 gets exactly the rest, as the producer numbered it.
        follow = asyncio.create_task(read_until_final(reader, "m1", after_id=2))
        await asyncio.sleep(0.3)
        await producer.aappend("m1", content_data("!"))
        await producer.aappend("m1", done_data("m1", "stop", None))
        events = await asyncio.wait_for(follow, 10)
        assert [e.id for e in events] == [3, 4, 5, 6]
        assert [e.data.get("content") for e in events[:3]] == ["two ", "three", "!"]
        assert events[-1].type == "done"
        # The final event also ended the producer's liveness key.
        assert not await producer.redis.client.exists(live_key("m1"))
        assert await producer.redis.client.ttl(log_key("m1")) > 0
    finally:
        await _close(producer, reader)


async def test_a_dead_producer_is_noticed_and_its_logged_text_stored(make_log) -> None:
    orphans = Orphans()
    producer = make_log(stale_after=1.0)
    reader = make_log(stale_after=1.0, orphans=orphans)
    try:
        await producer.aopen("m2")
        await producer.aappend("m2", start_data("c1", "m2"))
        await producer.aappend("m2", content_data("half an "))
        await producer.aappend("m2", content_data("answer"))
        await asyncio.sleep(0.2)  # let the flusher write them
        await producer.aclose()  # the producer dies: no heartbeat, no final event
        events = await asyncio.wait_for(read_until_final(reader, "m2"), 15)
        assert events[-1].data["code"] == "interrupted"
        assert orphans.stored == {"m2": "half an answer"}
        # The final event is in Redis too, for every other reader.
        third = make_log(stale_after=1.0)
        replay = await asyncio.wait_for(read_until_final(third, "m2"), 5)
        assert [e.data for e in replay] == [e.data for e in events]
        await third.aclose()
    finally:
        await _close(producer, reader)


async def test_a_stop_reaches_the_producing_process(make_log) -> None:
    producer, other = make_log(), make_log()
    stopped: list[str] = []
    producer.on_stop = stopped.append
    try:
        await producer.aopen("m3")  # starts the producer's subscription
        await other.aopen("m-other")
        await asyncio.sleep(0.3)
        await other.asignal_stop("m3")
        for _ in range(50):
            if stopped:
                break
            await asyncio.sleep(0.02)
        assert stopped == ["m3"]
    finally:
        await _close(producer, other)


async def test_redis_down_keeps_the_local_log_working(make_log, redis_server) -> None:
    log = make_log()
    try:
        await log.aopen("m4")
        redis_server.stop()
        await log.aappend("m4", start_data("c1", "m4"))
        await log.aappend("m4", content_data("still here"))
        await log.aappend("m4", done_data("m4", "stop", None))
        events = await asyncio.wait_for(read_until_final(log, "m4"), 5)
        assert [e.type for e in events] == ["start", "content", "done"]
        assert not await log.ahas("never-seen")
    finally:
        await _close(log)
        redis_server.start()


async def _calls(log: RedisEventLog, *commands: str) -> int:
    """How many times redis-server ran these commands so far (all clients)."""
    stats = await log.redis.client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in commands)


async def test_many_readers_elsewhere_cost_no_redis_call_per_token_per_reader(make_log) -> None:
    """Twenty readers in another process follow one answer token by token: that process
    reads Redis with one XREAD loop for all of them, so its Redis calls grow with the
    producer's batches, never with readers × tokens."""
    producer, follower = make_log(), make_log()
    readers, tokens = 20, 40
    try:
        await producer.aopen("m5")
        await producer.aappend("m5", start_data("c1", "m5"))
        await asyncio.sleep(0.1)
        reads_before = await _calls(follower, "xread", "xrange", "xrevrange", "xlen")
        tasks = [asyncio.create_task(read_until_final(follower, "m5")) for _ in range(readers)]
        await asyncio.sleep(0.2)
        for index in range(tokens):
            await producer.aappend("m5", content_data(f"t{index} "))
            await asyncio.sleep(0.01)  # one batch (pipeline) per token: the worst case
        await producer.aappend("m5", done_data("m5", "stop", None))
        results = await asyncio.wait_for(asyncio.gather(*tasks), 15)
        expected = "".join(f"t{index} " for index in range(tokens))
        for events in results:
            assert [e.id for e in events] == list(range(1, tokens + 3))
            assert "".join(e.data.get("content", "") for e in events[1:-1]) == expected
        reads = await _calls(follower, "xread", "xrange", "xrevrange", "xlen") - reads_before
        # About one read per producer batch (plus the first catch-up and idle re-blocks);
        # a read per reader per token would be readers × tokens = 800.
        assert reads <= tokens + 20, reads
    finally:
        await _close(producer, follower)


async def _event_entries(log: RedisEventLog, message_id: str) -> list[dict]:
    """The events the Redis log holds for a message, in order (the seal is no event)."""
    entries = await log.redis.client.xrange(log_key(message_id))
    return [json.loads(fields[b"d"]) for _, fields in entries if b"d" in fields]


async def test_a_slow_producer_taken_for_dead_cannot_add_a_second_final(make_log) -> None:
    """The producer is alive but its `live` key lapsed (a stalled loop, a long Redis
    hiccup): a follower ends the message. What the producer sends afterwards must not land
    after that final event in Redis, and it stops writing the message there."""
    orphans = Orphans()
    producer = make_log(stale_after=30.0)  # its next heartbeat is seconds away
    follower = make_log(stale_after=1.0, orphans=orphans)
    try:
        await producer.aopen("m6")
        await producer.aappend("m6", start_data("c1", "m6"))
        await producer.aappend("m6", content_data("so far"))
        await asyncio.sleep(0.2)
        await producer.redis.client.delete(live_key("m6"))  # the lapse
        events = await asyncio.wait_for(read_until_final(follower, "m6"), 15)
        assert events[-1].data["code"] == "interrupted"
        assert orphans.stored == {"m6": "so far"}

        # The producer wakes up and carries on to its own ending.
        await producer.aappend("m6", content_data(" and more"))
        await producer.aappend("m6", done_data("m6", "stop", None))
        await asyncio.sleep(0.3)
        logged = await _event_entries(producer, "m6")
        assert [d["type"] for d in logged] == ["start", "content", "error"]
        assert "m6" not in producer._produced  # no more writes, no more heartbeats
        assert not await producer.redis.client.exists(live_key("m6"))
        # Any process that reads the log now gets the one ending.
        third = make_log()
        replay = await asyncio.wait_for(read_until_final(third, "m6"), 5)
        assert [e.data for e in replay] == [e.data for e in events]
        await third.aclose()
    finally:
        await _close(producer, follower)


async def test_an_orphan_ending_yields_to_an_event_that_took_its_id(make_log) -> None:
    """The other order: the producer's event lands between the follower's read and its
    write. The follower's final is not written (nor the seal), so the producer's own events,
    final included, go on landing."""
    producer = make_log()
    try:
        await producer.aopen("m7")
        await producer.aappend("m7", start_data("c1", "m7"))
        await producer.aappend("m7", content_data("x"))
        await asyncio.sleep(0.2)
        client = producer.redis.client
        final = json.dumps(error_data("interrupted", "interrupted", "m7"))
        # Event 2 exists: a follower that had read only event 1 tries to write event 2.
        taken = await client.eval(END_ORPHAN_SCRIPT, 1, log_key("m7"), "0-2", final, 60)
        assert taken == 0
        await producer.aappend("m7", done_data("m7", "stop", None))
        await asyncio.sleep(0.3)
        assert [d["type"] for d in await _event_entries(producer, "m7")] == [
            "start",
            "content",
            "done",
        ]
        assert "m7" not in producer._produced  # ended by its own final, as usual
    finally:
        await _close(producer)
