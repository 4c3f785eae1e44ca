"""A SECRET_KEY rotation done the way an operator does it: through the environment.

Each step is a fresh process reading settings from a clean environment (as a redeployed
service does) against one SQLite file: a session and a stream token made under the old key
keep working while the old key is listed in SECRET_KEY_FALLBACKS, and stop when it is not.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from tests.deploy.child import run_python

OLD_KEY = secrets.token_urlsafe(48)
NEW_KEY = secrets.token_urlsafe(48)
OTHER_OLD_KEY = secrets.token_urlsafe(48)

SETUP = """
import json, django
django.setup()
"""
MINT = (
    SETUP
    + """
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from ai_features.auth.tokens import mint_stream_token
call_command("migrate", verbosity=0)
user = get_user_model().objects.create_user("rotation")
client = Client()
client.force_login(user)
session_key = client.session.session_key
print(json.dumps({"token": mint_stream_token(session_key, user.pk), "user": user.pk}))
"""
)
VERIFY = (
    SETUP
    + """
import sys
from django.conf import settings
from ai_features.auth.tokens import verify_stream_token
user = verify_stream_token(sys.argv[1])
print(json.dumps({"user": user.pk if user else None, "fallbacks": settings.SECRET_KEY_FALLBACKS}))
"""
)


def run(code: str, env: dict[str, str], tmp_path: Path, *args: str) -> dict:
    site = {
        "DEBUG": "false",
        "ALLOWED_HOSTS": "c3-app.onrender.com",
        "SQLITE_PATH": str(tmp_path / "rotation.sqlite3"),
    }
    result = run_python(["-c", code, *args], {**site, **env}, tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_old_tokens_verify_while_the_old_key_is_a_fallback(tmp_path):
    minted = run(MINT, {"SECRET_KEY": OLD_KEY}, tmp_path)

    rotated = {"SECRET_KEY": NEW_KEY, "SECRET_KEY_FALLBACKS": f"{OTHER_OLD_KEY},{OLD_KEY}"}
    during = run(VERIFY, rotated, tmp_path, minted["token"])
    assert during["fallbacks"] == [OTHER_OLD_KEY, OLD_KEY]
    assert during["user"] == minted["user"]

    after = run(VERIFY, {"SECRET_KEY": NEW_KEY}, tmp_path, minted["token"])
    assert after == {"user": None, "fallbacks": []}


def test_check_deploy_sees_the_fallback_keys(tmp_path):
    # Django checks fallback keys as it checks SECRET_KEY: a weak one is reported.
    env = {
        "SECRET_KEY": NEW_KEY,
        "SECRET_KEY_FALLBACKS": f"{OLD_KEY},too-short",
        "CSRF_TRUSTED_ORIGINS": "https://c3-app.onrender.com",
    }
    code = (
        SETUP
        + """
from django.core.management import call_command
from django.core.management.base import SystemCheckError
try:
    call_command("check", deploy=True, fail_level="WARNING")
    print(json.dumps({"failed": None}))
except SystemCheckError as error:
    print(json.dumps({"failed": str(error)}))
"""
    )
    failed = run(code, env, tmp_path)["failed"]
    assert failed is not None and "security.W025" in failed
    assert "SECRET_KEY_FALLBACKS[1]" in failed  # the weak one, not the strong old key
