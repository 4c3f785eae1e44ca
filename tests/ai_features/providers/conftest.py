from __future__ import annotations

from collections.abc import Iterator

import pytest

from ai_features.providers import get_provider


@pytest.fixture
def uncached_get_provider() -> Iterator[None]:
    """get_provider() (cached for the process) answers for the settings this test sets, and
    the next test finds nothing of this one's cached."""
    get_provider.cache_clear()
    yield
    get_provider.cache_clear()
