"""Request ids for log lines, shared by both services.

The id is kept in a ContextVar so that it follows a request into sync_to_async threads and
into the generation task it starts (asyncio copies the context into new tasks).
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar

from .ids import new_hex

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
# What a proxy's id looks like (UUIDs, hex, Render's ids): ASCII letters, digits and a few
# separators, bounded, so a client cannot write arbitrary text into every log line.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def new_request_id(incoming: str | None = None) -> str:
    """Take the proxy's id (Render sends X-Request-ID) when it looks sane, else make one."""
    if incoming and _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return new_hex()


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True
