from django.urls import path

from .web import api_views, page_views, stream_views

app_name = "ai_features"

urlpatterns = [
    path("ai/chat/", page_views.chat_page, name="chat"),
    path("ai/chat/<uuid:conversation_id>/", page_views.chat_page, name="conversation_page"),
    path("api/ai/chat/stream/", stream_views.stream_chat, name="stream_chat"),
    path("api/ai/chat/stream/<str:message_id>/", stream_views.resume_chat, name="resume_chat"),
    path("api/ai/chat/stream/<str:message_id>/stop/", stream_views.stop_chat, name="stop_chat"),
    path("api/ai/chat/token/", api_views.stream_token, name="stream_token"),
    path("api/ai/chat/history/", api_views.chat_history, name="chat_history"),
    path("api/ai/conversations/", api_views.conversation_list, name="conversation_list"),
    path(
        "api/ai/conversations/<str:conversation_id>/",
        api_views.conversation_detail,
        name="conversation_detail",
    ),
    path(
        "api/ai/conversations/<str:conversation_id>/current/",
        api_views.conversation_current,
        name="conversation_current",
    ),
    path(
        "api/ai/conversations/<str:conversation_id>/export/",
        api_views.conversation_export,
        name="conversation_export",
    ),
    path("api/ai/models/", api_views.model_list, name="model_list"),
]
