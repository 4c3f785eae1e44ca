"""Failures found before a stream starts, each with its HTTP status and a stable code.

Messages are written for the person chatting: they never carry exception text, SQL, keys or
URLs. The page maps `code` to its own translated text; `message` is the Japanese default.
"""

from __future__ import annotations

from typing import Any

from .events import error_data


class ChatError(Exception):
    status: int = 400
    code: str = "invalid_request"
    default_message: str = "リクエストが正しくありません。"

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        self.message = message or self.default_message
        self.retry_after = retry_after
        super().__init__(self.message)

    def event_data(self) -> dict[str, Any]:
        """The `error` event of a refused stream request (no message id: nothing started)."""
        return error_data(self.code, self.message)


class InvalidRequest(ChatError):
    status, code = 400, "invalid_request"


class Unauthenticated(ChatError):
    status, code = 401, "unauthenticated"
    default_message = "ログインが必要です。ページを再読み込みしてください。"


class CsrfFailed(ChatError):
    status, code = 403, "csrf_failed"
    default_message = "CSRF の確認に失敗しました。ページを再読み込みしてください。"


class NotFound(ChatError):
    status, code = 404, "not_found"
    default_message = "見つかりません。"


class RequestTimeout(ChatError):
    """The body did not arrive within REQUEST_BODY_TIMEOUT_SECONDS."""

    status, code = 408, "request_timeout"
    default_message = "リクエストの受信がタイムアウトしました。もう一度お試しください。"


class LengthRequired(ChatError):
    status, code = 411, "length_required"
    default_message = "Content-Length が必要です。"


class PayloadTooLarge(ChatError):
    status, code = 413, "payload_too_large"
    default_message = "リクエストが大きすぎます。"


class RateLimited(ChatError):
    status, code = 429, "rate_limited"
    default_message = "リクエストが多すぎます。しばらく待ってから再試行してください。"


class ServerBusy(ChatError):
    """Too many connections or too much stream memory in this process right now."""

    status, code = 503, "server_busy"
    default_message = "サーバーが混み合っています。少し待ってから再試行してください。"


class TooManyStreams(RateLimited):
    """The per-user cap on generations running at once (same answer as the rate limit;
    told apart only in the metrics)."""

    default_message = "同時に生成できる回答の数を超えています。"


class ServerRestarting(ChatError):
    status, code = 503, "server_restarting"
    default_message = "サーバーが再起動中です。少し待ってから再試行してください。"


class InternalError(ChatError):
    """Anything unexpected (a database outage, a bug): logged with its traceback, shown to
    the user only as this."""

    status, code = 500, "internal_error"
    default_message = "内部エラーが発生しました。もう一度お試しください。"
