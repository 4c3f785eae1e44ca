"""Unit tests on either database: a module whose tests take `db_kind` (parametrised in
tests/conftest.py) and `unit_database` runs once on pytest-django's SQLite test database
and once on a fresh, migrated PostgreSQL database that replaces Django's default
connection for that module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import environ
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections

from ai_features.chat.db import close_db_threads
from tests.support.servers import Database


@pytest.fixture(scope="module")
def unit_database(
    db_kind: str,
    django_db_setup: None,
    django_db_blocker: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The vendor of the default connection ("sqlite" or "postgresql") for this module."""
    if db_kind == "sqlite":
        yield connections["default"].vendor
        return
    original_settings = connections.settings["default"]
    original_connection = connections["default"]  # kept: an in-memory SQLite lives in it
    with Database("postgres", Path(tmp_path_factory.mktemp("unit-pg"))) as database:
        pg = environ.Env.db_url_config(database.env["DATABASE_URL"])
        # The database already is the test database: never create another.
        pg["TEST"] = {"NAME": pg["NAME"]}
        pg = connections.configure_settings({"default": pg})["default"]
        connections.settings["default"] = pg
        del connections["default"]
        close_db_threads()  # their kept connections are to the SQLite test database
        try:
            with django_db_blocker.unblock():
                call_command("migrate", verbosity=0, interactive=False)
                yield connections["default"].vendor
        finally:
            close_db_threads()  # and now to PostgreSQL, which is about to be dropped
            connections["default"].close()
            del connections["default"]
            connections.settings["default"] = original_settings
            connections["default"] = original_connection


# No password: hashing one costs more than most of these tests, and none logs in. The
# database is whatever the test's django_db mark opened (pytest-django's autouse marker
# fixture comes first); in a module that uses unit_database, set up before any
# function-scoped fixture, that is the module's SQLite or PostgreSQL database.
@pytest.fixture
def alice() -> Any:
    """A user on the test's database."""
    return get_user_model().objects.create_user("alice")


@pytest.fixture
def bob() -> Any:
    """A second user, for what one user must not see or change of another's."""
    return get_user_model().objects.create_user("bob")
