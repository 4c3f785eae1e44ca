"""`make run`: a working local setup on a fresh machine, in one command.

Migrates the embedded SQLite database, ensures the demo/demo user (DEBUG only), then runs
c3-app (gunicorn, gunicorn.conf.py) on http://127.0.0.1:8000 and c3-app-stream (uvicorn) on
http://127.0.0.1:8001 until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def local_env() -> dict[str, str]:
    # The environment wins, then `.env`, then these local defaults: read `.env` first so
    # that the defaults below only fill what neither sets.
    import environ

    environ.Env.read_env(os.environ.get("C3_ENV_FILE", ROOT / ".env"))
    # Read after `.env`, so APP_PORT and STREAM_PORT may be set there too.
    app_port = os.environ.get("APP_PORT", "8000")
    stream_port = os.environ.get("STREAM_PORT", "8001")
    env = dict(os.environ)
    defaults = {
        "DEBUG": "true",
        "APP_PORT": app_port,
        "STREAM_PORT": stream_port,
        "STREAM_API_URL": f"http://127.0.0.1:{stream_port}",
        "STREAM_CORS_ORIGINS": f"http://127.0.0.1:{app_port},http://localhost:{app_port}",
        "CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{app_port},http://localhost:{app_port}",
        "DJANGO_SETTINGS_MODULE": "c3_app.settings",
        "PYTHONUNBUFFERED": "1",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    return env


def stream_argv(port: int, graceful_timeout: str = "40") -> list[str]:
    """c3-app-stream on loopback under this Python's uvicorn, with start_stream.sh's
    timeouts (the integration tests start it the same way, tests/support/servers.py)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "asgi_stream:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--timeout-keep-alive",
        "300",
        "--timeout-graceful-shutdown",  # as start_stream.sh
        graceful_timeout,
        "--no-access-log",  # it prints query strings (resume URLs carry tokens)
    ]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C and a plain `kill` both stop the two servers (SIGINT may arrive ignored when
    # started from a script in the background, so the handler is installed explicitly).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    env = local_env()
    app_port, stream_port = int(env["APP_PORT"]), int(env["STREAM_PORT"])
    python = sys.executable
    subprocess.run(
        [python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    subprocess.run([python, "manage.py", "ensure_demo_user"], cwd=ROOT, env=env, check=True)
    processes = [
        # gunicorn with the production configuration (gunicorn.conf.py), one worker.
        subprocess.Popen(
            [
                python,
                "-m",
                "gunicorn",
                "c3_app.wsgi:application",
                "-c",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{app_port}",
                "--workers",
                "1",
            ],
            cwd=ROOT,
            env=env,
        ),
        subprocess.Popen(
            stream_argv(stream_port, env.get("STREAM_GRACEFUL_TIMEOUT", "40")), cwd=ROOT, env=env
        ),
    ]
    print(
        f"\n  c3-app:        http://127.0.0.1:{app_port}/   (log in as demo / demo)\n"
        f"  c3-app-stream: http://127.0.0.1:{stream_port}/health/\n"
        "  Ctrl-C stops both.\n",
        flush=True,
    )
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # the stream service drains on it
        for process in processes:
            try:
                # Both drain on SIGTERM: gunicorn within GUNICORN_GRACEFUL_TIMEOUT (30),
                # uvicorn within STREAM_GRACEFUL_TIMEOUT (40), as start_stream.sh does.
                process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
