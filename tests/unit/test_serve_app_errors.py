"""The HTTP layer's answers when the counselor fails, through `serve.app.build_app` and a real ASGI
client (starlette's TestClient), with a stand-in endpoint: too long a conversation is a 400 naming
`messages`, plain or streamed (the stream's 200 is not sent before the reply starts), and a stream that
fails after its first chunk ends with an OpenAI-style error event, not with `[DONE]`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi.testclient import TestClient

from esc.backends import PromptTooLong
from esc.config import RunConfig
from serve.api import Answer, ChatRequest, Piece
from serve.app import build_app

CHAT = {"messages": [{"role": "user", "content": "I feel alone."}]}


class Failing:
    """An endpoint whose counselor fails with `error`, after streaming `pieces` first."""

    def __init__(self, error: Exception, pieces: tuple[Piece, ...] = ()):
        self.config, self.model_name, self.api_key = RunConfig(), "rlff-test", None
        self.error, self.pieces = error, pieces
        self.weights_version, self.recent_batches = 3, []

    async def answer(self, request: ChatRequest) -> Answer:
        raise self.error

    async def answer_stream(self, request: ChatRequest) -> AsyncIterator[Piece | Answer]:
        for piece in self.pieces:
            yield piece
        raise self.error


def test_too_long_a_conversation_is_a_400_plain_or_streamed():
    client = TestClient(build_app(Failing(PromptTooLong(9000, 96, 8192))))
    for stream in (False, True):
        reply = client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
        assert reply.status_code == 400, (stream, reply.text)
        error = reply.json()["error"]
        assert error["param"] == "messages" and error["type"] == "invalid_request_error"
        assert "9000 tokens" in error["message"] and "8192" in error["message"]


def test_a_stream_that_fails_midway_ends_with_an_error_event_and_no_done():
    client = TestClient(build_app(Failing(RuntimeError("boom"), (Piece("content", "That sounds"),))))
    reply = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert reply.status_code == 200 and reply.headers["X-RLFF-Weights-Version"] == "3"
    events = [line.removeprefix("data: ") for line in reply.text.splitlines() if line.startswith("data: ")]
    assert "[DONE]" not in events
    chunks = [json.loads(e) for e in events]
    said = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if "choices" in c)
    assert said == "That sounds"
    assert chunks[-1]["error"]["type"] == "server_error" and "RuntimeError" in chunks[-1]["error"]["message"]


def test_an_unexpected_failure_before_the_stream_starts_is_a_500_with_the_error_body():
    client = TestClient(build_app(Failing(RuntimeError("boom"))), raise_server_exceptions=False)
    reply = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert reply.status_code == 500 and reply.json()["error"]["type"] == "server_error"
