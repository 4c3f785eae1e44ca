"""The common case of authentication, confirmed on the event loop's PostgreSQL connections.

Every stream start and resume authenticates: a session row and a user row. On the database
threads those two lookups cost ~2 ms of CPU per stream under load, most of it GIL hand-offs
with the busy event loop (bench/README.md, round 5), so this module reads the same two
rows on the loop's own connections (chat/pg.py) instead. A stream token names its user, so
for a token both rows come in one statement (the two SELECTs as one CROSS JOIN).

Only the answer "this session is valid and belongs to this active user" is given here, and
only when every step is the one Django's own `get_user` takes: the database session engine,
Django's `SessionStore.decode`, a backend whose `get_user` is ModelBackend's, Django's
`user_can_authenticate`, and the session hash checked with the user's own
`get_session_auth_hash` against the current SECRET_KEY. The SQL is what Django's query
compiler makes of the same querysets, and the user is built by `Model.from_db`. Anything
else (no such row, a hash that only a fallback key verifies, another engine or backend)
returns None, and the caller asks Django's `get_user` on a database thread, which decides
and does what Django does then (flush a session whose hash no longer matches, for one).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

import psycopg
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.contrib.auth.backends import ModelBackend
from django.contrib.sessions.backends import db as db_sessions
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from ..chat import pg


class _Statement:
    """A queryset's SELECT as Django's compiler makes it, with the values it was built
    with, run on one of the loop's connections. Reusable with new values when every
    parameter of its SQL is one of them (a manager that adds constants of its own makes
    one that is not, and is compiled afresh each time)."""

    def __init__(self, queryset: QuerySet, values: dict[str, Any]) -> None:
        self.compiler = queryset.query.get_compiler(queryset.db)
        self.sql, params = self.compiler.as_sql()
        self.params = list(params)
        names = [[name for name, value in values.items() if value == p] for p in params]
        self.names = [found[0] for found in names] if all(len(f) == 1 for f in names) else None

    def with_values(self, values: dict[str, Any]) -> list[Any]:
        return [values[name] for name in self.names] if self.names is not None else self.params

    async def arows(self, connection: psycopg.AsyncConnection[Any], params: list[Any]) -> list:
        """The rows as tuples, as Django would return them (its converters applied)."""
        cursor = await connection.execute(self.sql, params)
        return self.converted(await cursor.fetchall())

    def converted(self, rows: list[tuple[Any, ...]]) -> list:
        return list(self.compiler.results_iter(results=[rows]))


class _Pair:
    """Two statements of one row each, sent as one: `SELECT * FROM (first) CROSS JOIN
    (second)`, one row when both have theirs. Each half of the row is converted by its own
    statement's compiler."""

    def __init__(self, first: _Statement, second: _Statement) -> None:
        self.first, self.second = first, second
        # Both halves are SQL from Django's compiler; the values stay parameters.
        self.sql = f"SELECT * FROM ({first.sql}) AS a CROSS JOIN ({second.sql}) AS b"  # noqa: S608
        self.width = len(first.compiler.select)
        self.reusable = first.names is not None and second.names is not None

    async def arows(
        self, connection: psycopg.AsyncConnection[Any], values: dict[str, Any]
    ) -> tuple[list, list]:
        params = [*self.first.with_values(values), *self.second.with_values(values)]
        cursor = await connection.execute(self.sql, params)
        row = await cursor.fetchone()
        if row is None:
            return [], []
        return (
            self.first.converted([row[: self.width]]),
            self.second.converted([row[self.width :]]),
        )


# Building and compiling the two querysets was a sixth of a stream start's event-loop CPU,
# for SQL that never changes: each is compiled once per process.
_statements: dict[tuple[Any, ...], _Statement] = {}
_pairs: dict[tuple[Any, ...], _Pair] = {}


async def _arows(
    connection: psycopg.AsyncConnection[Any],
    key: tuple[Any, ...],
    queryset: Callable[[], QuerySet],
    values: dict[str, Any],
) -> list[Any]:
    """The rows `queryset()` gives, `values` being what it was built with."""
    statement = _statements.get(key)
    if statement is not None:
        return await statement.arows(connection, statement.with_values(values))
    statement = _Statement(queryset(), values)
    if statement.names is not None:
        _statements[key] = statement
    return await statement.arows(connection, statement.params)


