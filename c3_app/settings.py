"""Settings for both services (c3-app and c3-app-stream), read from the environment and `.env`.

One settings module serves both processes so that they agree on SECRET_KEY, the database,
the session store and every limit. Variables are documented in `.env.example` and the README.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A real environment variable always wins over `.env` (django-environ does not overwrite).
environ.Env.read_env(os.environ.get("C3_ENV_FILE", BASE_DIR / ".env"))

DEBUG: bool = env.bool("DEBUG", default=False)

_DEV_SECRET_KEY = "django-insecure-dev-only-c3-app-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY: str = env.str("SECRET_KEY", default="")
if SECRET_KEY and not SECRET_KEY.strip():
    # A key of spaces (a pasting slip) would sign everything with a guessable value.
    raise ImproperlyConfigured(
        "SECRET_KEY is only whitespace. Set a long random value (the same on c3-app and "
        "c3-app-stream)."
    )
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (the same value on c3-app and "
            "c3-app-stream), or set DEBUG=true for local development."
        )
    SECRET_KEY = _DEV_SECRET_KEY
# Key rotation: set the new SECRET_KEY and list the old one(s) here, comma-separated, on both
# services; sessions, CSRF tokens and stream tokens signed with them stay valid until removed.
SECRET_KEY_FALLBACKS: list[str] = env.list("SECRET_KEY_FALLBACKS", default=[])

ALLOWED_HOSTS: list[str] = env.list(
    "ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else []
)
# Render sets RENDER_EXTERNAL_HOSTNAME on every web service: its own host is always allowed.
_render_host = env.str("RENDER_EXTERNAL_HOSTNAME", default="")
if _render_host and _render_host not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_render_host)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "csp",
    "axes",
    "ai_features",
]

MIDDLEWARE = [
    "ai_features.web.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "c3_app.urls"
WSGI_APPLICATION = "c3_app.wsgi.application"
ASGI_APPLICATION = "c3_app.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


# --- Database ---------------------------------------------------------------------------
# Two processes (gunicorn and uvicorn) write the same SQLite file: wait for locks instead of
# failing, take the write lock up front, and let readers run beside a writer. Applied however
# SQLite is configured (SQLITE_PATH or DATABASE_URL=sqlite:///...); options given in the URL's
# query string win.
SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}


# SUPABASE_DB_* (the original document's variables) win over DATABASE_URL; SQLite otherwise.
def _database_from_env() -> dict:
    supabase_host = env.str("SUPABASE_DB_HOST", default="")
    if supabase_host:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": env.str("SUPABASE_DB_NAME", default="postgres"),
            "USER": env.str("SUPABASE_DB_USER", default="postgres"),
            "PASSWORD": env.str("SUPABASE_DB_PASSWORD", default=""),
            "HOST": supabase_host,
            "PORT": env.int("SUPABASE_DB_PORT", default=5432),
            # Supabase only accepts TLS connections.
            "OPTIONS": {"sslmode": env.str("DB_SSLMODE", default="require")},
        }
    if env.str("DATABASE_URL", default=""):
        database = env.db_url("DATABASE_URL")
    else:
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env.str("SQLITE_PATH", default=str(BASE_DIR / "db.sqlite3")),
        }
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database["OPTIONS"] = {**SQLITE_OPTIONS, **database.get("OPTIONS", {})}
    return database


_default_db = _database_from_env()
if _default_db["ENGINE"].endswith("postgresql"):
    # WSGI workers keep their connection between requests (checked before reuse). The
    # stream service runs every query on its few database threads (STREAM_DB_THREADS), each
    # keeping its own connection the same way (see ai_features/chat/db.py).
    _default_db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    _default_db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _default_db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Password guessing: django-axes locks a username, and separately an address, after
# LOGIN_FAILURE_LIMIT failed logins, for LOGIN_LOCKOUT_MINUTES (a success resets the count).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_FAILURE_LIMIT: int = env.int("LOGIN_FAILURE_LIMIT", default=10)
LOGIN_LOCKOUT_MINUTES: int = env.int("LOGIN_LOCKOUT_MINUTES", default=15)
# The header the platform's proxy puts the client's address in (Render: True-Client-IP);
# empty: the connection's address (REMOTE_ADDR). Never a header clients can set directly.
CLIENT_IP_HEADER: str = env.str("CLIENT_IP_HEADER", default="")
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "ai_features.web.login_guard.client_ip"
AXES_LOCKOUT_CALLABLE = "ai_features.web.login_guard.lockout_response"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "ai_features:chat"
LOGOUT_REDIRECT_URL = "login"

# --- Language: Japanese first, English when the browser prefers it ------------------------
LANGUAGE_CODE = "ja"
LANGUAGES = [("ja", "日本語"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "ai_features" / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Asia/Tokyo")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed, compressed files in production (collectstatic at build time); plain
        # files while developing and in unit tests, where collectstatic has not run.
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env.bool("STATIC_MANIFEST", default=not DEBUG)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Security -----------------------------------------------------------------------------
# Render (and most PaaS) terminate TLS at a proxy that sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# The health check is called by the platform over plain HTTP inside its network.
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Content-Security-Policy (django-csp): scripts and styles only from this origin (no
# inline code), the page talks to itself and to the stream service, nothing frames it.
_stream_origin = env.str("STREAM_API_URL", default="").rstrip("/")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'", *([_stream_origin] if _stream_origin else [])],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# API and stream endpoints answer a CSRF failure in their own format (JSON / SSE event).
CSRF_FAILURE_VIEW = "ai_features.web.csrf.csrf_failure"
X_FRAME_OPTIONS = "DENY"
# Set to a shared parent domain (".example.com") when both services live under it, so the
# stream service receives the session cookie; leave unset on two *.onrender.com hosts.
SESSION_COOKIE_DOMAIN: str | None = env.str("SESSION_COOKIE_DOMAIN", default="") or None
CSRF_COOKIE_DOMAIN: str | None = env.str("CSRF_COOKIE_DOMAIN", default="") or SESSION_COOKIE_DOMAIN

# --- Chat and streaming -------------------------------------------------------------------
STREAM_API_URL: str = env.str("STREAM_API_URL", default="").rstrip("/")
STREAM_CORS_ORIGINS: list[str] = env.list("STREAM_CORS_ORIGINS", default=[])
OPENAI_API_KEY: str = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL: str = env.str("OPENAI_BASE_URL", default="")
OPENAI_MODEL: str = env.str("OPENAI_MODEL", default="gpt-4o-mini")
# The models a user may pick per conversation; OPENAI_MODEL is the default and always one.
OPENAI_MODELS: list[str] = list(
    dict.fromkeys([OPENAI_MODEL, *(m.strip() for m in env.list("OPENAI_MODELS", default=[]))])
)
OPENAI_MODELS = [m for m in OPENAI_MODELS if m]
OPENAI_TIMEOUT: float = env.float("OPENAI_TIMEOUT", default=60.0)
OPENAI_CONNECT_TIMEOUT: float = env.float("OPENAI_CONNECT_TIMEOUT", default=10.0)
OPENAI_MAX_RETRIES: int = env.int("OPENAI_MAX_RETRIES", default=2)
CHAT_SYSTEM_PROMPT: str = env.str(
    "CHAT_SYSTEM_PROMPT",
    default="You are a helpful assistant. Answer in the language the user writes in.",
)
CHAT_MAX_INSTRUCTIONS_CHARS: int = env.int("CHAT_MAX_INSTRUCTIONS_CHARS", default=4000)
# After a conversation's first answer, one small extra request asks the model for a title.
CHAT_AUTO_TITLE: bool = env.bool("CHAT_AUTO_TITLE", default=True)
MAX_CHAT_HISTORY: int = env.int("MAX_CHAT_HISTORY", default=14)
CHAT_MAX_MESSAGE_CHARS: int = env.int("CHAT_MAX_MESSAGE_CHARS", default=8000)
# Characters of context sent to the model (system prompt + history + new message); the
# oldest history goes first. 100,000 characters is roughly 25-50k tokens: well inside
# gpt-4o-mini's 128k-token window, with room left for the answer. 0 turns the limit off.
CHAT_MAX_CONTEXT_CHARS: int = env.int("CHAT_MAX_CONTEXT_CHARS", default=100_000)
CHAT_MAX_BODY_BYTES: int = env.int("CHAT_MAX_BODY_BYTES", default=1024 * 1024)
CHAT_MAX_CONCURRENT_STREAMS: int = env.int("CHAT_MAX_CONCURRENT_STREAMS", default=3)
CHAT_RATE_LIMIT_PER_MINUTE: int = env.int("CHAT_RATE_LIMIT_PER_MINUTE", default=20)
CHAT_SAVE_INTERVAL_SECONDS: float = env.float("CHAT_SAVE_INTERVAL_SECONDS", default=2.0)
STREAM_HEARTBEAT_SECONDS: float = env.float("STREAM_HEARTBEAT_SECONDS", default=15.0)
STREAM_SEND_TIMEOUT_SECONDS: float = env.float("STREAM_SEND_TIMEOUT_SECONDS", default=30.0)
STREAM_SHUTDOWN_GRACE_SECONDS: float = env.float("STREAM_SHUTDOWN_GRACE_SECONDS", default=25.0)
STREAM_TOKEN_MAX_AGE_SECONDS: int = env.int("STREAM_TOKEN_MAX_AGE_SECONDS", default=300)
STREAM_EVENT_LOG_RETENTION_SECONDS: float = env.float(
    "STREAM_EVENT_LOG_RETENTION_SECONDS", default=300.0
)
# A `streaming` answer whose heartbeat (refreshed every few seconds) is older than this is
# taken for dead and marked interrupted.
STREAM_STALE_AFTER_SECONDS: float = env.float("STREAM_STALE_AFTER_SECONDS", default=30.0)
# Names this process's instance, so that after a restart it recognises its previous
# incarnation's answers at once; empty: a random id per process (heartbeat only).
STREAM_INSTANCE_ID: str = env.str("STREAM_INSTANCE_ID", default="")
REDIS_URL: str = env.str("REDIS_URL", default="")
# Threads (each with its own kept database connection) that run the streaming core's ORM
# work, so that units of work do not queue behind each other on one thread; on PostgreSQL
# also the size of the event loop's own connection pool (ai_features/chat/pg.py). SQLite
# always gets one thread: it has one writer, and its shared-cache test database fails
# concurrent writers at once instead of waiting.
STREAM_DB_THREADS: int = env.int("STREAM_DB_THREADS", default=4)
# On PostgreSQL, run a stream's own statements (authentication of a valid session, start,
# partial saves, ending) on the event loop's connections instead of the database threads.
# Off: everything on the threads (costs CPU and latency under load).
STREAM_DB_ON_LOOP: bool = env.bool("STREAM_DB_ON_LOOP", default=True)
# How long (ms) a thread of the stream process may hold the GIL while another waits for it
# (sys.setswitchinterval; Python's own default is 5). A database thread whose query has
# returned waits up to this long for the event loop to let go, once per statement.
STREAM_SWITCH_INTERVAL_MS: float = env.float("STREAM_SWITCH_INTERVAL_MS", default=1.0)
# --- Slow clients and memory (issue 8) ---
# The stream service reads a request body for at most this long (408 after it).
REQUEST_BODY_TIMEOUT_SECONDS: float = env.float("REQUEST_BODY_TIMEOUT_SECONDS", default=10.0)
# Requests in progress at once in one stream process, open streams included (503 above it).
STREAM_MAX_CONNECTIONS: int = env.int("STREAM_MAX_CONNECTIONS", default=2000)
# Estimated bytes the in-memory event logs of one process may hold; when live answers fill
# it, new streams are refused with 503 `server_busy` (finished ones are dropped first).
STREAM_EVENT_LOG_MAX_BYTES: int = env.int("STREAM_EVENT_LOG_MAX_BYTES", default=64 * 1024 * 1024)
# Resume readers one user may have open at once (429 above it).
STREAM_MAX_READERS_PER_USER: int = env.int("STREAM_MAX_READERS_PER_USER", default=10)
# Redis must answer within this, else the caller falls back to process memory ...
REDIS_TIMEOUT_SECONDS: float = env.float("REDIS_TIMEOUT_SECONDS", default=1.0)
# ... and Redis is not asked again for this long (one log line per outage).
REDIS_RETRY_SECONDS: float = env.float("REDIS_RETRY_SECONDS", default=5.0)
# Processes of c3-app-stream on one port (start_stream.sh, python asgi_stream.py). Above 1,
# set REDIS_URL too, or each process keeps its own event logs and limits.
STREAM_WORKERS: int = env.int("STREAM_WORKERS", default=1)
# GET /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset: 404.
METRICS_TOKEN: str = env.str("METRICS_TOKEN", default="")

# --- Logging: one line per record on stdout, with the request id --------------------------
# LOG_FORMAT=json gives one JSON object per line (python-json-logger) for log pipelines;
# the default is one readable line. Both carry level, logger and request id.
LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT: str = env.str("LOG_FORMAT", default="text").lower()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "ai_features.logging.RequestIdFilter"}},
    "formatters": {
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [req=%(request_id)s] %(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # The openai SDK and httpx log request URLs and headers at DEBUG only.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "httpcore2": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        # django-axes names every login attempt at INFO; lockouts stay visible (WARNING).
        "axes": {"level": "WARNING"},
        "django.db.backends": {"level": "INFO"},
    },
}
