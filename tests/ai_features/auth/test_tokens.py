"""Stream tokens against real Django sessions: minted from a logged-in session, and dead
as soon as that session is (logout, password change, inactive user, expiry, tampering)."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace

import cryptography.fernet
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.sessions.models import Session
from django.test import Client

from ai_features.auth.tokens import mint_stream_token, verify_stream_token

pytestmark = pytest.mark.django_db

User = get_user_model()


def verify(token: str) -> AbstractBaseUser | None:
    return verify_stream_token(token)


def make_user(username: str = "alice") -> AbstractBaseUser:
    # No password (hashing one is slow); the password-change test sets one.
    return User.objects.create_user(username)


def logged_in(user: AbstractBaseUser) -> tuple[Client, str]:
    """A test client logged in through Django's own login(), and its session key."""
    client = Client()
    client.force_login(user)
    session_key = client.session.session_key
    assert session_key
    return client, session_key


def session_token() -> tuple[AbstractBaseUser, Client, str, str]:
    """A new user, logged in: the user, the client, its session key and a token for it."""
    user = make_user()
    client, session_key = logged_in(user)
    return user, client, session_key, mint_stream_token(session_key, user.pk)


@pytest.fixture
def shift_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Move Fernet's clock (it reads time.time() when it mints and checks a ttl)."""

    def shift(seconds: float) -> None:
        monkeypatch.setattr(
            cryptography.fernet, "time", SimpleNamespace(time=lambda: time.time() + seconds)
        )

    return shift


def test_token_of_a_live_session_verifies_to_its_user() -> None:
    user, _client, session_key, token = session_token()

    verified = verify(token)

    assert verified is not None
    assert verified.pk == user.pk
    assert verified.is_authenticated
    # The token is opaque: it never shows the session key to the page's JavaScript.
    assert session_key not in token
    # Verifying reads the session, it does not rotate or end it.
    assert Session.objects.filter(session_key=session_key).exists()
    assert verify(token) is not None


def test_token_from_the_token_endpoint_verifies() -> None:
    user = make_user()
    client, _session_key = logged_in(user)

    response = client.get("/api/ai/chat/token/")

    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 300
    verified = verify(body["token"])
    assert verified is not None and verified.pk == user.pk


def test_token_endpoint_needs_a_login() -> None:
    response = Client().get("/api/ai/chat/token/")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_session_key_that_never_existed_is_refused() -> None:
    user = make_user()
    assert verify(mint_stream_token("x" * 32, user.pk)) is None


def test_token_naming_another_user_than_its_session_is_refused() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    _client, alice_session = logged_in(alice)

    assert verify(mint_stream_token(alice_session, alice.pk)) is not None
    assert verify(mint_stream_token(alice_session, bob.pk)) is None


def test_expired_token_is_refused(shift_clock: Callable[[float], None], settings) -> None:
    settings.STREAM_TOKEN_MAX_AGE_SECONDS = 300
    user, _client, session_key, token = session_token()

    shift_clock(290)
    assert verify(token) is not None
    shift_clock(310)
    assert verify(token) is None


def test_max_age_setting_is_what_limits_a_token(
    shift_clock: Callable[[float], None], settings
) -> None:
    user, _client, session_key, token = session_token()
    shift_clock(120)

    settings.STREAM_TOKEN_MAX_AGE_SECONDS = 600
    assert verify(token) is not None
    settings.STREAM_TOKEN_MAX_AGE_SECONDS = 60
    assert verify(token) is None


def test_token_minted_in_the_past_is_refused(shift_clock: Callable[[float], None]) -> None:
    user = make_user()
    _client, session_key = logged_in(user)
    shift_clock(-3600)
    old_token = mint_stream_token(session_key, user.pk)
    shift_clock(0)

    assert verify(old_token) is None
    assert verify(mint_stream_token(session_key, user.pk)) is not None


@pytest.mark.parametrize("position", [10, 40, -20])
def test_tampered_token_is_refused(position: int) -> None:
    user, _client, session_key, token = session_token()
    flipped = "A" if token[position] != "A" else "B"
    index = position % len(token)
    tampered = token[:index] + flipped + token[index + 1 :]
    assert tampered != token and len(tampered) == len(token)

    assert verify(tampered) is None


@pytest.mark.parametrize(
    "garbage", ["", "not-a-token", "トークン", "gAAAAA", "Bearer x", "\x00\x01", "a" * 5000]
)
def test_garbage_is_refused_without_an_exception(garbage: str) -> None:
    assert verify(garbage) is None


def test_token_signed_with_another_secret_is_refused(settings) -> None:
    user = make_user()
    _client, session_key = logged_in(user)
    real_key = settings.SECRET_KEY
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    forged = mint_stream_token(session_key, user.pk)
    settings.SECRET_KEY = real_key

    assert verify(forged) is None


def test_logout_ends_the_token() -> None:
    user, client, session_key, token = session_token()
    assert verify(token) is not None

    client.logout()

    assert not Session.objects.filter(session_key=session_key).exists()
    assert verify(token) is None


def test_logout_through_the_view_ends_the_token() -> None:
    user, client, session_key, token = session_token()

    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    assert verify(token) is None


def test_password_change_ends_the_token() -> None:
    user, _client, session_key, token = session_token()
    assert verify(token) is not None

    user.set_password("a-New-password-456")
    user.save()

    assert verify(token) is None


def test_inactive_user_token_is_refused() -> None:
    user, _client, session_key, token = session_token()

    User.objects.filter(pk=user.pk).update(is_active=False)

    assert verify(token) is None


def test_deleted_user_token_is_refused() -> None:
    user, _client, session_key, token = session_token()

    User.objects.filter(pk=user.pk).delete()

    assert verify(token) is None


OLD_KEY = "old-secret-key-" + "o" * 40
NEW_KEY = "new-secret-key-" + "n" * 40


def test_secret_key_rotation_with_fallbacks_keeps_tokens_and_sessions(settings) -> None:
    settings.SECRET_KEY = OLD_KEY
    settings.SECRET_KEY_FALLBACKS = []
    user, client, session_key, token = session_token()

    settings.SECRET_KEY = NEW_KEY
    settings.SECRET_KEY_FALLBACKS = [OLD_KEY]

    first = verify(token)
    assert first is not None and first.pk == user.pk
    # Verifying must not rotate the session key behind the browser's back: the stream
    # service cannot send the browser a new cookie, so the old key has to keep working
    # for c3-app and for the token (which names it).
    assert Session.objects.filter(session_key=session_key).exists()
    second = verify(token)
    assert second is not None and second.pk == user.pk
    # And a token minted under the new key verifies as well.
    assert verify(mint_stream_token(session_key, user.pk)) is not None
    # The browser is still logged in to c3-app, whose tokens verify too.
    response = client.get("/api/ai/chat/token/")
    assert response.status_code == 200
    assert verify(response.json()["token"]) is not None


def test_secret_key_rotation_without_fallbacks_refuses_old_tokens(settings) -> None:
    settings.SECRET_KEY = OLD_KEY
    settings.SECRET_KEY_FALLBACKS = []
    user, _client, session_key, token = session_token()

    settings.SECRET_KEY = NEW_KEY

    assert verify(token) is None
