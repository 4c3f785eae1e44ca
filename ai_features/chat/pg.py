"""PostgreSQL straight from the event loop, for the few statements every stream costs.

A start, a partial save and an ending run here, on a handful of psycopg AsyncConnections
per event loop, instead of on the database threads (db.py): with the loop busy relaying
tokens, every statement a thread sends ends in a wait for the GIL, and those hand-offs cost
more CPU than the statements (a start's database CPU 2.2 → 9 ms with a busy loop, measured in
bench/README.md); here a statement is a socket write and a readiness callback on the loop.
Authentication's session and user rows are read here too, in the common case
(auth/session_on_loop.py). Everything else (the history API, rare paths) stays on Django's
ORM behind `db_task`, and so does everything on SQLite.

The pool is opened and closed by its loop's owner (the stream service's lifespan, a test)
with `open_pool()` and `close_pool()`; code on a loop without one uses the database
threads. Connections are made from Django's own settings for the default database
(`get_connection_params`: host, user, password, OPTIONS such as sslmode, prepared
statements off for connection poolers; then the isolation level and role), so both
paths reach the same database the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import psycopg.sql
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

R = TypeVar("R")

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = weakref.WeakKeyDictionary()


def _connection_params() -> dict[str, Any]:
    """psycopg.connect's arguments for Django's default database, as Django builds them."""
    params = connections["default"].get_connection_params()
    params.pop("cursor_factory", None)  # Django's sync cursor class; the async default here
    return params


async def _aset_up(connection: psycopg.AsyncConnection[Any], options: dict[str, Any]) -> None:
    """What Django does to a new connection from the same OPTIONS (get_new_connection):
    the isolation level and the role, when set."""
    if "isolation_level" in options:
        await connection.set_isolation_level(psycopg.IsolationLevel(options["isolation_level"]))
    if role := options.get("assume_role"):
        await connection.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Literal(role)))


def _readable(connection: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection has bytes waiting: a server that closed it (a restart,
    an idle timeout, pg_terminate_backend) sent its notice or EOF, which is nothing a
    healthy idle connection ever has. One zero-timeout poll, no round trip."""
    try:
        ready, _, _ = select.select([connection.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(ready)


class Pool:
    """At most `size` connections for one event loop, made on demand and kept while
    healthy; one past CONN_MAX_AGE is closed when given back (Django's setting, the same
    lifetime its own connections have)."""

    def __init__(self, *, size: int, max_age: float | None) -> None:
        self.size = size
        self.max_age = max_age
        self._params = _connection_params()
        self._options = dict(connections["default"].settings_dict["OPTIONS"])
        self._idle: list[tuple[psycopg.AsyncConnection[Any], float]] = []  # (connection, made)
        self._slots = asyncio.Semaphore(size)
        self._open: set[psycopg.AsyncConnection[Any]] = set()

    @contextlib.asynccontextmanager
    async def aconnection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection in autocommit mode (`connection.transaction()` for a transaction),
        given back after the block, or closed if the block failed: its state is unknown."""
        async with self._slots:
            connection, made = await self._atake()
            try:
                yield connection
            except BaseException:
                await self._aclose(connection)
                raise
            if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE or (
                self.max_age is not None and time.monotonic() - made >= self.max_age
            ):
                await self._aclose(connection)
            else:
                self._idle.append((connection, made))

    async def _atake(self) -> tuple[psycopg.AsyncConnection[Any], float]:
        while self._idle:
            connection, made = self._idle.pop()
            if not connection.closed and not _readable(connection):
                return connection, made
            await self._aclose(connection)
        connection = await psycopg.AsyncConnection.connect(autocommit=True, **self._params)
        self._open.add(connection)
        try:
            await _aset_up(connection, self._options)
        except BaseException:
            await self._aclose(connection)
            raise
        return connection, time.monotonic()

    async def _aclose(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._open.discard(connection)
        try:
            await connection.close()
        except Exception:  # closing a broken connection may fail; it is gone either way
            logger.debug("closing a database connection failed", exc_info=True)

    def close(self) -> None:
        """Close every connection now, from any thread (libpq's PQfinish is synchronous)."""
        for connection in list(self._open):
            with contextlib.suppress(Exception):
                connection.pgconn.finish()
        self._open.clear()
        self._idle.clear()


def open_pool() -> Pool | None:
    """Open this event loop's pool, when the default database is PostgreSQL and
    STREAM_DB_ON_LOOP is on (else None: the database threads do all the work)."""
    if connections["default"].vendor != "postgresql" or not settings.STREAM_DB_ON_LOOP:
        return None
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        # The same settings the connections are made from (see _connection_params).
        conn_max_age = connections["default"].settings_dict.get("CONN_MAX_AGE", 0)
        pool = Pool(size=settings.STREAM_DB_THREADS, max_age=conn_max_age)
        _pools[loop] = pool
    return pool


def close_pool() -> None:
    """Close the running loop's pool, if it has one (the service's shutdown)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        pool.close()


def close_all_pools() -> None:
    """Close every loop's pool: for code that changes the database under a running process
    (the unit tests that move a module from SQLite to PostgreSQL and back)."""
    for pool in list(_pools.values()):
        pool.close()
    _pools.clear()


def current_pool() -> Pool | None:
    """The running loop's pool; None outside a loop or on a loop without one."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return _pools.get(loop)


async def arun(unit: Callable[[psycopg.AsyncConnection[Any]], Awaitable[R]], pool: Pool) -> R:
    """Run `unit` with one of the pool's connections, as its own task: a caller cancelled
    meanwhile does not cut it short (as a `db_task` is not), so a transaction is never left
    half done and its connection goes back clean."""

    async def with_connection() -> R:
        async with pool.aconnection() as connection:
            return await unit(connection)

    task = asyncio.ensure_future(with_connection())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            task.add_done_callback(_log_failure)
        raise


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("database work failed after its caller left", exc_info=task.exception())
