"""The chat page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie

from .api_views import token_payload


@never_cache
@ensure_csrf_cookie
@login_required
def chat_page(request: HttpRequest) -> HttpResponse:
    token = token_payload(request)
    config = {
        # Empty means "this server": the page then posts to c3-app's fallback endpoint.
        "streamUrl": settings.STREAM_API_URL,
        "streamPath": "/api/ai/chat/stream/",
        "token": token["token"],
        "tokenExpiresIn": token["expires_in"],
        "tokenUrl": reverse("ai_features:stream_token"),
        "historyUrl": reverse("ai_features:chat_history"),
        "conversationsUrl": reverse("ai_features:conversation_list"),
        "maxMessageChars": settings.CHAT_MAX_MESSAGE_CHARS,
        "username": request.user.get_username(),
    }
    return render(request, "ai_features/chat.html", {"chat_config": config})
