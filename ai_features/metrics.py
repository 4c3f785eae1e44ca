"""Prometheus metrics of the streaming core, served at `GET /metrics` by both services.

With several worker processes (STREAM_WORKERS > 1, gunicorn --workers N) each process
writes its samples under PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode)
and a scrape of any worker shows the sum over all of them. The directory must exist and be
empty when the service starts; start_stream.sh / asgi_stream.py make one when needed.
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

STREAMS_ACTIVE = Gauge(
    "c3_streams_active",
    "Generations running now.",
    multiprocess_mode="livesum",
)
STREAMS_TOTAL = Counter(
    "c3_streams", "Generations ended, by final status.", ["status"]
)  # exposed as c3_streams_total
TIME_TO_FIRST_TOKEN = Histogram(
    "c3_time_to_first_token_seconds",
    "From the start of a generation to its first text from the model.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
INTER_TOKEN_GAP = Histogram(
    "c3_inter_token_gap_seconds",
    "Time between two pieces of text from the model.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
TOKENS_RELAYED = Counter("c3_tokens_relayed", "Pieces of text relayed from the model.")
UPSTREAM_ERRORS = Counter("c3_upstream_errors", "Generations failed upstream, by code.", ["code"])
REQUESTS_REFUSED = Counter(
    "c3_requests_refused",
    "New streams refused before they started, by reason.",
    ["reason"],
)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def render_latest() -> tuple[bytes, str]:
    """The exposition text (summed over all worker processes in multiprocess mode)."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def metrics_access(authorization: str | None) -> int:
    """200 to serve, 404 when METRICS_TOKEN is unset (no metrics endpoint at all), 401 for
    a missing or wrong bearer token (compared in constant time)."""
    token = settings.METRICS_TOKEN
    if not token:
        return 404
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        return 401
    return 200


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (gunicorn's child_exit hook calls this)."""
    if multiprocess_enabled():
        _multiprocess.mark_process_dead(pid)
