"""Prints a benchmark user's credentials as JSON, made with the project's own code.

python -m bench.credentials [USERS]   (with the service's environment: SECRET_KEY, database)

Creates (or reuses) the users `bench0`, `bench1`, ... (one per concurrent stream, as real
streams come from different people), logs each in with Django's `login()` into a new session
(the session store the services read), and mints a stream token for that session with
`mint_stream_token`, as c3-app's token endpoint does. Also a CSRF cookie/header pair for the
WSGI fallback, which authenticates by session cookie.
"""

from __future__ import annotations

import json
import os
import sys

import django


def main() -> None:
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "c3_app.settings")
    django.setup()
    from django.contrib.auth import get_user_model, login
    from django.http import HttpRequest
    from django.middleware.csrf import get_token

    from ai_features.auth.tokens import mint_stream_token, session_store

    credentials = []
    for number in range(users):
        user, created = get_user_model().objects.get_or_create(username=f"bench{number}")
        if created:
            user.set_unusable_password()  # nobody logs in as it; the session is made here
            user.save()
        request = HttpRequest()
        request.session = session_store(None)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        request.session.save()
        session_key = request.session.session_key
        assert session_key is not None  # save() has just stored it
        csrf_header = get_token(request)
        credentials.append(
            {
                "user_id": user.pk,
                "session_key": session_key,
                "stream_token": mint_stream_token(session_key, user.pk),
                "csrf_cookie": request.META["CSRF_COOKIE"],
                "csrf_header": csrf_header,
            }
        )
    print(json.dumps(credentials))


if __name__ == "__main__":
    main()
