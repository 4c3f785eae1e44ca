"""chat/pg.py: the event loop's own PostgreSQL connections (kept, checked, replaced)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from django.db import connections

from ai_features.chat import pg
from tests.support.servers import POSTGRES_ADMIN_DSN

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("unit_database"),
    pytest.mark.postgres_only,
]


@pytest.fixture
async def pool() -> AsyncIterator[pg.Pool]:
    opened = pg.open_pool()
    assert opened is not None and pg.current_pool() is opened
    # The stream service's CONN_MAX_AGE (c3_app/settings.py); this module's database
    # settings come from a URL, with Django's default of 0.
    opened.max_age = 60
    yield opened
    pg.close_pool()
    assert pg.current_pool() is None


async def backend_pid(connection: psycopg.AsyncConnection[Any]) -> int:
    return connection.info.backend_pid


async def test_a_connection_is_kept_between_units(pool: pg.Pool) -> None:
    first = await pg.arun(backend_pid, pool)
    assert await pg.arun(backend_pid, pool) == first


async def test_it_reaches_djangos_database(pool: pg.Pool) -> None:
    async def database(connection: psycopg.AsyncConnection[Any]) -> str:
        return connection.info.dbname

    assert await pg.arun(database, pool) == connections["default"].settings_dict["NAME"]


async def test_a_connection_the_server_closed_is_replaced_before_use(pool: pg.Pool) -> None:
    """A restart or an idle timeout closes kept connections; the next unit gets a new one
    instead of an error."""
    first = await pg.arun(backend_pid, pool)
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    await asyncio.sleep(0.1)  # the server's notice reaches the idle socket

    second = await pg.arun(backend_pid, pool)
    assert second != first


async def test_a_failed_unit_does_not_leave_its_connection_in_the_pool(pool: pg.Pool) -> None:
    async def fail_in_a_transaction(connection: psycopg.AsyncConnection[Any]) -> None:
        async with connection.transaction():
            await connection.execute("SELECT 1")
            raise RuntimeError("a bug inside a unit of work")

    first = await pg.arun(backend_pid, pool)
    with pytest.raises(RuntimeError):
        await pg.arun(fail_in_a_transaction, pool)

    async def clean(connection: psycopg.AsyncConnection[Any]) -> tuple[int, Any]:
        return connection.info.backend_pid, connection.info.transaction_status

    pid, status = await pg.arun(clean, pool)
    assert pid != first and status == psycopg.pq.TransactionStatus.IDLE


async def test_a_cancelled_caller_does_not_cut_the_unit_short(pool: pg.Pool) -> None:
    """As with db_task: the transaction ends whatever happens to whoever awaited it."""
    release = asyncio.Event()
    committed = asyncio.Event()

    async def slow_insert(connection: psycopg.AsyncConnection[Any]) -> None:
        async with connection.transaction():
            await connection.execute("CREATE TEMPORARY TABLE IF NOT EXISTS t (x int)")
            await release.wait()
        committed.set()

    caller = asyncio.ensure_future(pg.arun(slow_insert, pool))
    await asyncio.sleep(0.05)
    caller.cancel()
    release.set()
    await asyncio.wait_for(committed.wait(), 5)
    assert caller.cancelled()


async def test_at_most_size_connections_at_once(pool: pg.Pool) -> None:
    open_now = peak = 0

    async def hold(connection: psycopg.AsyncConnection[Any]) -> None:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        await asyncio.sleep(0.02)
        open_now -= 1

    await asyncio.gather(*(pg.arun(hold, pool) for _ in range(pool.size * 3)))
    assert peak == pool.size


async def test_a_connection_past_its_age_is_closed_when_given_back(pool: pg.Pool) -> None:
    pool.max_age = 0  # CONN_MAX_AGE=0: Django closes its connection after every request
    first = await pg.arun(backend_pid, pool)
    assert await pg.arun(backend_pid, pool) != first


async def test_stream_db_on_loop_off_leaves_everything_to_the_threads(settings: Any) -> None:
    settings.STREAM_DB_ON_LOOP = False
    assert pg.open_pool() is None and pg.current_pool() is None


async def test_connections_get_djangos_isolation_level_and_role() -> None:
    """OPTIONS that Django applies to each new connection apply here too."""
    options = connections["default"].settings_dict["OPTIONS"]
    saved = dict(options)
    options.update(isolation_level=psycopg.IsolationLevel.SERIALIZABLE, assume_role="postgres")
    try:
        pool = pg.Pool(size=1, max_age=None)
    finally:
        options.clear()
        options.update(saved)

    async def settings_seen(connection: psycopg.AsyncConnection[Any]) -> tuple[Any, ...]:
        async with connection.transaction():
            cursor = await connection.execute(
                "SELECT current_setting('transaction_isolation'), current_user"
            )
            return await cursor.fetchone() or ()

    try:
        assert await pg.arun(settings_seen, pool) == ("serializable", "postgres")
    finally:
        pool.close()
