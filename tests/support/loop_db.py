"""Awaiting the streaming core's database functions from sync tests, the way the stream
service runs them: on an event loop whose PostgreSQL pool is open (ai_features/chat/pg.py).
On SQLite there is no pool, and the same call runs on the database threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import psycopg
from asgiref.sync import async_to_sync

from ai_features.chat import pg


def call(task: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`await task(*args, **kwargs)` on a fresh event loop with its pool open."""

    async def aon_a_loop_with_its_pool() -> Any:
        pg.open_pool()
        try:
            return await task(*args, **kwargs)
        finally:
            pg.close_pool()

    return async_to_sync(aon_a_loop_with_its_pool)()


@contextmanager
def loop_statements() -> Iterator[list[tuple[str, bool]]]:
    """What the event loop's connections execute: (SQL, inside a transaction)."""
    sent: list[tuple[str, bool]] = []
    execute = psycopg.AsyncConnection.execute

    async def record(self: psycopg.AsyncConnection[Any], query: Any, *args: Any, **kw: Any) -> Any:
        idle = self.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        sent.append((str(query), not idle))
        return await execute(self, query, *args, **kw)

    with mock.patch.object(psycopg.AsyncConnection, "execute", record):
        yield sent
