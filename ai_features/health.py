"""What `/health/` reports on both services: the database and Redis, separately.

The answer is always HTTP 200 while the process itself works: a restart would not bring
back a database or a Redis, so an outage of either is `"status": "degraded"` (new streams
still run in the process's memory when Redis is down), never a failed health check.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import close_old_connections, connection

logger = logging.getLogger(__name__)


def check_database() -> str:
    """`ok` or `unavailable` (sync: call through db_task from async code)."""
    close_old_connections()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:
        logger.warning("health: database unavailable (%s)", type(exc).__name__)
        return "unavailable"
    finally:
        close_old_connections()


def health_payload(database: str, redis: str, **extra: Any) -> dict[str, Any]:
    degraded = database != "ok" or redis == "unavailable"
    return {
        "status": "degraded" if degraded else "ok",
        **extra,
        "database": database,
        "redis": redis,
    }
