"""db_task: sync ORM work off the event loop, on the process's few database threads."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.db import connection, transaction

from ai_features.chat import db, pg
from ai_features.logging import request_id_var
from ai_features.models import Conversation

pytestmark = pytest.mark.django_db(transaction=True)


@db.db_task
def where_am_i() -> tuple[str, str]:
    return threading.current_thread().name, request_id_var.get()


async def test_work_runs_on_a_database_thread_with_the_callers_context() -> None:
    token = request_id_var.set("req-42")
    try:
        name, request_id = await where_am_i()
    finally:
        request_id_var.reset(token)
    assert name.startswith("c3-db") and name != threading.current_thread().name
    assert request_id == "req-42"  # log lines of the unit carry the request's id


@db.db_task
def count_conversations() -> int:
    return Conversation.objects.count()


async def test_the_database_threads_see_the_test_database() -> None:
    assert await count_conversations() == 0


def test_sqlite_gets_one_thread_postgresql_the_setting(settings: Any) -> None:
    settings.STREAM_DB_THREADS = 6
    assert db.db_thread_count() == 1  # the test database is SQLite
    assert db.threads_for(["django.db.backends.postgresql"], 6) == 6
    assert db.threads_for(["django.db.backends.postgresql"], 0) == 1
    sqlite_too = ["django.db.backends.postgresql", "django.db.backends.sqlite3"]
    assert db.threads_for(sqlite_too, 6) == 1


@db.db_task
def fail_in_a_transaction() -> None:
    with transaction.atomic():
        Conversation.objects.count()
        raise RuntimeError("a bug inside a unit of work")


@db.db_task
def autocommit_is_back() -> bool:
    return connection.get_autocommit() and not connection.in_atomic_block


async def test_a_failed_unit_leaves_a_usable_connection() -> None:
    with pytest.raises(RuntimeError):
        await fail_in_a_transaction()
    assert await autocommit_is_back()


async def test_a_cancelled_caller_does_not_cut_the_unit_short() -> None:
    finished = threading.Event()
    release = threading.Event()

    @db.db_task
    def slow() -> None:
        release.wait(5)
        finished.set()

    task = asyncio.ensure_future(slow())
    await asyncio.sleep(0.05)
    task.cancel()
    release.set()
    assert await asyncio.to_thread(finished.wait, 5)


async def test_sqlite_has_no_event_loop_pool() -> None:
    """On SQLite every statement runs here, on the database threads (chat/pg.py is
    PostgreSQL's)."""
    assert pg.open_pool() is None and pg.current_pool() is None
