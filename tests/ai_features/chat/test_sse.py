"""The SSE frames both servers write (the wire format of DESIGN.md)."""

from __future__ import annotations

import json

from ai_features.chat import sse
from ai_features.chat.events import PING, ChatEvent, content_data


def test_an_event_is_an_id_line_and_one_data_line() -> None:
    text = "行1\n行2\r\u2028end"
    frame = sse.encode(ChatEvent(id=7, data=content_data(text)))
    lines = frame.decode("utf-8").split("\n")
    assert lines[0] == "id: 7"
    assert lines[1].startswith("data: ")
    assert json.loads(lines[1][len("data: ") :]) == {"type": "content", "content": text}
    assert lines[2:] == ["", ""]  # the blank line that ends the event
    assert "行1" in lines[1]  # UTF-8 as is, not \u escapes


def test_retry_rides_on_the_first_real_event_only() -> None:
    encode = sse.StreamEncoder()
    frames = [encode(item) for item in (PING, ChatEvent(1, content_data("a")), PING)]
    frames.append(encode(ChatEvent(2, content_data("b"))))
    assert frames[0] == frames[2] == b": ping\n\n"
    assert frames[1].endswith(b"\nretry: 3000\n\n")
    assert b"retry:" not in frames[3]


def test_data_orjson_refuses_still_goes_out() -> None:
    data = {"type": "done", "content": "", "usage": {"prompt_tokens": 2**70}}
    frame = sse.encode(ChatEvent(id=1, data=data))
    assert json.loads(frame.split(b"\n")[1][len(b"data: ") :]) == data