async def _arows_of_both(
    connection: psycopg.AsyncConnection[Any],
    keys: tuple[tuple[Any, ...], tuple[Any, ...]],
    querysets: tuple[Callable[[], QuerySet], Callable[[], QuerySet]],
    values: dict[str, Any],
) -> tuple[list[Any], list[Any]]:
    """`_arows` of two single-row querysets in one statement (a _Pair)."""
    pair = _pairs.get(keys)
    if pair is None:
        pair = _Pair(_Statement(querysets[0](), values), _Statement(querysets[1](), values))
        if pair.reusable:
            _pairs[keys] = pair
    return await pair.arows(connection, values)


def _session_engine_is_the_database() -> bool:
    engine = import_module(settings.SESSION_ENGINE)
    return getattr(engine, "SessionStore", None) is db_sessions.SessionStore


async def auser_for_session(
    session_key: str | None, pool: pg.Pool, *, claimed_user_id: str | None = None
) -> Any | None:
    """The active user a valid session belongs to, when the loop can confirm it; None
    means "not confirmed here" (not "refused"): Django's get_user decides then.

    `claimed_user_id` (a stream token names its user): the session row and that user's row
    are read in one statement, and the session must belong to that user."""
    if not session_key or not _session_engine_is_the_database():
        return None
    store = db_sessions.SessionStore(session_key)
    if store.session_key is None:  # a key Django's store itself refuses (too short)
        return None
    user_model = get_user_model()
    claimed_pk: Any = None
    if claimed_user_id is not None:
        try:
            claimed_pk = user_model._meta.pk.to_python(claimed_user_id)
        except ValidationError:
            return None
    now = timezone.now()
    # Model.from_db takes the concrete fields' attnames, in the order they are selected.
    attnames = [field.attname for field in user_model._meta.concrete_fields]
    session_key_ = ("session", store.model)
    user_key = ("user", user_model, *attnames)

    def sessions() -> QuerySet:
        return store.model.objects.filter(
            session_key=store.session_key, expire_date__gt=now
        ).values_list("session_data")

    def users(pk: Any) -> Callable[[], QuerySet]:
        return lambda: user_model._default_manager.filter(pk=pk).values_list(*attnames)

    async def alookup(connection: psycopg.AsyncConnection[Any]) -> Any | None:
        values = {"key": store.session_key, "now": now, "pk": claimed_pk}
        rows: list[Any] | None = None
        if claimed_pk is not None:
            found, rows = await _arows_of_both(
                connection, (session_key_, user_key), (sessions, users(claimed_pk)), values
            )
        else:
            found = await _arows(connection, session_key_, sessions, values)
        if not found:
            return None
        session = store.decode(found[0][0])
        try:
            user_id = user_model._meta.pk.to_python(session[SESSION_KEY])
            backend_path = session[BACKEND_SESSION_KEY]
        except (KeyError, ValueError, TypeError, ValidationError):
            return None
        if claimed_pk is not None and user_id != claimed_pk:
            return None
        if backend_path not in settings.AUTHENTICATION_BACKENDS:
            return None
        backend = load_backend(backend_path)
        if not isinstance(backend, ModelBackend) or type(backend).get_user is not (
            ModelBackend.get_user
        ):
            return None  # another backend's get_user may do anything: Django's code runs it
        if rows is None:
            rows = await _arows(connection, user_key, users(user_id), {"pk": user_id})
        if len(rows) != 1:
            return None
        user = user_model.from_db(DEFAULT_DB_ALIAS, attnames, rows[0])
        if not backend.user_can_authenticate(user):
            return None
        session_hash = session.get(HASH_SESSION_KEY)
        if not session_hash or not constant_time_compare(
            session_hash, user.get_session_auth_hash()
        ):
            return None
        return user

    return await pg.arun(alookup, pool)
