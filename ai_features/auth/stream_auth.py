"""Who is calling the stream service: a bearer stream token, or Django's session cookie.

Both paths end in Django's own code: the session store, `get_user` (which rejects a
session after logout or a password change) and, for cookie-authenticated writes,
CsrfViewMiddleware. The ASGI scope is turned into a Django ASGIRequest for that, so
headers, cookies, Origin and Referer are read exactly as Django reads them. The common
case, a valid session of an active user, is confirmed on the event loop's PostgreSQL
connections with the same Django functions (session_on_loop.py); every other answer is
Django's get_user's, on a database thread.
"""

from __future__ import annotations

import io
from collections.abc import MutableMapping
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from ..chat import pg
from ..chat.db import db_task
from ..chat.errors import CsrfFailed, Unauthenticated
from .session_on_loop import auser_for_session
from .tokens import get_user_for_session, token_claims, token_user

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _bearer_token(request: ASGIRequest, allow_query_token: bool) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if allow_query_token:
        # EventSource cannot set headers, so resume accepts ?token= as well.
        return request.GET.get("token") or None
    return None


def _csrf_rejects(request: ASGIRequest) -> bool:
    middleware = CsrfViewMiddleware(lambda _request: HttpResponse())
    middleware.process_request(request)
    return middleware.process_view(request, _csrf_protected_view, (), {}) is not None


def _csrf_protected_view(request: ASGIRequest) -> HttpResponse:  # pragma: no cover
    """A stand-in view: CsrfViewMiddleware only looks for a csrf_exempt mark on it."""
    raise NotImplementedError("never called")


# Off the loop, the session and the user are read in one unit of work on the database
# threads: one hop per request instead of one per query (Django's aget_user makes two).
_user_for_session_in_thread = db_task(get_user_for_session)


async def _user_for_session(session_key: str | None, claimed_user_id: str | None = None):
    """The session's user (AnonymousUser when none): confirmed on the event loop's
    PostgreSQL connections in the common case (session_on_loop.py), else by Django's own
    get_user on a database thread. `claimed_user_id`: the user a token names, read on the
    loop together with the session."""
    pool = pg.current_pool()
    if pool is not None:
        user = await auser_for_session(session_key, pool, claimed_user_id=claimed_user_id)
        if user is not None:
            return user
    return await _user_for_session_in_thread(session_key)


async def _user_for_token(token: str):
    """The user a stream token stands for, or None (see tokens.verify_stream_token)."""
    claims = token_claims(token)
    if claims is None:
        return None
    session_key, user_id = claims
    return token_user(await _user_for_session(session_key, user_id), user_id)


async def aauthenticate_stream(scope: MutableMapping[str, Any], *, allow_query_token: bool = False):
    """Return the user, or raise Unauthenticated / CsrfFailed.

    A bearer token is checked first: it is not sent automatically by the browser, so a
    request that carries one needs no CSRF check.
    """
    request = ASGIRequest(scope, io.BytesIO())
    token = _bearer_token(request, allow_query_token)
    if token is not None:
        user = await _user_for_token(token)
        if user is None:
            raise Unauthenticated()
        return user

    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        raise Unauthenticated()
    user = await _user_for_session(session_key)
    if not user.is_authenticated or not user.is_active:
        raise Unauthenticated()
    if request.method not in SAFE_METHODS and _csrf_rejects(request):
        raise CsrfFailed()
    return user
