"""The conversation API around the page: search, export, a URL per conversation, the login
page for a logged-in user. Real servers, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import pytest

from tests.support.chat_client import ChatClient
from tests.support.fake_upstream import directive
from tests.support.servers import Stack

pytestmark = pytest.mark.integration


def start_conversation(client: ChatClient, token: str, message: str) -> str:
    result = client.stream({"message": message, "new_conversation": True}, token=token)
    assert result.final.type == "done"
    return result.first("start").data["conversation_id"]


def search(client: ChatClient, query: str) -> list[str]:
    response = client.http.get("/api/ai/conversations/", params={"q": query})
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["conversations"]]


def test_search_by_title_and_message_text(stack: Stack, make_client: Any, db_kind: str) -> None:
    client, other = make_client(), make_client()
    token = client.token()
    deploy = start_conversation(
        client, token, "how do I deploy the app on Render? " + directive(tokens=2)
    )
    weather = start_conversation(client, token, "東京の天気を教えてください " + directive(tokens=2))
    renamed = start_conversation(client, token, "something " + directive(tokens=2))
    client.api("PATCH", f"/api/ai/conversations/{renamed}/", json={"title": "Pasta recipes"})
    start_conversation(other, other.token(), "Render for someone else " + directive(tokens=1))

    assert search(client, "render") == [deploy]  # case-insensitive; not the other user's
    assert search(client, "天気") == [weather]  # Japanese, inside a word
    assert search(client, "pasta") == [renamed]  # the title the user typed
    assert search(client, "tok1") == [renamed, weather, deploy]  # answers are text too
    assert search(client, "nothing-like-this") == []
    assert search(client, "") == [renamed, weather, deploy]  # no query: all
    # Words in any order: PostgreSQL's full-text search; SQLite matches the phrase only.
    assert search(client, "Render deploy") == ([deploy] if db_kind == "postgres" else [])
    too_long = client.http.get("/api/ai/conversations/", params={"q": "x" * 201})
    assert too_long.status_code == 400


def test_export_markdown_and_json(stack: Stack, make_client: Any) -> None:
    client = make_client()
    token = client.token()
    question = "東京の天気 " + directive(tokens=3)
    conversation_id = start_conversation(client, token, question)
    client.api(
        "PATCH",
        f"/api/ai/conversations/{conversation_id}/",
        json={"title": "天気: today?", "instructions": "Be brief."},
    )
    url = f"/api/ai/conversations/{conversation_id}/export/"

    as_json = client.http.get(url, params={"format": "json"})
    assert as_json.status_code == 200
    assert as_json.headers["content-type"] == "application/json; charset=utf-8"
    disposition = as_json.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert unquote(disposition.split("filename*=utf-8''")[1]) == "天気 today.json"
    data = json.loads(as_json.content)
    assert data["conversation"]["id"] == conversation_id
    assert data["conversation"]["instructions"] == "Be brief."
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", question),
        ("assistant", "tok0 tok1 tok2 "),
    ]
    assert data["messages"][1]["model"] == "fake"

    as_md = client.http.get(url, params={"format": "md"})
    assert as_md.status_code == 200
    assert as_md.headers["content-type"] == "text/markdown; charset=utf-8"
    assert "attachment;" in as_md.headers["content-disposition"]
    text = as_md.text
    assert text.startswith("# 天気: today?\n")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## Instructions", "## User", "## Assistant (fake)"]
    assert question in text and "tok0 tok1 tok2" in text

    assert client.http.get(url, params={"format": "pdf"}).status_code == 400
    stranger = make_client()
    assert stranger.http.get(url, params={"format": "md"}).status_code == 404


def test_a_url_per_conversation(stack: Stack, make_client: Any) -> None:
    alice, bob = make_client(), make_client()
    conversation_id = start_conversation(alice, alice.token(), "mine " + directive(tokens=1))

    page = alice.http.get(f"/ai/chat/{conversation_id}/")
    assert page.status_code == 200
    assert f'"conversationId": "{conversation_id}"' in page.text
    assert '"models": ["fake"]' in page.text
    assert '"conversationId": null' in alice.http.get("/ai/chat/").text
    assert bob.http.get(f"/ai/chat/{conversation_id}/").status_code == 404
    assert alice.http.get("/ai/chat/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert alice.http.get("/ai/chat/not-a-uuid/").status_code == 404


def test_the_login_page_sends_a_logged_in_user_to_the_chat(stack: Stack, make_client: Any) -> None:
    client = make_client()
    response = client.http.get("/accounts/login/")
    assert response.status_code == 302
    assert response.headers["location"] == "/ai/chat/"
    client.logout()
    assert client.http.get("/accounts/login/").status_code == 200
