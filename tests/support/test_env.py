"""Loaded with `-p` (see pyproject.toml) so it runs before pytest-django reads the settings.

Test-wide settings: production-like (DEBUG off) but over plain HTTP on loopback.

These are set before pytest-django imports the settings, and any `.env` of the developer's
is ignored so that tests see the same configuration everywhere.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Unit tests serve no static files, but whitenoise warns when STATIC_ROOT does not exist.
_STATIC_ROOT = Path(tempfile.gettempdir()) / "c3-unit-test-static"
_STATIC_ROOT.mkdir(exist_ok=True)

TEST_ENV = {
    "C3_ENV_FILE": "/nonexistent/.env",
    "DEBUG": "false",
    "SECRET_KEY": "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFG",
    "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "SECURE_HSTS_SECONDS": "0",
    "STATIC_MANIFEST": "false",
    "STATIC_ROOT": str(_STATIC_ROOT),
    "LOG_LEVEL": "WARNING",
    # One extra upstream request per new conversation would upset every test that counts
    # them; the auto-title tests turn it on for themselves.
    "CHAT_AUTO_TITLE": "false",
}
for _key, _value in TEST_ENV.items():
    os.environ[_key] = _value
for _key in (
    "DATABASE_URL",
    "SUPABASE_DB_HOST",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "REDIS_URL",
    "STREAM_API_URL",
):
    os.environ.pop(_key, None)
