"""A streamed reply's token counts (`stream_options.include_usage`, as in OpenAI's API), through
`serve.app.build_app` and a real ASGI client with a stand-in endpoint: asked for, every chunk carries
`"usage": null` and one last chunk, with no choices, the reply's counts; not asked for, no chunk has a
`usage` field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi.testclient import TestClient

from esc.config import RunConfig
from serve.api import Answer, ChatRequest, Piece
from serve.app import build_app

CHAT = {"messages": [{"role": "user", "content": "I feel alone."}], "stream": True}
ANSWER = Answer("That sounds hard.", None, 2, False, True, 31, 9, False)


class Scripted:
    """An endpoint whose counselor streams two pieces, then ANSWER."""

    def __init__(self):
        self.config, self.model_name, self.api_key = RunConfig(), "rlff-test", None
        self.weights_version, self.recent_batches = 2, []

    async def answer(self, request: ChatRequest) -> Answer:
        return ANSWER

    async def answer_stream(self, request: ChatRequest) -> AsyncIterator[Piece | Answer]:
        yield Piece("content", "That sounds")
        yield Piece("content", " hard.")
        yield ANSWER


def chunks(options: dict | None) -> list[dict]:
    extra = {} if options is None else {"stream_options": options}
    reply = TestClient(build_app(Scripted())).post("/v1/chat/completions", json={**CHAT, **extra})
    assert reply.status_code == 200, reply.text
    events = [line.removeprefix("data: ") for line in reply.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_usage_comes_last_in_a_chunk_of_its_own_when_asked_for():
    *text, totals = chunks({"include_usage": True})
    assert totals["choices"] == [] and totals["id"] == text[0]["id"]
    assert totals["usage"] == {"prompt_tokens": 31, "completion_tokens": 9, "total_tokens": 40}
    assert all(c["usage"] is None for c in text)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in text) == "That sounds hard."
    assert text[-1]["choices"][0]["finish_reason"] == "stop"


def test_no_chunk_has_usage_unless_asked_for():
    for options in (None, {"include_usage": False}, {"include_usage": None}, {}):
        said = chunks(options)
        assert said[-1]["choices"][0]["finish_reason"] == "stop"
        assert all("usage" not in c for c in said), options
