"""Small request parameters shared by both servers' stream routes."""

from __future__ import annotations

from .errors import InvalidRequest


def last_event_id_from(header: str | None, query: str | None) -> int:
    """Last-Event-ID from the header (EventSource sends it on reconnect) or ?last_event_id=."""
    raw = header if header not in (None, "") else query
    if raw in (None, ""):
        return 0
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 12:
        raise InvalidRequest("Last-Event-ID は 0 以上の整数です。")
    return int(raw)
