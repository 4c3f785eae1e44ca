"""Conversations and their messages: the one record of everything said."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .ids import new_uuid


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=new_uuid, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(_("title"), max_length=200, blank=True, default="")
    # A title the user typed is never replaced by an automatic one.
    title_is_custom = models.BooleanField(default=False)
    # The model chosen for this conversation ("" = the server's default, OPENAI_MODEL).
    model = models.CharField(max_length=200, blank=True, default="")
    # The user's own instructions, sent as a system message after CHAT_SYSTEM_PROMPT.
    instructions = models.TextField(blank=True, default="")
    # The leaf of the version tree on screen: its path to the root is the conversation
    # the user sees, and the only context sent to the model.
    current_message = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or str(self.id)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("user")
        ASSISTANT = "assistant", _("assistant")
        SYSTEM = "system", _("system")

    class Status(models.TextChoices):
        STREAMING = "streaming", _("streaming")
        COMPLETE = "complete", _("complete")
        STOPPED = "stopped", _("stopped")
        ERROR = "error", _("error")
        INTERRUPTED = "interrupted", _("interrupted")

    id = models.UUIDField(primary_key=True, default=new_uuid, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    # Messages form a tree: a regenerated answer or an edited question is a sibling (same
    # parent) of the version it replaces, so every version stays stored.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.COMPLETE, db_index=True
    )
    model = models.CharField(max_length=200, blank=True, default="")
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    error_code = models.CharField(max_length=64, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Which process generates a `streaming` answer ("<instance>/<epoch>") and when it last
    # showed a sign of life: see ai_features/chat/liveness.py.
    producer = models.CharField(max_length=100, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"
