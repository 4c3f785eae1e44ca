"""gunicorn settings for c3-app, used by render.yaml (`gunicorn -c gunicorn.conf.py`), `make run`
and the test servers. Every value comes from the environment with the default shown.

gunicorn cannot protect itself from slow clients: a gthread worker gives a thread to a
connection once it is readable and that thread then waits for the rest of the request. So
in production c3-app must sit behind a buffering reverse proxy (Render's does) that hands
gunicorn whole requests; these settings only keep the exposure small.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

# Render sets PORT; without it gunicorn keeps its own default (127.0.0.1:8000) or --bind.
if "PORT" in os.environ:
    bind = f"0.0.0.0:{os.environ['PORT']}"  # noqa: S104 - behind Render's proxy
worker_class = "gthread"
# WEB_CONCURRENCY is the name gunicorn (and Render) already use for the worker count.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# The worker heartbeat: a worker silent this long is killed and replaced.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# On SIGTERM, how long running requests get; fallback streams are ended (with a final
# event, the row stored) a few seconds before it runs out: see post_worker_init.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Idle keep-alive connections are closed quickly, so that they hold no thread for long.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# No access log: it prints query strings; the app writes its own line (request_id.py).
accesslog = None


# A multiprocess metrics directory this master made (and removes when it exits).
_made_metrics_dirs: list[str] = []


def on_starting(server) -> None:
    """With several workers, give them one fresh PROMETHEUS_MULTIPROC_DIR before any is
    forked: each worker then writes its samples there (prometheus-client reads the variable
    when it is first imported, which happens in the worker as it loads the app) and a scrape
    of /metrics, whichever worker answers it, shows the sum over all of them. Here rather
    than at module load because only the server knows the final worker count (--workers
    and -w override WEB_CONCURRENCY). A directory set by the operator is used as it is."""
    if server.cfg.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        path = tempfile.mkdtemp(prefix="c3-metrics-")
        _made_metrics_dirs.append(path)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


def child_exit(server, worker) -> None:
    """A worker is gone (restart, crash, SIGKILL): drop its live gauges from the sum
    (c3_streams_active would otherwise count its streams forever); its counters stay, so
    totals never go backwards."""
    from ai_features.metrics import mark_process_dead

    mark_process_dead(worker.pid)


def on_exit(server) -> None:
    for path in _made_metrics_dirs:
        shutil.rmtree(path, ignore_errors=True)


def drain_margin(graceful: float) -> float:
    """Seconds kept back from the graceful timeout to cancel, store and send final events."""
    return min(5.0, graceful / 3)


def post_worker_init(worker) -> None:
    """Chain the worker's SIGTERM handler: begin draining the core's generations at once,
    so they end inside the graceful timeout instead of being cut when the worker exits."""
    previous = signal.getsignal(signal.SIGTERM)
    graceful = float(worker.cfg.graceful_timeout)

    def on_sigterm(signum, frame) -> None:
        from ai_features.web.bridge import core_loop

        core_loop.begin_drain(graceful - drain_margin(graceful))
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
