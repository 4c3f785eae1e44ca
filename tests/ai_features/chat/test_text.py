"""The normaliser where model text enters the core (ai_features/chat/text.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ai_features.chat.text import (
    MAX_TOKEN_COUNT,
    TextNormalizer,
    clean_finish_reason,
    clean_token_count,
    clean_usage,
    neutralise_bidi,
    storable,
)

# Any code point, surrogates and NUL included (what a JSON string can carry).
any_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF))


def feed_all(chunks: list[str]) -> list[str]:
    normalizer = TextNormalizer()
    return [normalizer.feed(c) for c in chunks] + [normalizer.flush()]


def test_a_surrogate_pair_split_across_chunks_is_joined() -> None:
    assert feed_all(["a\ud83d", "\ude00b"]) == ["a", "\U0001f600b", ""]


def test_lone_surrogates_and_nul_become_the_replacement_character() -> None:
    assert feed_all(["x\ude00y", "\x00", "z\ud83d"]) == ["x\ufffdy", "\ufffd", "z", "\ufffd"]


def test_ordinary_text_passes_unchanged() -> None:
    text = "こんにちは 😀 tok0 \n```py\n```"
    assert storable(text) is text
    assert feed_all([text]) == [text, ""]


@given(st.lists(any_text, max_size=8))
def test_any_chunks_give_utf8_text_without_nul_whatever_the_split(chunks: list[str]) -> None:
    out = "".join(feed_all(chunks))
    assert "\x00" not in out
    out.encode("utf-8")  # raises on any surrogate left
    # The split does not matter: the same text in one chunk cleans to the same result.
    assert out == "".join(feed_all(["".join(chunks)]))


@given(any_text)
def test_valid_text_is_kept_as_is(text: str) -> None:
    clean = storable(text)
    assert storable(clean) == clean


def test_finish_reason_is_a_known_value_or_cut_to_the_column() -> None:
    assert clean_finish_reason("length") == "length"
    assert clean_finish_reason(None) == "stop"
    assert clean_finish_reason(7) == "stop"
    odd = clean_finish_reason("x" * 500 + "\x00")
    assert odd == "x" * 32
    assert clean_finish_reason("a\x00b") == "a\ufffdb"


def test_token_counts_are_clamped_or_dropped() -> None:
    assert clean_token_count(5) == 5
    assert clean_token_count(-3) == 0
    assert clean_token_count(2**40) == MAX_TOKEN_COUNT
    assert clean_token_count("12") is None
    assert clean_token_count(1.5) is None
    assert clean_token_count(True) is None
    assert clean_usage(2**40, -1) == {
        "prompt_tokens": MAX_TOKEN_COUNT,
        "completion_tokens": 0,
        "total_tokens": MAX_TOKEN_COUNT,
    }
    assert clean_usage(3, None) is None


def test_bidi_controls_are_removed() -> None:
    controls = "".join(chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
    assert neutralise_bidi(f"invoice{controls}.txt") == "invoice.txt"
    assert neutralise_bidi("עברית and English") == "עברית and English"
