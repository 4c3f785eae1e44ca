"""Making text and metadata from outside storable and displayable, once, where it enters.

A model's stream is JSON, which can carry what neither UTF-8 nor PostgreSQL accepts: NUL
(U+0000) and surrogates. A surrogate pair may even be split across two chunks. The same
cleaned text goes to readers and to the database, so what was shown is what is stored.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
# Finish reasons the OpenAI API documents (plus this project's own endings); anything else
# is kept, cleaned and cut to the column's length (Message.finish_reason, max_length=32).
KNOWN_FINISH_REASONS = frozenset(
    {"stop", "length", "content_filter", "tool_calls", "function_call", "stopped"}
)
FINISH_REASON_MAX_CHARS = 32
# Token counts are stored in PositiveIntegerField columns (a 32-bit integer on PostgreSQL).
MAX_TOKEN_COUNT = 2**31 - 1
# Bidi embedding/override (U+202A-U+202E) and isolate (U+2066-U+2069) controls let a title
# display as something other than what it is ("Trojan source").
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _is_high_surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udbff"


def storable(text: str) -> str:
    """`text` with surrogate pairs joined, lone surrogates and NUL replaced by U+FFFD."""
    if "\x00" not in text:
        try:
            text.encode("utf-8")
            return text  # the common case: nothing to do
        except UnicodeEncodeError:
            pass
    # UTF-16 round trip: a pair of surrogate code points becomes the one character they
    # encode; a lone one cannot be decoded and becomes U+FFFD.
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return joined.replace("\x00", REPLACEMENT)


class TextNormalizer:
    """Cleans a stream of text chunks; a high surrogate at the end of a chunk is held back
    until the next chunk shows whether its other half follows."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, chunk: str) -> str:
        text = self._pending + chunk
        self._pending = ""
        if text and _is_high_surrogate(text[-1]):
            text, self._pending = text[:-1], text[-1]
        return storable(text)

    def flush(self) -> str:
        """Whatever is still held back (a high surrogate that no low one followed)."""
        pending, self._pending = self._pending, ""
        return storable(pending)


def clean_finish_reason(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return "stop"
    if value in KNOWN_FINISH_REASONS:
        return value
    return storable(value)[:FINISH_REASON_MAX_CHARS]


def clean_token_count(value: Any) -> int | None:
    """A token count clamped to 0..2^31-1; None for anything that is not an integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return max(0, min(value, MAX_TOKEN_COUNT))


def neutralise_bidi(text: str) -> str:
    """Drop the bidi controls that could make a title display as something else."""
    return _BIDI_CONTROLS.sub("", text)


def clean_usage(prompt_tokens: Any, completion_tokens: Any) -> dict[str, int] | None:
    """Usage as stored and sent in `done`; None (unknown) when a count is not an integer."""
    prompt, completion = clean_token_count(prompt_tokens), clean_token_count(completion_tokens)
    if prompt is None or completion is None:
        return None
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
