"""Production settings, each read fresh in a child process from a clean environment.

The child gets only the variables a test names (plus PATH and HOME) and
C3_ENV_FILE=/nonexistent, so neither this process's test settings nor a developer's `.env`
leaks in.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.deploy.child import run_python

# The original document's variables for c3-app (STREAMING_SETUP.md), as an operator sets
# them on Render, with DEBUG off and a long random SECRET_KEY.
DOCUMENT_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(48),  # 64 characters
    "ALLOWED_HOSTS": "c3-app.onrender.com,c3-app-stream.onrender.com",
    "CSRF_TRUSTED_ORIGINS": "https://c3-app.onrender.com",
    "STREAM_API_URL": "https://c3-app-stream.onrender.com",
    "OPENAI_API_KEY": "sk-test-not-a-real-key",
    "OPENAI_MODEL": "gpt-4o-mini",
    "MAX_CHAT_HISTORY": "14",
}
# `.invalid` never resolves (RFC 6761): any attempt to connect would fail loudly.
SUPABASE_ENV = {
    "SUPABASE_DB_NAME": "postgres",
    "SUPABASE_DB_USER": "postgres.projectref",
    "SUPABASE_DB_PASSWORD": "not-a-real-password",
    "SUPABASE_DB_HOST": "db.projectref.invalid",
}

PRINT_DATABASE = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
keys = ("ENGINE", "NAME", "USER", "HOST", "PORT", "OPTIONS", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS")
print(json.dumps({key: db.get(key) for key in keys}, default=str))
"""


def database_settings(env: dict[str, str], tmp_path: Path) -> dict:
    result = run_python(["-c", PRINT_DATABASE], env, tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- manage.py check --deploy -------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", "supabase"])
def test_check_deploy_passes_with_the_documented_variables(database, tmp_path):
    env = dict(DOCUMENT_ENV)
    if database == "supabase":
        env |= SUPABASE_ENV  # settings only: `check` opens no connection without --database
    result = run_python(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env, tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
    assert "WARNING" not in output and "security.W" not in output


def test_check_deploy_catches_a_short_secret_key(tmp_path):
    # The check above can fail: a weak key is reported at --fail-level WARNING.
    env = DOCUMENT_ENV | {"SECRET_KEY": "too-short"}
    result = run_python(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env, tmp_path
    )
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


# --- a missing SECRET_KEY -----------------------------------------------------------------------


def no_secret_key_env() -> dict[str, str]:
    return {key: value for key, value in DOCUMENT_ENV.items() if key != "SECRET_KEY"}


def test_missing_secret_key_fails_naming_it(tmp_path):
    result = run_python(["-c", "import django; django.setup()"], no_secret_key_env(), tmp_path)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert "SECRET_KEY" in last_line


def test_missing_secret_key_stops_manage_py_with_one_line(tmp_path):
    result = run_python(["manage.py", "check"], no_secret_key_env(), tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ImproperlyConfigured" in lines[0], result.stderr


@pytest.mark.parametrize("debug", ["false", "true"])
def test_whitespace_only_secret_key_is_refused(debug, tmp_path):
    env = DOCUMENT_ENV | {"SECRET_KEY": "   \t  ", "DEBUG": debug}
    result = run_python(["manage.py", "check"], env, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY is only whitespace" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_debug_runs_without_secret_key(tmp_path):
    env = no_secret_key_env() | {"DEBUG": "true"}
    assert run_python(["manage.py", "check"], env, tmp_path).returncode == 0


# --- database selection -------------------------------------------------------------------------


def test_sqlite_when_no_database_is_configured(tmp_path):
    db = database_settings(DOCUMENT_ENV, tmp_path)
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"].endswith("db.sqlite3")


SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}


@pytest.mark.parametrize(
    "env",
    [{}, {"SQLITE_PATH": "/tmp/c3.sqlite3"}, {"DATABASE_URL": "sqlite:////tmp/c3.sqlite3"}],
    ids=["default", "sqlite-path", "database-url"],
)
def test_sqlite_gets_the_same_options_however_it_is_configured(env, tmp_path):
    db = database_settings(DOCUMENT_ENV | env, tmp_path)
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["OPTIONS"] == SQLITE_OPTIONS


def test_options_in_a_sqlite_url_win(tmp_path):
    env = DOCUMENT_ENV | {"DATABASE_URL": "sqlite:////tmp/c3.sqlite3?timeout=60"}
    db = database_settings(env, tmp_path)
    assert db["NAME"] == "/tmp/c3.sqlite3"
    assert db["OPTIONS"] == SQLITE_OPTIONS | {"timeout": 60}


def test_database_url(tmp_path):
    env = DOCUMENT_ENV | {"DATABASE_URL": "postgres://u:p@h:5433/db"}
    db = database_settings(env, tmp_path)
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["HOST"], str(db["PORT"])) == ("db", "u", "h", "5433")


def test_supabase_variables(tmp_path):
    db = database_settings(DOCUMENT_ENV | SUPABASE_ENV, tmp_path)
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert db["HOST"] == "db.projectref.invalid"
    assert (db["NAME"], db["USER"]) == ("postgres", "postgres.projectref")
    assert db["PORT"] == 5432
    assert db["OPTIONS"] == {"sslmode": "require"}
    assert db["CONN_HEALTH_CHECKS"] is True


def test_supabase_port(tmp_path):
    db = database_settings(DOCUMENT_ENV | SUPABASE_ENV | {"SUPABASE_DB_PORT": "6543"}, tmp_path)
    assert db["PORT"] == 6543


def test_supabase_wins_over_database_url(tmp_path):
    env = DOCUMENT_ENV | SUPABASE_ENV | {"DATABASE_URL": "postgres://u:p@h:5433/db"}
    db = database_settings(env, tmp_path)
    assert db["HOST"] == "db.projectref.invalid"
    assert db["PORT"] == 5432
    assert db["OPTIONS"] == {"sslmode": "require"}
