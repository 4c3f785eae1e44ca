"""c3-app answers a CSRF failure in the format of the endpoint that refused it."""

from __future__ import annotations

import json

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from ai_features.models import Conversation, Message
from tests.support.sse import parse_sse_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def csrf_client() -> Client:
    """Django's test client, logged in, that checks CSRF as a browser's request would be."""
    user = get_user_model().objects.create_user("csrf-user", password="pw-Secret-123")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_stream_endpoint_refuses_with_one_sse_error_event(csrf_client: Client) -> None:
    response = csrf_client.post(
        "/api/ai/chat/stream/", data=json.dumps({"message": "hi"}), content_type="application/json"
    )
    assert response.status_code == 403
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    [event] = parse_sse_body(response.status_code, httpx.Headers(), response.content).events
    assert event.data["code"] == "csrf_failed"
    assert Message.objects.count() == 0


def test_json_api_refuses_with_a_json_error(csrf_client: Client) -> None:
    response = csrf_client.post(
        "/api/ai/conversations/", data=json.dumps({"title": "x"}), content_type="application/json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    assert Conversation.objects.count() == 0


def test_pages_keep_djangos_own_csrf_page(csrf_client: Client) -> None:
    response = csrf_client.post("/accounts/logout/")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


def test_stop_endpoint_refuses_with_the_json_error_shape(csrf_client: Client) -> None:
    # The stop endpoint answers JSON, refusals included, on both servers.
    response = csrf_client.post("/api/ai/chat/stream/some-id/stop/")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "csrf_failed"
