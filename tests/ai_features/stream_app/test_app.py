"""The stream service's application: what its start-up does besides routing."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from ai_features.stream_app import app as app_module

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def unfrozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A fresh process as far as the freeze goes; left unfrozen after, as the suite expects.
    gc.unfreeze()
    monkeypatch.setattr(app_module, "_startup_frozen", False)
    yield
    gc.unfreeze()


def test_start_up_freezes_what_it_loaded_once_per_process(unfrozen: None) -> None:
    assert gc.get_freeze_count() == 0
    with TestClient(app_module.create_app()) as client:
        assert client.get("/health/").status_code == 200
        frozen = gc.get_freeze_count()
        # Django, the SDK and the app: far more than a handful of objects.
        assert frozen > 10_000
    assert app_module._startup_frozen

    # A second app in the same process (tests, several lifespans) does not collect again.
    gc.unfreeze()
    with TestClient(app_module.create_app()):
        assert gc.get_freeze_count() == 0


def test_start_up_sets_the_switch_interval(unfrozen: None, settings: Any) -> None:
    """STREAM_SWITCH_INTERVAL_MS (milliseconds) becomes the process's sys.setswitchinterval."""
    before = sys.getswitchinterval()
    settings.STREAM_SWITCH_INTERVAL_MS = 2.5
    try:
        with TestClient(app_module.create_app()) as client:
            assert client.get("/health/").status_code == 200
            assert sys.getswitchinterval() == pytest.approx(0.0025)
    finally:
        sys.setswitchinterval(before)
