"""Short-lived stream tokens: how a page on c3-app authenticates to c3-app-stream when the
two are different sites (two *.onrender.com hosts never share a cookie).

A token names the Django session it was minted from. It is encrypted and authenticated
(Fernet, key derived from the shared SECRET_KEY) so the page's JavaScript never sees the
session key itself. Verifying it loads that session through Django's own session store and
`get_user`, so a logout (session flushed) or a password change (session hash no longer
matches) ends the token's power at once, without any bookkeeping of ours.
"""

from __future__ import annotations

import base64
import functools
import json
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.contrib.auth import get_user
from django.utils.crypto import salted_hmac

_SALT = "ai_features.auth.tokens.stream-token"


def _fernet() -> MultiFernet:
    # SECRET_KEY_FALLBACKS keep tokens valid across a key rotation, as Django's signing does.
    return _fernet_for(settings.SECRET_KEY, tuple(getattr(settings, "SECRET_KEY_FALLBACKS", ())))


@functools.lru_cache(maxsize=4)
def _fernet_for(secret_key: str, fallbacks: tuple[str, ...]) -> MultiFernet:
    """The keys derived once per set of secrets, not per token (an HMAC and a Fernet per
    secret, on every stream start); keyed by the secrets, so a changed setting (a
    rotation, a test) derives new ones."""
    keys = [
        Fernet(
            base64.urlsafe_b64encode(
                salted_hmac(_SALT, "key", secret=s, algorithm="sha256").digest()
            )
        )
        for s in (secret_key, *fallbacks)
    ]
    return MultiFernet(keys)


def mint_stream_token(session_key: str, user_id: Any) -> str:
    payload = json.dumps({"s": session_key, "u": str(user_id)}).encode()
    return _fernet().encrypt(payload).decode("ascii")


def session_store(session_key: str | None):
    engine = import_module(settings.SESSION_ENGINE)
    return engine.SessionStore(session_key)


def _keep_session_key() -> None:
    """Stands in for cycle_key: see get_user_for_session."""


def get_user_for_session(session_key: str | None):
    """The user a session belongs to, checked exactly as Django's auth middleware does
    (sync: the stream service calls it on its database threads, see chat/db.py).

    One difference: a session verified by a SECRET_KEY_FALLBACKS hash is not re-keyed, as
    Django's middleware would do. This service cannot send the browser the new cookie, so
    re-keying here would delete the session the browser holds (logging the user out of
    c3-app) and kill the token that names it. c3-app re-keys it on the user's next visit.
    """
    session = session_store(session_key)
    session.cycle_key = _keep_session_key
    # get_user reads only request.session, so a stand-in holding the session is enough.
    return get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]


def token_claims(token: str) -> tuple[str, str] | None:
    """(session key, user id) of a valid, unexpired token; None otherwise."""
    try:
        payload = json.loads(
            _fernet().decrypt(token.encode("ascii"), ttl=settings.STREAM_TOKEN_MAX_AGE_SECONDS)
        )
        return payload["s"], payload["u"]
    except (InvalidToken, UnicodeEncodeError, ValueError, KeyError, TypeError):
        return None


def token_user(user, user_id: str):
    if not user.is_authenticated or str(user.pk) != user_id or not user.is_active:
        return None
    return user


def verify_stream_token(token: str):
    """Return the authenticated user the token stands for, or None (the stream service
    calls it on its database threads, see chat/db.py)."""
    claims = token_claims(token)
    if claims is None:
        return None
    session_key, user_id = claims
    return token_user(get_user_for_session(session_key), user_id)
