"""Who may read /metrics, and the text it serves (the servers' side: tests/integration)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ai_features import metrics


def test_no_token_configured_means_no_endpoint(settings) -> None:
    settings.METRICS_TOKEN = ""
    assert metrics.metrics_access("Bearer ") == 404
    assert metrics.metrics_access(None) == 404


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer wrong", "Basic s3cret-token", "s3cret-token"]
)
def test_a_wrong_or_missing_bearer_is_refused(settings, header) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    assert metrics.metrics_access(header) == 401


def test_the_right_bearer_is_served(settings) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    assert metrics.metrics_access("Bearer s3cret-token") == 200
    assert metrics.metrics_access("bearer s3cret-token") == 200


def test_every_named_metric_is_exposed() -> None:
    metrics.REQUESTS_REFUSED.labels("rate_limited").inc()
    body, content_type = metrics.render_latest()
    assert content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {
        "c3_streams_active",
        "c3_streams",
        "c3_time_to_first_token_seconds",
        "c3_inter_token_gap_seconds",
        "c3_tokens_relayed",
        "c3_upstream_errors",
        "c3_requests_refused",
    } <= names


@pytest.mark.django_db
def test_django_answers_404_without_a_token(client, settings) -> None:
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics").status_code == 401
    served = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert served.status_code == 200
    assert b"c3_streams_active" in served.content
