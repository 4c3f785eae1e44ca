from django.contrib import admin

from .models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("role", "status", "content", "model", "finish_reason", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "model", "created_at", "updated_at")
    list_filter = ("created_at",)
    search_fields = ("title", "owner__username")
    # A select of every message would be enormous.
    raw_id_fields = ("current_message",)
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("conversation", "role", "status", "model", "finish_reason", "created_at")
    list_filter = ("role", "status", "model")
    search_fields = ("content",)
    raw_id_fields = ("conversation", "parent")
