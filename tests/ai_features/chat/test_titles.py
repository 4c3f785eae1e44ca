"""Cleaning what a model returns as a title (the request itself: test_service.py and
tests/integration/test_auto_title.py)."""

from __future__ import annotations

import pytest

from ai_features.chat.persistence import TITLE_LENGTH
from ai_features.chat.titles import clean_title


@pytest.mark.parametrize(
    ("raw", "title"),
    [
        ('"Trip to Kyoto."', "Trip to Kyoto"),
        ("「京都旅行の計画」。", "京都旅行の計画"),
        ("  **Bold\n title**  ", "Bold title"),
        ("# Heading", "Heading"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_one_clean_line(raw: str, title: str) -> None:
    assert clean_title(raw) == title


def test_long_titles_are_cut() -> None:
    title = clean_title("word " * 40)
    assert len(title) == TITLE_LENGTH and title.endswith("…")
