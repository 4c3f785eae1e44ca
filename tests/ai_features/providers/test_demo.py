"""The offline demo model: says plainly what it is and how to connect a real model."""

from __future__ import annotations

from typing import Any

from ai_features.providers import Delta, get_provider
from ai_features.providers.demo import DemoProvider


async def answer(messages: list[dict[str, str]]) -> list[Delta]:
    return [delta async for delta in DemoProvider(pace=0).astream(messages)]


async def test_says_it_is_an_offline_demo_and_how_to_connect_a_model() -> None:
    deltas = await answer([{"role": "user", "content": "こんにちは"}])

    text = "".join(d.text for d in deltas)
    assert "オフラインのデモモデル" in text
    assert "offline demo model" in text
    assert "OPENAI_API_KEY" in text
    assert "OPENAI_BASE_URL" in text
    assert "「こんにちは」" in text  # it quotes the user's message


async def test_streams_in_many_pieces_then_finishes_with_usage() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "older question"},
        {"role": "assistant", "content": "older answer"},
        {"role": "user", "content": "the latest question"},
    ]

    deltas = await answer(messages)

    texts = [d.text for d in deltas[:-1]]
    assert len(texts) > 20 and all(texts)
    assert "the latest question" in "".join(texts)
    assert "older question" not in "".join(texts)
    final = deltas[-1]
    assert final.text == "" and final.finish_reason == "stop"
    assert final.usage is not None
    assert final.usage.completion_tokens == len(texts)
    assert final.usage.prompt_tokens > 0


async def test_long_messages_are_quoted_shortened() -> None:
    deltas = await answer([{"role": "user", "content": "x" * 1000}])

    text = "".join(d.text for d in deltas)
    assert "x" * 200 + "…" in text
    assert "x" * 201 not in text


def test_is_the_provider_without_key_or_base_url(
    settings: Any, uncached_get_provider: None
) -> None:
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    provider = get_provider()

    assert isinstance(provider, DemoProvider)
    assert provider.model == "offline-demo"


async def test_answers_in_the_interface_language() -> None:
    messages = [{"role": "user", "content": "hello"}]
    japanese = "".join(
        [d.text async for d in DemoProvider(pace=0).astream(messages, language="ja")]
    )
    english = "".join([d.text async for d in DemoProvider(pace=0).astream(messages, language="en")])

    assert "オフラインのデモモデル" in japanese and "offline demo model" not in japanese
    assert "offline demo model" in english and "デモ" not in english
    assert "hello" in japanese and "hello" in english


async def test_any_picked_model_is_answered_by_the_demo() -> None:
    provider = DemoProvider(pace=0)
    assert provider.model_for("gpt-4o") == "offline-demo"
    title = await provider.acomplete([{"role": "user", "content": "  Plan   a trip to Kyoto"}])
    assert title == "Plan a trip to Kyoto"
