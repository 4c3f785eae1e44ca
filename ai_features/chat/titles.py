"""Automatic conversation titles: one small extra model request after the first answer."""

from __future__ import annotations

import asyncio
import logging

from ..providers import ChatProvider, ProviderError
from . import persistence
from .persistence import TITLE_LENGTH, PreparedChat

logger = logging.getLogger(__name__)

TITLE_PROMPT = (
    "Write a short title (at most 6 words) for a conversation that starts with the user's "
    "message below, in the language of that message. Reply with the title only: no quotes, "
    "no punctuation at the end."
)
TITLE_TIMEOUT_SECONDS = 30.0
QUESTION_CHARS = 1000  # the start of a long question says what it is about


def clean_title(raw: str) -> str:
    """One line, no surrounding quotes, at most TITLE_LENGTH characters."""
    line = " ".join(raw.split())
    # Quotes, Markdown marks and a final full stop, in any order around the title.
    line = line.strip("\"'「」『』“”*# 。.")
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"


async def agenerate_title(provider: ChatProvider, prepared: PreparedChat) -> str | None:
    """Ask the model for a title and store it unless the user renamed the conversation.

    Never raises: a title is a nicety, the cut-off question stays when it fails."""
    question = next((m["content"] for m in reversed(prepared.context) if m["role"] == "user"), "")
    messages = [
        {"role": "system", "content": TITLE_PROMPT},
        {"role": "user", "content": question[:QUESTION_CHARS]},
    ]
    try:
        async with asyncio.timeout(TITLE_TIMEOUT_SECONDS):
            title = clean_title(
                await provider.acomplete(messages, model=prepared.model, max_tokens=24)
            )
            if title and await persistence.aset_auto_title(prepared.conversation_id, title=title):
                return title
    except (ProviderError, TimeoutError) as exc:
        logger.info("no automatic title: %s", getattr(exc, "code", "timeout"))
    except Exception:
        logger.exception("automatic title failed conversation=%s", prepared.conversation_id)
    return None
