"""The chat page."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie

from .. import conversations
from ..chat.errors import NotFound
from .api_views import models_payload, token_payload


@never_cache
@ensure_csrf_cookie
@login_required
def chat_page(request: HttpRequest, conversation_id: uuid.UUID | None = None) -> HttpResponse:
    """`/ai/chat/` a new conversation; `/ai/chat/<id>/` one of the user's (else 404)."""
    if conversation_id is not None:
        try:
            conversations.get_conversation(request.user, str(conversation_id))
        except NotFound:
            raise Http404() from None
    token = token_payload(request)
    models = models_payload()
    config = {
        # Empty means "this server": the page then posts to c3-app's fallback endpoint.
        "streamUrl": settings.STREAM_API_URL,
        "streamPath": "/api/ai/chat/stream/",
        "token": token["token"],
        "tokenExpiresIn": token["expires_in"],
        "tokenUrl": reverse("ai_features:stream_token"),
        "historyUrl": reverse("ai_features:chat_history"),
        "conversationsUrl": reverse("ai_features:conversation_list"),
        "chatUrl": reverse("ai_features:chat"),
        # The conversation this URL opens; None: a new one (created with its first message).
        "conversationId": str(conversation_id) if conversation_id else None,
        "models": models["models"],
        "defaultModel": models["default"],
        "maxInstructionsChars": settings.CHAT_MAX_INSTRUCTIONS_CHARS,
        "maxMessageChars": settings.CHAT_MAX_MESSAGE_CHARS,
        "username": request.user.get_username(),
    }
    return render(request, "ai_features/chat.html", {"chat_config": config})
