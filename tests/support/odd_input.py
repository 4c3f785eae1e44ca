"""Hypothesis strategies for "anything a client could send", shared by the in-process and
the real-server properties (no 5xx from any query, header, path or body field)."""

from __future__ import annotations

from hypothesis import strategies as st

# Every code point, surrogates and NUL included: what JSON and percent-encoding can carry.
any_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
# Text a URL can carry once percent-encoded as UTF-8 (no surrogates).
url_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
# A header value as it reaches an application: latin-1, without CR, LF or NUL (servers and
# clients refuse those), with the digits int() refuses ("²" is 0xB2) made likely.
header_text = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40),
    st.sampled_from(["²", "¹²", "0²", " 7 ", "-1", "1e3", "0x10", "9" * 30]),
)
# Values of any JSON type, for body fields.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3)
    ),
    max_leaves=6,
)
# Ids: mostly junk, sometimes the shape of a UUID.
ids = st.one_of(any_text, st.uuids().map(str), st.sampled_from(["", " ", "null", "0", "²"]))
