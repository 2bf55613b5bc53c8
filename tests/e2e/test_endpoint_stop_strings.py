"""A client's `stop` strings end decoding where the answer reaches one, through the endpoint's app and
service in process (a real tiny-random model on the hf backend, a plain counselor): the reply is the
one without `stop`, cut before the stop string, its usage counts only the tokens decoded up to it,
and the stream assembles to the same text."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from esc.config import build_config
from serve.app import build_app
from serve.service import CounselorService, cut_at_stops

TEXT = "Work keeps me up at night and I cannot rest."


@pytest.fixture(scope="module")
def client():
    config = build_config(
        {"counselor": {"model": "tiny-random", "reasoning": False}, "safety": {"enabled": False}}
    )
    service = CounselorService(config)
    service.api_key = None  # what `serve.deployment.CounselorEndpoint` adds: no key asked for
    with TestClient(build_app(service)) as http:
        yield http


def ask(client: TestClient, **extra) -> dict:
    body = {"messages": [{"role": "user", "content": TEXT}], "max_tokens": 48, "seed": 3, **extra}
    reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def streamed(client: TestClient, **extra) -> tuple[str, dict]:
    body = {"messages": [{"role": "user", "content": TEXT}], "max_tokens": 48, "seed": 3, "stream": True}
    body |= {"stream_options": {"include_usage": True}, **extra}
    reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    events = [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    return text, events[-1]["usage"]


def test_decoding_ends_at_the_first_stop_string_in_the_answer(client):
    whole = ask(client)
    text, used = whole["choices"][0]["message"]["content"], whole["usage"]["completion_tokens"]
    assert used >= 24, "the seeded reply is too short to cut"
    stop = text[len(text) // 2 : len(text) // 2 + 3]  # three characters from its middle
    assert stop.strip(), text
    expected, found = cut_at_stops(text, (stop,))
    assert found

    cut = ask(client, stop=[stop])
    assert cut["choices"][0]["message"]["content"] == expected
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["usage"]["completion_tokens"] < used  # decoding ended there, not at the budget
    assert cut["usage"]["prompt_tokens"] == whole["usage"]["prompt_tokens"]

    text_streamed, usage = streamed(client, stop=[stop])
    assert text_streamed == expected
    assert usage["completion_tokens"] == cut["usage"]["completion_tokens"]
