"""Hypothesis strategies for "anything a client could send", shared by the in-process and
the real-server properties (no 5xx from any query, header, path or body field)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# The in-process properties: fixtures (a database user, a client) are made once per test,
# not per example, which is what they are for.
IN_PROCESS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Every code point, surrogates and NUL included: what JSON and percent-encoding can carry.
any_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
# Text a URL can carry once percent-encoded as UTF-8 (no surrogates).
url_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
# Numbers as a client might mistype them, including digits str.isdigit() accepts and int()
# refuses ("²" is 0xB2 in latin-1, "١٢" Arabic-Indic, "１" fullwidth).
odd_numbers = st.sampled_from(
    ["²", "¹²", "0²", "١٢", "１", " 7 ", "-1", "1e3", "0x10", "1_000", "9" * 30, "9" * 4400]
)
# A header value as it reaches an application: latin-1, without CR, LF or NUL (servers and
# clients refuse those).
header_text = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40),
    odd_numbers.filter(lambda n: all(ord(c) <= 0xFF for c in n)),
)
# A query value meant to be a number.
number_text = st.one_of(url_text, odd_numbers)
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


def path_id(value: str) -> str:
    """An id as a URL path segment, lone surrogates included (as UTF-8 bytes)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def assert_not_5xx(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.content[:300])
