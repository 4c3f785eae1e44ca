"""The common case of authentication, confirmed on the event loop's PostgreSQL connections.

Every stream start and resume authenticates: a session row and a user row. On the database
threads those two lookups cost ~2 ms of CPU per stream under load, most of it GIL hand-offs
with the busy event loop (bench/README.md, round 5), so this module reads the same two
rows on the loop's own connections (chat/pg.py) instead.

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
        return list(self.compiler.results_iter(results=[await cursor.fetchall()]))


# Building and compiling the two querysets was a sixth of a stream start's event-loop CPU,
# for SQL that never changes: each is compiled once per process.
_statements: dict[tuple[Any, ...], _Statement] = {}


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


def _session_engine_is_the_database() -> bool:
    engine = import_module(settings.SESSION_ENGINE)
    return getattr(engine, "SessionStore", None) is db_sessions.SessionStore


async def auser_for_session(session_key: str | None, pool: pg.Pool) -> Any | None:
    """The active user a valid session belongs to, when the loop can confirm it; None
    means "not confirmed here" (not "refused"): Django's get_user decides then."""
    if not session_key or not _session_engine_is_the_database():
        return None
    store = db_sessions.SessionStore(session_key)
    if store.session_key is None:  # a key Django's store itself refuses (too short)
        return None
    user_model = get_user_model()
    now = timezone.now()
    # Model.from_db takes the concrete fields' attnames, in the order they are selected.
    attnames = [field.attname for field in user_model._meta.concrete_fields]

    async def alookup(connection: psycopg.AsyncConnection[Any]) -> Any | None:
        found = await _arows(
            connection,
            ("session", store.model),
            lambda: store.model.objects.filter(
                session_key=store.session_key, expire_date__gt=now
            ).values_list("session_data"),
            {"key": store.session_key, "now": now},
        )
        if not found:
            return None
        session = store.decode(found[0][0])
        try:
            user_id = user_model._meta.pk.to_python(session[SESSION_KEY])
            backend_path = session[BACKEND_SESSION_KEY]
        except (KeyError, ValueError, TypeError):
            return None
        if backend_path not in settings.AUTHENTICATION_BACKENDS:
            return None
        backend = load_backend(backend_path)
        if not isinstance(backend, ModelBackend) or type(backend).get_user is not (
            ModelBackend.get_user
        ):
            return None  # another backend's get_user may do anything: Django's code runs it
        rows = await _arows(
            connection,
            ("user", user_model, *attnames),
            lambda: user_model._default_manager.filter(pk=user_id).values_list(*attnames),
            {"pk": user_id},
        )
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
