"""The stream service's own middleware: security headers like c3-app's, bounded ids."""

from __future__ import annotations

import pytest
from django.test import override_settings
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ai_features.stream_app.middleware import HostAndRequestIdMiddleware


def client() -> TestClient:
    async def hello(request):
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/health/", hello), Route("/x/", hello)])
    return TestClient(HostAndRequestIdMiddleware(app), base_url="http://testserver")


@override_settings(
    DEBUG=False,
    SECURE_HSTS_SECONDS=31536000,
    SECURE_HSTS_INCLUDE_SUBDOMAINS=True,
    SECURE_HSTS_PRELOAD=True,
)
@pytest.mark.parametrize("path", ["/health/", "/x/"])
def test_hsts_and_nosniff_with_debug_off(path):
    response = client().get(path)
    assert response.status_code == 200
    assert (
        response.headers["strict-transport-security"]
        == "max-age=31536000; includeSubDomains; preload"
    )
    assert response.headers["x-content-type-options"] == "nosniff"


@override_settings(DEBUG=True, SECURE_HSTS_SECONDS=31536000)
def test_no_hsts_while_debugging():
    response = client().get("/x/")
    assert "strict-transport-security" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_wild_request_id_is_replaced():
    response = client().get("/x/", headers={"X-Request-ID": "x" * 500})
    assert len(response.headers["x-request-id"]) == 32
    response = client().get("/x/", headers={"X-Request-ID": "proxy-id-1"})
    assert response.headers["x-request-id"] == "proxy-id-1"
