"""The WSGI fallback's bridge (ai_features/web/bridge.py): one real event-loop thread per
worker process that sync request threads hand coroutines to.

Each test gets its own CoreLoop (the module's `core_loop` is the worker's and stays
untouched) and stops its loop afterwards. No database: the loop's start-up repair is
refused by pytest-django's blocker and only logged, as a broken database would be."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from ai_features.chat.errors import ServerRestarting
from ai_features.chat.requests import ChatRequest
from ai_features.logging import request_id_var
from ai_features.web.bridge import CoreLoop

CALLER_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("caller_var", default="unset")


@pytest.fixture
def core() -> Iterator[CoreLoop]:
    core = CoreLoop()
    yield core
    loop = core._loop
    if loop is not None and not loop.is_closed():
        core.shutdown(timeout=5)
        loop.call_soon_threadsafe(loop.stop)


async def thread_name() -> str:
    await asyncio.sleep(0)
    return threading.current_thread().name


async def fail(message: str) -> None:
    await asyncio.sleep(0)
    raise LookupError(message)


async def current_request_id(pause: float = 0.0) -> str:
    await asyncio.sleep(pause)
    return request_id_var.get()


def test_a_coroutine_runs_on_the_one_core_loop_thread(core: CoreLoop) -> None:
    """run() returns the coroutine's result, computed on the loop thread, the same thread
    for every call."""
    first = core.run(thread_name())
    second = core.run(thread_name())

    assert first == second == "c3-core-loop"
    assert threading.current_thread().name != first
    assert core.run(asyncio.sleep(0, result=41)) == 41


def test_an_exception_reaches_the_caller_and_the_loop_goes_on(core: CoreLoop) -> None:
    """A coroutine's exception is raised in the sync caller with its type and text, and
    the loop still runs the next coroutine."""
    with pytest.raises(LookupError, match="no such thing"):
        core.run(fail("no such thing"))

    future = core.submit(fail("again"))
    assert isinstance(future.exception(timeout=5), LookupError)
    assert core.run(asyncio.sleep(0, result="still running")) == "still running"


def test_many_request_threads_share_the_loop_and_get_their_own_results(
    core: CoreLoop,
) -> None:
    """Concurrent callers each get their own coroutine's result, not a neighbour's."""
    results: dict[int, int] = {}

    async def square_later(n: int) -> int:
        await asyncio.sleep(0.01 * (n % 3))
        return n * n

    def request(n: int) -> None:
        results[n] = core.run(square_later(n))

    threads = [threading.Thread(target=request, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert results == {n: n * n for n in range(12)}


def test_the_request_id_follows_each_coroutine_and_nothing_else_does(core: CoreLoop) -> None:
    """The caller's request id is set in the coroutine's context (each caller its own,
    even interleaved); other context variables of the caller stay behind, and an id does
    not leak into a later call that has none."""
    seen: dict[str, str] = {}

    def request(request_id: str) -> None:
        request_id_var.set(request_id)
        seen[request_id] = core.run(current_request_id(pause=0.05))

    threads = [threading.Thread(target=request, args=(f"req-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {f"req-{n}": f"req-{n}" for n in range(4)}

    async def caller_var() -> str:
        return CALLER_VAR.get()

    def without_an_id() -> None:
        CALLER_VAR.set("from the request thread")
        seen["none"] = core.run(current_request_id())
        seen["caller_var"] = core.run(caller_var())

    thread = threading.Thread(target=without_an_id)
    thread.start()
    thread.join(10)
    assert seen["none"] == request_id_var.get() == "-"
    assert seen["caller_var"] == "unset"


def test_iterate_pulls_items_in_order_and_passes_errors_on(core: CoreLoop) -> None:
    """The sync iterator yields the async iterator's items in order; an exception raised
    by it reaches the sync reader after the items before it."""

    async def items() -> AsyncIterator[str]:
        for item in ("a", "b", "c"):
            await asyncio.sleep(0)
            yield item

    assert list(core.iterate(items())) == ["a", "b", "c"]

    async def failing() -> AsyncIterator[str]:
        yield "first"
        raise LookupError("upstream went away")

    got: list[str] = []
    with pytest.raises(LookupError, match="upstream went away"):
        got.extend(core.iterate(failing()))
    assert got == ["first"]


def test_closing_the_sync_iterator_closes_the_async_one_on_the_loop(core: CoreLoop) -> None:
    """A client gone (the WSGI server closes the generator) closes the reader: its
    `finally` runs, on the loop thread, and it yields nothing more."""
    closed_on: list[str] = []
    closed = threading.Event()
    produced: list[int] = []

    async def reader() -> AsyncIterator[int]:
        try:
            for n in range(100):
                produced.append(n)
                yield n
        finally:
            closed_on.append(threading.current_thread().name)
            closed.set()

    events = core.iterate(reader())
    assert [next(events), next(events)] == [0, 1]
    events.close()

    assert closed.wait(5)
    assert closed_on == ["c3-core-loop"]
    assert produced == [0, 1]


def test_begin_drain_before_any_stream_is_a_no_op(core: CoreLoop) -> None:
    """A worker that never served a fallback stream has no loop to drain: none is made."""
    core.begin_drain(5.0)
    core.shutdown()

    assert core._loop is None


@pytest.mark.parametrize(("grace", "expected"), [(7.5, 7.5), (-3.0, 0.0)])
def test_begin_drain_refuses_new_streams_with_the_grace_given(
    core: CoreLoop, grace: float, expected: float
) -> None:
    """After begin_drain the service stops accepting (a start is ServerRestarting) and
    its generations get `grace` seconds (never negative)."""
    service = core.service
    assert service.accepting is True

    core.begin_drain(grace)
    core.run(asyncio.sleep(0))  # the drain was scheduled before this, on the same loop

    assert service.accepting is False
    assert service.shutdown_grace == expected
    with pytest.raises(ServerRestarting):
        core.run(service.astart(1, request=ChatRequest(message="hello")))


def test_begin_drain_works_from_a_signal_handler(core: CoreLoop) -> None:
    """As gunicorn calls it: from a SIGTERM-like handler on the main thread."""
    service = core.service
    previous = signal.signal(signal.SIGUSR1, lambda *_: core.begin_drain(2.0))
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        core.run(asyncio.sleep(0.01))
    finally:
        signal.signal(signal.SIGUSR1, previous)

    assert (service.accepting, service.shutdown_grace) == (False, 2.0)


def test_a_forked_worker_gets_its_own_loop_and_leaves_the_parents_alone(
    core: CoreLoop,
) -> None:
    """A CoreLoop inherited over fork (another pid recorded) is not drained from the
    child, and the child's first call starts a new loop and service instead of using the
    parent's thread, which does not exist in a child."""
    parent_service = core.service
    parent_loop = core._loop
    assert parent_loop is not None
    core._pid = os.getpid() + 1  # as seen from a forked child

    core.begin_drain(1.0)
    assert parent_service.accepting is True

    assert core.run(asyncio.sleep(0, result="child")) == "child"
    assert core._loop is not parent_loop
    assert core.service is not parent_service
    parent_loop.call_soon_threadsafe(parent_loop.stop)


def test_a_failing_shutdown_is_logged_not_swallowed(
    core: CoreLoop, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """At process exit a failure cannot be handled any more, but it is logged (with its
    traceback), and the exit goes on."""
    service = core.service

    async def broken_shutdown() -> None:
        raise RuntimeError("the event log went away")

    monkeypatch.setattr(service, "ashutdown", broken_shutdown)
    with caplog.at_level("WARNING", logger="ai_features.web.bridge"):
        core.shutdown(timeout=5)

    [record] = [r for r in caplog.records if "core loop shutdown" in r.getMessage()]
    assert record.getMessage() == "core loop shutdown failed"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_a_shutdown_past_its_timeout_is_logged(
    core: CoreLoop, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    service = core.service
    release = asyncio.Event()

    async def slow_shutdown() -> None:
        await release.wait()

    monkeypatch.setattr(service, "ashutdown", slow_shutdown)
    with caplog.at_level("WARNING", logger="ai_features.web.bridge"):
        core.shutdown(timeout=0.05)
    assert core._loop is not None
    core._loop.call_soon_threadsafe(release.set)

    [record] = [r for r in caplog.records if "core loop shutdown" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert "did not finish within 0s" in record.getMessage()
