"""Running sync ORM code from async code, the one way this project does it.

Database work runs on a small pool of threads (STREAM_DB_THREADS) owned by this module,
never on the event loop thread. Each thread keeps its own Django connection between units
of work (CONN_MAX_AGE), so a unit costs its queries and nothing more:

- not Django's one thread-sensitive `sync_to_async` thread, where every start, save and
  final write of every stream queued behind each other (a burst of starts waited seconds);
- not a health-check `SELECT 1` per unit: a connection is checked (CONN_HEALTH_CHECKS)
  only after it sat idle for HEALTH_CHECK_IDLE_SECONDS, when a server restart or an idle
  timeout may have closed it; one used a moment ago is trusted, as within one request.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import connections

from . import pg

P = ParamSpec("P")
R = TypeVar("R")

# A connection idle longer than this is health-checked before its next query.
HEALTH_CHECK_IDLE_SECONDS = 1.0

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None
_last_used = threading.local()
_executor_threads: dict[ThreadPoolExecutor, int] = {}


def threads_for(engines: list[str], configured: int) -> int:
    """`configured` threads, but one for SQLite: it has one writer anyway, and its
    shared-cache in-memory test database fails a second concurrent writer at once instead
    of waiting."""
    if any(engine.endswith("sqlite3") for engine in engines):
        return 1
    return max(1, configured)


def db_thread_count() -> int:
    engines = [database["ENGINE"] for database in settings.DATABASES.values()]
    return threads_for(engines, settings.STREAM_DB_THREADS)


def db_executor() -> ThreadPoolExecutor:
    """This process's database threads (made on first use, again after a fork: a forked
    worker has none of its parent's threads)."""
    global _executor, _executor_pid
    pid = os.getpid()
    if _executor is None or _executor_pid != pid:
        with _lock:
            if _executor is None or _executor_pid != pid:
                count = db_thread_count()
                _executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="c3-db")
                _executor_threads[_executor] = count
                _executor_pid = pid
    return _executor


def close_db_threads() -> None:
    """Close every database thread's connections and retire the threads; the next unit of
    work makes a fresh pool. For code that changes the database under a running process
    (the unit tests that move a module from SQLite to PostgreSQL and back): a kept
    connection lives in its thread, out of reach of the thread that changed the settings."""
    global _executor, _executor_pid
    pg.close_all_pools()  # the event loops' connections, made from the same settings
    with _lock:
        executor, made_in = _executor, _executor_pid
        _executor, _executor_pid = None, None
    if executor is None:
        return
    count = _executor_threads.pop(executor)
    if made_in != os.getpid():
        return  # made before a fork: its threads do not exist in this process
    barrier = threading.Barrier(count)

    def close_here() -> None:
        barrier.wait(timeout=30)  # holds each thread until all have one: one task per thread
        connections.close_all()

    for future in [executor.submit(close_here) for _ in range(count)]:
        future.result()
    executor.shutdown(wait=True)


def _before_unit() -> None:
    """Like Django's close_old_connections at a request's start, but only for a connection
    that sat idle: that one is dropped if obsolete (CONN_MAX_AGE) and otherwise
    health-checked on its next query."""
    now = time.monotonic()
    if now - getattr(_last_used, "at", float("-inf")) > HEALTH_CHECK_IDLE_SECONDS:
        for conn in connections.all(initialized_only=True):
            conn.close_if_unusable_or_obsolete()
    _last_used.at = now


def _after_unit() -> None:
    """Like close_old_connections at a request's end, without dropping a healthy kept
    connection: only one with errors, a changed autocommit (an unfinished transaction) or
    past CONN_MAX_AGE (0: after every unit, Django's default and SQLite's here) is handled
    by Django's own check."""
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        if (
            conn.errors_occurred
            or conn.get_autocommit() != conn.settings_dict["AUTOCOMMIT"]
            or (conn.close_at is not None and now >= conn.close_at)
        ):
            conn.close_if_unusable_or_obsolete()
    _last_used.at = now


def db_task(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Wrap a sync function that touches the database so async code can await it.

    It runs on one of the database threads with the caller's context variables (the request
    id of log lines), as one unit of work; a caller cancelled meanwhile does not interrupt
    it (a transaction always ends in its thread).
    """

    @functools.wraps(func)
    def unit_of_work(*args: P.args, **kwargs: P.kwargs) -> R:
        _before_unit()
        try:
            return func(*args, **kwargs)
        finally:
            _after_unit()

    @functools.wraps(func)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        context = contextvars.copy_context()
        call = functools.partial(context.run, unit_of_work, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(db_executor(), call)

    return run
