"""Request ids: a client's X-Request-ID is kept only when it is short plain ASCII."""

from __future__ import annotations

import re

import pytest

from ai_features.logging import new_request_id

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    "incoming", ["abc-123", "0f8fad5b-d9cb-469f-a165-70867728950e", "req.1:2_3", "a" * 64]
)
def test_a_sane_id_is_kept(incoming):
    assert new_request_id(incoming) == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        "a" * 65,  # too long
        "²³",  # str.isalnum() accepts these
        "日本語",
        "abc def",
        "abc\r\nX-Injected: 1",
        "abc\x00",
        "-leading-dash",
        "",
        None,
    ],
)
def test_anything_else_is_replaced(incoming):
    replaced = new_request_id(incoming)
    assert replaced != incoming
    assert GENERATED.fullmatch(replaced)
