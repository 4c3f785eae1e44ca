"""auth/session_on_loop.py: a valid session's user is confirmed on the event loop's
PostgreSQL connections; everything else is left to Django's get_user (None here), and the
stream service's authentication gives Django's answer either way."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from ai_features.auth import session_on_loop, stream_auth
from ai_features.auth.session_on_loop import auser_for_session
from ai_features.auth.tokens import mint_stream_token, verify_stream_token
from ai_features.chat import pg
from tests.support.loop_db import call, loop_statements

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("unit_database"),
    pytest.mark.postgres_only,
]

User = get_user_model()


class OwnGetUserBackend(ModelBackend):
    """A backend with its own get_user: only Django's code may run that."""

    def get_user(self, user_id: Any) -> Any:  # pragma: no cover - never called on the loop
        return super().get_user(user_id)


async def aconfirmed(session_key: str | None) -> Any:
    pool = pg.current_pool()
    assert pool is not None  # loop_db.call opened it: this module runs on PostgreSQL
    return await auser_for_session(session_key, pool)


def confirmed_on_the_loop(session_key: str | None) -> Any:
    return call(aconfirmed, session_key)


def authenticated(session_key: str | None) -> Any:
    """What the stream service's authentication makes of a session (loop, else thread)."""
    return call(stream_auth._user_for_session, session_key)


def logged_in(username: str = "alice") -> tuple[Any, Client, str]:
    user = User.objects.create_user(username)
    client = Client()
    client.force_login(user)
    session_key = client.session.session_key
    assert session_key
    return user, client, session_key


def test_a_valid_session_is_confirmed_on_the_loop_as_djangos_user() -> None:
    user, _client, session_key = logged_in()

    found = confirmed_on_the_loop(session_key)

    assert isinstance(found, User) and found.pk == user.pk
    expected = User.objects.get(pk=user.pk)
    for field in User._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    assert found._state.db == "default" and not found._state.adding
    assert authenticated(session_key).pk == user.pk


def test_a_token_is_verified_on_the_loop_like_on_the_threads() -> None:
    user, client, session_key = logged_in()
    token = mint_stream_token(session_key, user.pk)

    assert call(stream_auth._user_for_token, token).pk == user.pk
    assert call(stream_auth._user_for_token, mint_stream_token(session_key, 999999)) is None
    assert call(stream_auth._user_for_token, "not-a-token") is None

    client.logout()
    assert call(stream_auth._user_for_token, token) is None
    assert verify_stream_token(token) is None


def test_a_token_reads_its_session_and_its_user_in_one_statement() -> None:
    user, _client, session_key = logged_in()
    token = mint_stream_token(session_key, user.pk)

    for _ in range(2):  # compiled the first time, reused the second
        with loop_statements() as sent:
            assert call(stream_auth._user_for_token, token).pk == user.pk
        assert len(sent) == 1 and "django_session" in sent[0][0], sent


def test_a_token_naming_another_user_than_its_session_is_left_to_django() -> None:
    """The loop confirms only the session's own user; Django's answer (the session's user)
    then does not match the token's claim either."""
    _alice, _client, session_key = logged_in("alice")
    bob, _other, _key = logged_in("bob")

    async def aclaimed(claimed: str) -> Any:
        pool = pg.current_pool()
        assert pool is not None
        return await auser_for_session(session_key, pool, claimed_user_id=claimed)

    assert call(aclaimed, str(bob.pk)) is None
    assert call(aclaimed, "not-a-number") is None
    assert call(stream_auth._user_for_token, mint_stream_token(session_key, bob.pk)) is None


def test_a_token_whose_user_was_deleted_is_refused() -> None:
    user, _client, session_key = logged_in()
    token = mint_stream_token(session_key, user.pk)
    User.objects.filter(pk=user.pk).delete()

    assert call(stream_auth._user_for_token, token) is None


def test_each_token_is_confirmed_as_its_own_user() -> None:
    """The one statement of session and user is compiled once and run with each token's
    own values: the loop itself confirms each (no fallback to Django's threads)."""
    sessions = [logged_in(name) for name in ("alice", "bob", "carol")]

    async def aconfirmed_as(session_key: str, claimed: str) -> Any:
        pool = pg.current_pool()
        assert pool is not None
        return await auser_for_session(session_key, pool, claimed_user_id=claimed)

    for user, _client, session_key in [*sessions, *reversed(sessions)]:
        assert call(aconfirmed_as, session_key, str(user.pk)).pk == user.pk


