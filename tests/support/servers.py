"""Real servers on loopback for integration tests: gunicorn (c3-app), uvicorn
(c3-app-stream) and the fake upstream, sharing one real database.

`Stack` starts them as subprocesses exactly as production does (same entry points, same
settings module), with the environment a test asks for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from scripts.run_local import stream_argv

from .fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
POSTGRES_ADMIN_DSN = os.environ.get(
    "C3_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_DSN, connect_timeout=3):
            return True
    except Exception:
        return False


@dataclass
class Database:
    """A fresh database for one stack: a SQLite file, or a new PostgreSQL database."""

    kind: str
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    _pg_name: str | None = None

    def __enter__(self) -> Database:
        if self.kind == "sqlite":
            self.env = {"SQLITE_PATH": str(self.tmp / "c3.sqlite3")}
        else:
            import psycopg

            self._pg_name = f"c3_it_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self._pg_name}"')
            base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0]
            self.env = {"DATABASE_URL": f"{base}/{self._pg_name}"}
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pg_name:
            import psycopg

            with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)')


class Server:
    """One server subprocess with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, log_dir: Path):
        self.name, self.argv, self.env, self.port = name, argv, env, port
        self.log_path = log_dir / f"{name}-{port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, health_path: str = "/health/", timeout: float = 30) -> Server:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.get(f"http://127.0.0.1:{self.port}{health_path}", timeout=1).status_code
                    == 200
                ):
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become healthy:\n{self.log_text()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 15) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()


@dataclass
class Stack:
    """c3-app (gunicorn) + c3-app-stream (uvicorn) + fake upstream on one database.

    `app_host`/`stream_host` choose the host names the browser-facing URLs use: 127.0.0.1
    and localhost are different sites to a browser, so the default exercises the
    cross-site token path.
    """

    database: Database
    tmp: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    app_host: str = "127.0.0.1"
    stream_host: str = "localhost"
    stream_api_url: bool = True

    def __post_init__(self) -> None:
        self.app_port, self.stream_port = free_port(), free_port()
        self.upstream = FakeUpstream()
        self.app: Server | None = None
        self.stream: Server | None = None

    @property
    def app_url(self) -> str:
        return f"http://{self.app_host}:{self.app_port}"

    @property
    def stream_url(self) -> str:
        return f"http://{self.stream_host}:{self.stream_port}"

    def env(self) -> dict[str, str]:
        from tests.support.test_env import TEST_ENV

        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_"))}
        env.update(TEST_ENV)
        env.update(self.database.env)
        origins = f"http://127.0.0.1:{self.app_port},http://localhost:{self.app_port}"
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "c3_app.settings",
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "INFO",
                "OPENAI_BASE_URL": self.upstream.base_url,
                "OPENAI_API_KEY": "sk-test-never-logged-0123456789",
                "OPENAI_MODEL": "fake",
                "OPENAI_MAX_RETRIES": "2",
                "STREAM_API_URL": self.stream_url if self.stream_api_url else "",
                "STREAM_CORS_ORIGINS": origins,
                "CSRF_TRUSTED_ORIGINS": origins,
                "STATIC_ROOT": str(self.tmp / "static"),
                "STATIC_MANIFEST": "true",
                "CHAT_RATE_LIMIT_PER_MINUTE": "1000",
                "CHAT_MAX_CONCURRENT_STREAMS": "50",
            }
        )
        env.update(self.extra_env)
        return env

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            check=check,
        )

    def create_user(self, username: str, password: str) -> None:
        code = (
            "from django.contrib.auth import get_user_model as g; "
            f"g().objects.create_user({username!r}, password={password!r})"
        )
        self.manage("shell", "-c", code)

    def __enter__(self) -> Stack:
        log_dir = ARTIFACTS / "server-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.upstream.__enter__()
        try:
            self.manage("migrate", "--noinput", "-v", "0")
            self.manage("collectstatic", "--noinput", "-v", "0")
            env = self.env()
            self.app = Server(
                "gunicorn",
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "c3_app.wsgi:application",
                    "-c",  # the shipped configuration (its SIGTERM drain included)
                    "gunicorn.conf.py",
                    "--bind",
                    f"127.0.0.1:{self.app_port}",
                    "--worker-class",
                    "gthread",
                    "--workers",
                    "1",
                    "--threads",
                    "8",
                    "--timeout",
                    "120",
                    "--graceful-timeout",
                    "5",
                ],
                env,
                self.app_port,
                log_dir,
            )
            self.stream = self.stream_server(self.stream_port, env, log_dir)
            self.app.start()
            self.stream.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def stream_server(
        self, port: int, env: dict[str, str] | None = None, log_dir: Path | None = None
    ) -> Server:
        """A c3-app-stream process (not started) on `port`, as start_stream.sh runs it; a
        test may start more than one on the same database."""
        return Server(
            "uvicorn",
            stream_argv(port),
            env or self.env(),
            port,
            log_dir or ARTIFACTS / "server-logs",
        )

    def restart_stream(self) -> None:
        assert self.stream is not None
        self.stream.stop()
        self.stream.start()

    def __exit__(self, *exc: object) -> None:
        for server in (self.stream, self.app):
            if server is not None:
                server.stop()
        self.upstream.__exit__(None, None, None)

    def logs(self) -> str:
        return "".join(s.log_text() for s in (self.app, self.stream) if s is not None)


@contextlib.contextmanager
def running_stack(kind: str, tmp: Path, **kwargs) -> Iterator[Stack]:
    with Database(kind, tmp) as database, Stack(database, tmp, **kwargs) as stack:
        yield stack
