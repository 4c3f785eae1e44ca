"""Small request parameters shared by both servers' stream routes."""

from __future__ import annotations

from .errors import InvalidRequest


def last_event_id_from(header: str | None, query: str | None) -> int:
    """Last-Event-ID from the header (EventSource sends it on reconnect) or ?last_event_id=."""
    raw = header if header not in (None, "") else query
    if raw in (None, ""):
        return 0
    return non_negative_int(raw, 12, "Last-Event-ID は 0 以上の整数です。")


def non_negative_int(raw: str, max_digits: int, error: str) -> int:
    """ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses."""
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > max_digits:
        raise InvalidRequest(error)
    return int(raw)
