"""c3-app's JSON API: stream tokens, history and conversations (session auth + CSRF)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .. import conversations
from ..auth.tokens import mint_stream_token
from ..chat.errors import ChatError, InvalidRequest, Unauthenticated
from ..chat.stream_params import non_negative_int
from .replies import json_error

MAX_JSON_BODY = 64 * 1024
# DELETE /api/ai/conversations/ deletes every conversation only with this in its body.
DELETE_ALL_CONFIRMATION = "delete_all"


def api_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """JSON API conventions: 401 (not a login redirect), ChatErrors as JSON, no caching."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return json_error(Unauthenticated())
        try:
            return view(request, *args, **kwargs)
        except ChatError as error:
            return json_error(error)

    return never_cache(wrapper)


def json_body(request: HttpRequest) -> dict[str, Any]:
    if len(request.body) > MAX_JSON_BODY:
        raise InvalidRequest("リクエストが大きすぎます。")
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise InvalidRequest("JSON の形式が正しくありません。") from None
    if not isinstance(data, dict):
        raise InvalidRequest("JSON オブジェクトを送ってください。")
    return data


def token_payload(request: HttpRequest) -> dict[str, Any]:
    session_key = request.session.session_key
    assert session_key is not None  # both callers require a signed-in user: a stored session
    return {
        "token": mint_stream_token(session_key, request.user.pk),
        "expires_in": settings.STREAM_TOKEN_MAX_AGE_SECONDS,
        "stream_url": settings.STREAM_API_URL,
    }


@require_GET
@api_view
def stream_token(request: HttpRequest) -> HttpResponse:
    return JsonResponse(token_payload(request))


def _limit(request: HttpRequest) -> int:
    raw = request.GET.get("limit", "")
    if not raw:
        return conversations.DEFAULT_HISTORY_LIMIT
    return non_negative_int(raw, 9, "limit は正の整数です。")


def _flag(request: HttpRequest, name: str) -> bool:
    return request.GET.get(name, "") in ("1", "true")


def history_payload(conversation, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "conversation_id": str(conversation.pk) if conversation else None,
        "conversation": conversations.conversation_json(conversation) if conversation else None,
        "history": messages,
    }


@require_http_methods(["GET", "DELETE"])
@api_view
def chat_history(request: HttpRequest) -> HttpResponse:
    if request.method == "DELETE":
        # Always one conversation: deleting everything is its own request (see
        # conversation_list), never what a missing or empty id falls back to.
        deleted = conversations.clear_history(request.user, request.GET.get("conversation_id"))
        return JsonResponse({"deleted": deleted})
    conversation, messages = conversations.history(
        request.user,
        request.GET.get("conversation_id") or None,
        _limit(request),
        all_versions=_flag(request, "all_versions"),
    )
    return JsonResponse(history_payload(conversation, messages))


@require_http_methods(["GET", "POST", "DELETE"])
@api_view
def conversation_list(request: HttpRequest) -> HttpResponse:
    if request.method == "DELETE":
        if json_body(request).get("confirm") != DELETE_ALL_CONFIRMATION:
            raise InvalidRequest(
                "すべての会話を削除するには "
                f'{{"confirm": "{DELETE_ALL_CONFIRMATION}"}} を送ってください。'
            )
        return JsonResponse({"deleted": conversations.delete_all_conversations(request.user)})
    if request.method == "POST":
        title = conversations.clean_title(json_body(request).get("title", ""))
        conversation = conversations.create_conversation(request.user, title)
        return JsonResponse(conversations.conversation_json(conversation), status=201)
    found = conversations.list_conversations(request.user, request.GET.get("q", ""))
    return JsonResponse({"conversations": [conversations.conversation_json(c) for c in found]})


@require_http_methods(["GET", "PATCH", "DELETE"])
@api_view
def conversation_detail(request: HttpRequest, conversation_id: str) -> HttpResponse:
    if request.method == "DELETE":
        conversations.delete_conversation(request.user, conversation_id)
        return HttpResponse(status=204)
    if request.method == "PATCH":
        conversation = conversations.update_conversation(
            request.user, conversation_id, json_body(request)
        )
    else:
        conversation = conversations.get_conversation(request.user, conversation_id)
    return JsonResponse(conversations.conversation_json(conversation))


@require_POST
@api_view
def conversation_current(request: HttpRequest, conversation_id: str) -> HttpResponse:
    conversation, messages = conversations.set_current_message(
        request.user, conversation_id, json_body(request).get("message_id")
    )
    return JsonResponse(history_payload(conversation, messages))


EXPORT_FORMATS = {
    "md": ("text/markdown; charset=utf-8", conversations.export_markdown),
    "json": ("application/json; charset=utf-8", conversations.export_json),
}


@require_GET
@api_view
def conversation_export(request: HttpRequest, conversation_id: str) -> HttpResponse:
    fmt = request.GET.get("format", "md")
    if fmt not in EXPORT_FORMATS:
        raise InvalidRequest("format は md か json です。")
    content_type, render = EXPORT_FORMATS[fmt]
    conversation, messages = conversations.export_conversation(request.user, conversation_id)
    response = HttpResponse(render(conversation, messages), content_type=content_type)
    disposition = content_disposition_header(
        as_attachment=True, filename=f"{export_name(conversation)}.{fmt}"
    )
    assert disposition is not None  # None only for an inline answer without a filename
    response["Content-Disposition"] = disposition
    return response


def export_name(conversation) -> str:
    """The title, minus characters file systems refuse (non-ASCII kept, RFC 5987)."""
    name = "".join(c for c in conversation.title if c not in '\\/:*?"<>|' and c.isprintable())
    return name.strip(" .")[:80] or f"conversation-{conversation.pk}"


@require_GET
@api_view
def model_list(request: HttpRequest) -> HttpResponse:
    return JsonResponse(models_payload())


def models_payload() -> dict[str, Any]:
    return {"models": settings.OPENAI_MODELS, "default": settings.OPENAI_MODEL}
