"""LLM providers behind one small interface (see base.py)."""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings

from .base import ChatProvider, Delta, ProviderError, Usage

__all__ = ["ChatProvider", "Delta", "ProviderError", "Usage", "get_provider"]


@lru_cache(maxsize=1)
def get_provider() -> ChatProvider:
    """One provider (and so one HTTP client) per process."""
    if settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL:
        from .openai_compat import OpenAICompatibleProvider

        return OpenAICompatibleProvider.from_settings()
    from .demo import DemoProvider

    return DemoProvider()