def test_a_logged_out_session_is_refused() -> None:
    _user, client, session_key = logged_in()
    client.logout()

    assert confirmed_on_the_loop(session_key) is None
    assert not authenticated(session_key).is_authenticated


def test_an_expired_session_is_refused() -> None:
    _user, _client, session_key = logged_in()
    Session.objects.filter(session_key=session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )

    assert confirmed_on_the_loop(session_key) is None
    assert not authenticated(session_key).is_authenticated


@pytest.mark.parametrize("session_key", [None, "", "short", "x" * 32])
def test_a_missing_or_unknown_key_is_refused(session_key: str | None) -> None:
    assert confirmed_on_the_loop(session_key) is None
    assert not authenticated(session_key).is_authenticated


def test_a_password_change_is_left_to_django_which_flushes_the_session() -> None:
    user, _client, session_key = logged_in()
    user.set_password("a-New-password-456")
    user.save()

    assert confirmed_on_the_loop(session_key) is None
    assert not authenticated(session_key).is_authenticated
    # Django's get_user ran (on a thread) and did what it does: the session is gone.
    assert not Session.objects.filter(session_key=session_key).exists()


def test_an_inactive_or_deleted_user_is_refused() -> None:
    inactive, _client, inactive_key = logged_in("inactive")
    deleted, _client, deleted_key = logged_in("deleted")
    User.objects.filter(pk=inactive.pk).update(is_active=False)
    User.objects.filter(pk=deleted.pk).delete()

    for session_key in (inactive_key, deleted_key):
        assert confirmed_on_the_loop(session_key) is None
        user = authenticated(session_key)
        assert not (user.is_authenticated and user.is_active)


def test_a_session_only_a_fallback_secret_verifies_is_left_to_django(settings) -> None:
    settings.SECRET_KEY = "old-secret-key-" + "o" * 40
    settings.SECRET_KEY_FALLBACKS = []
    user, _client, session_key = logged_in()
    settings.SECRET_KEY = "new-secret-key-" + "n" * 40
    settings.SECRET_KEY_FALLBACKS = ["old-secret-key-" + "o" * 40]

    assert confirmed_on_the_loop(session_key) is None
    # Django's get_user accepts it on a thread, and the session keeps its key.
    assert authenticated(session_key).pk == user.pk
    assert Session.objects.filter(session_key=session_key).exists()


def test_a_backend_with_its_own_get_user_is_left_to_django(settings) -> None:
    path = f"{OwnGetUserBackend.__module__}.{OwnGetUserBackend.__qualname__}"
    settings.AUTHENTICATION_BACKENDS = [path]
    user, client, session_key = logged_in()
    session = client.session
    assert session[BACKEND_SESSION_KEY] == path

    assert confirmed_on_the_loop(session_key) is None
    assert authenticated(session_key).pk == user.pk


def test_a_backend_no_longer_configured_is_refused(settings) -> None:
    _user, _client, session_key = logged_in()
    settings.AUTHENTICATION_BACKENDS = [
        f"{OwnGetUserBackend.__module__}.{OwnGetUserBackend.__qualname__}"
    ]

    assert confirmed_on_the_loop(session_key) is None
    assert not authenticated(session_key).is_authenticated


def test_another_session_engine_is_left_to_django(settings) -> None:
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    user, _client, session_key = logged_in()

    assert confirmed_on_the_loop(session_key) is None
    assert authenticated(session_key).pk == user.pk


def test_each_session_is_confirmed_as_its_own_user() -> None:
    """The statements are compiled once and run with each lookup's own values."""
    sessions = [logged_in(name) for name in ("alice", "bob", "carol")]

    for user, _client, session_key in [*sessions, *reversed(sessions)]:
        assert confirmed_on_the_loop(session_key).pk == user.pk


def test_a_queryset_with_constants_of_its_own_is_run_as_compiled() -> None:
    """A statement whose parameters are not all the lookup's values (a manager's filter,
    say) is not reused with new values: it runs with the parameters it was compiled with."""
    user, _client, session_key = logged_in()
    alice_only = User.objects.filter(username="alice", pk=user.pk).values_list("username")

    statement = session_on_loop._Statement(alice_only, {"pk": user.pk})
    assert statement.names is None
    assert statement.with_values({"pk": -1}) == statement.params

    async def arun() -> list[Any]:
        pool = pg.current_pool()
        assert pool is not None

        async def rows(connection: Any) -> list[Any]:
            return await statement.arows(connection, statement.params)

        return await pg.arun(rows, pool)

    assert call(arun) == [("alice",)]
