"""OpenAIBackend against a real local OpenAI-compatible server answered by the tiny-random model.

The server (tests/support/openai_server.py) delegates to an HFBackend, so every reply is real model
output; its hooks inject 4xx/5xx answers and count the requests that reached it.
"""

from __future__ import annotations

import asyncio
import math
import socket

import httpx
import pytest
from support.openai_server import run_with, start_server

from esc.backends import BackendError, SamplingParams, make_backend
from esc.backends.hf import HFBackend
from esc.backends.openai import OpenAIBackend, label_logprobs
from esc.config import CounselorConfig, JudgeConfig, SafetyConfig, SeekerConfig
from esc.models import load_model
from esc.parsing import VERDICTS
from esc.prompts import COUNSELOR_REASONING_FORMAT, judge_messages
from esc.roles import Counselor, Judge, Seeker
from esc.schemas import Scenario, Turn

MODEL = "tiny-random"
MESSAGES = [
    {"role": "system", "content": "You are a kind listener."},
    {"role": "user", "content": "I failed my driving test today and feel awful."},
]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=8)
JUDGED = [
    Turn(role="seeker", text="I was laid off and I feel lost."),
    Turn(role="counselor", text="That sounds so hard. What worries you most?"),
]
SCENARIO = Scenario(
    id="test-1",
    emotion_type="anxiety",
    problem_type="job crisis",
    situation="I was laid off last week and I can't sleep.",
)


@pytest.fixture(scope="module")
def hf() -> HFBackend:
    model, tokenizer = load_model(MODEL)
    # A long batching window makes "concurrent requests were batched together" deterministic.
    return HFBackend(model, tokenizer, max_batch_size=8, max_wait_ms=100.0)


@pytest.fixture(scope="module")
def server(hf):
    with start_server(hf, model=MODEL) as (base_url, handle):
        yield base_url, handle


@pytest.fixture
def url(server) -> str:
    server[1].fail_next(0)
    server[1].omit_usage = False
    return server[0]


@pytest.fixture
def handle(server):
    return server[1]


def fast_backend(url: str, max_retries: int = 3) -> OpenAIBackend:
    return OpenAIBackend(url, MODEL, max_retries=max_retries, backoff_s=0.02, timeout_s=30.0)


# -- generation ---------------------------------------------------------------------------------
def test_generate_matches_the_model_behind_the_server(url, handle, hf):
    generation = run_with(fast_backend(url), lambda b: b.generate(MESSAGES, GREEDY))
    expected = hf.generate_batch([hf.encode_prompt(MESSAGES)], [GREEDY])[0]
    assert generation.text == expected.text != ""  # greedy: exactly what the model says
    assert generation.prompt_tokens == len(hf.encode_prompt(MESSAGES)) > 10
    assert 1 <= generation.completion_tokens == expected.completion_tokens <= 8
    assert generation.finish_reason == expected.finish_reason
    sent = handle.payloads[-1]
    assert sent["model"] == MODEL and sent["messages"] == MESSAGES
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"]) == (8, 0.0, 0.95)
    assert "seed" not in sent and "stop" not in sent


def test_seed_and_stop_are_sent(url, handle):
    params = SamplingParams(temperature=1.0, max_new_tokens=6, seed=11, stop=("\n\n", "Counselor:"))
    run_with(fast_backend(url), lambda b: b.generate(MESSAGES, params))
    assert handle.payloads[-1]["seed"] == 11
    assert handle.payloads[-1]["stop"] == ["\n\n", "Counselor:"]


def test_length_limit_is_reported(url):
    # The random model almost never emits end-of-turn in its first two tokens.
    params = SamplingParams(temperature=0.0, max_new_tokens=2)
    generation = run_with(fast_backend(url), lambda b: b.generate(MESSAGES, params))
    assert (generation.finish_reason, generation.completion_tokens) == ("length", 2)


def test_concurrent_generates_share_one_client_and_are_batched(url, handle, hf):
    before_requests, before_batches = handle.requests, len(hf.batch_sizes)

    async def four(backend):
        params = [SamplingParams(temperature=1.0, max_new_tokens=6, seed=s) for s in range(4)]
        results = await asyncio.gather(*(backend.generate(MESSAGES, p) for p in params))
        return results, backend._client

    backend = fast_backend(url)
    results, client = run_with(backend, four)
    assert len(results) == 4 and all(1 <= r.completion_tokens <= 6 for r in results)
    assert client is not None and backend._client is None  # one client, closed by close()
    assert handle.requests - before_requests == 4
    assert sorted(p["seed"] for p in handle.payloads[-4:]) == [0, 1, 2, 3]
    assert max(hf.batch_sizes[before_batches:]) >= 2  # the requests were in flight together


def test_missing_usage_counts_zero_tokens(url, handle):
    handle.omit_usage = True
    generation = run_with(fast_backend(url), lambda b: b.generate(MESSAGES, GREEDY))
    assert generation.text and (generation.prompt_tokens, generation.completion_tokens) == (0, 0)


def test_api_key_header_only_when_the_env_var_is_set(url, handle, monkeypatch):
    config = CounselorConfig(backend="openai", base_url=url, model=MODEL, api_key_env="RLFF_TEST_KEY")
    monkeypatch.delenv("RLFF_TEST_KEY", raising=False)
    run_with(make_backend(config), lambda b: b.generate(MESSAGES, GREEDY))
    assert "authorization" not in handle.headers[-1]
    monkeypatch.setenv("RLFF_TEST_KEY", "sk-test-123")
    run_with(make_backend(config), lambda b: b.generate(MESSAGES, GREEDY))
    assert handle.headers[-1]["authorization"] == "Bearer sk-test-123"


# -- retries and errors -------------------------------------------------------------------------
@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_status_is_retried_then_succeeds(url, handle, status):
    handle.fail_next(1, status)
    before = handle.requests
    generation = run_with(fast_backend(url), lambda b: b.generate(MESSAGES, GREEDY))
    assert generation.completion_tokens >= 1
    assert handle.requests - before == 2


def test_persistent_5xx_gives_up_after_max_retries(url, handle):
    handle.fail_next(10, 503, "overloaded, try later")
    before = handle.requests
    with pytest.raises(BackendError, match=r"HTTP 503: overloaded, try later"):
        run_with(fast_backend(url, max_retries=2), lambda b: b.generate(MESSAGES, GREEDY))
    assert handle.requests - before == 3


def test_client_error_fails_fast_without_retry(url, handle):
    handle.fail_next(10, 400, "max_tokens is too large")
    before = handle.requests
    with pytest.raises(BackendError, match=r"HTTP 400: max_tokens is too large"):
        run_with(fast_backend(url, max_retries=3), lambda b: b.generate(MESSAGES, GREEDY))
    assert handle.requests - before == 1


def test_unknown_model_is_a_404_with_the_servers_message(url, handle):
    backend = OpenAIBackend(url, "no-such-model", backoff_s=0.02)
    before = handle.requests
    with pytest.raises(BackendError, match=r"HTTP 404: model 'no-such-model' does not exist"):
        run_with(backend, lambda b: b.generate(MESSAGES, GREEDY))
    assert handle.requests - before == 1


def test_malformed_body_is_reported(url, handle):
    handle.garble_next(1)
    with pytest.raises(BackendError, match="malformed response body"):
        run_with(fast_backend(url), lambda b: b.generate(MESSAGES, GREEDY))


def test_unreachable_server_names_the_url():
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(BackendError) as error:
        run_with(fast_backend(url, max_retries=1), lambda b: b.generate(MESSAGES, GREEDY))
    assert str(error.value) == f"server unreachable at {url} (is it running?)"


def test_server_without_logprobs_points_to_the_sample_scorer(url, handle):
    backend = fast_backend(url)
    assert backend.supports_logprobs is True
    handle.omit_logprobs = True
    try:
        with pytest.raises(BackendError, match="scorer: sample"):
            run_with(backend, lambda b: b.continuation_logprobs(MESSAGES, ["better"]))
    finally:
        handle.omit_logprobs = False


def test_judge_over_the_test_server_softmaxes_the_labels_the_server_reports(url, handle, hf):
    base_url = url
    handle.omit_logprobs = False
    config = JudgeConfig(scorer="likelihood", backend="openai", base_url=base_url, model="tiny-random")
    probs = run_with(make_backend(config), lambda b: Judge(b, config).verdict_probs(SCENARIO, JUDGED))
    assert handle.payloads[-1]["top_logprobs"] == 20
    messages = judge_messages(SCENARIO, JUDGED)
    request = {"model": "tiny-random", "messages": messages, "max_tokens": 1, "temperature": 0}
    reply = httpx.post(f"{base_url}/chat/completions", json={**request, "logprobs": True, "top_logprobs": 20})
    entry = reply.json()["choices"][0]["logprobs"]["content"][0]
    top = [(t["token"], t["logprob"]) for t in entry["top_logprobs"]]
    assert len(top) == 20 and [lp for _, lp in top] == sorted((lp for _, lp in top), reverse=True)
    assert entry["token"] == top[0][0] == reply.json()["choices"][0]["message"]["content"]  # greedy's pick
    assert top[0][1] == pytest.approx(hf.score_continuations(messages, [top[0][0]])[0], abs=1e-5)
    logps = label_logprobs(top, list(VERDICTS))
    weights = [math.exp(lp - max(logps)) for lp in logps]
    assert probs == pytest.approx({label: w / sum(weights) for label, w in zip(VERDICTS, weights)})
    assert sum(probs.values()) == pytest.approx(1.0)


# -- the test server itself ---------------------------------------------------------------------
def test_server_validates_requests_and_lists_models(url):
    missing = httpx.post(f"{url}/chat/completions", json={"model": MODEL}, timeout=10)
    assert missing.status_code == 400
    error = missing.json()["error"]
    assert error["type"] == "invalid_request_error" and "messages" in error["message"]
    models = httpx.get(f"{url}/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [MODEL]
    ok = httpx.post(
        f"{url}/chat/completions",
        json={"model": MODEL, "messages": MESSAGES, "max_tokens": 3, "temperature": 0},
        timeout=30,
    ).json()
    assert ok["object"] == "chat.completion" and ok["choices"][0]["message"]["role"] == "assistant"
    assert ok["usage"]["completion_tokens"] <= 3 and ok["choices"][0]["finish_reason"] in ("stop", "length")


# -- the roles over the openai backend ----------------------------------------------------------
def test_seeker_speaks_over_http(url, handle):
    config = SeekerConfig(backend="openai", base_url=url, model=MODEL, max_new_tokens=12)
    turn = run_with(make_backend(config), lambda b: Seeker(b, config).speak(SCENARIO, [], seed=3))
    assert turn.role == "seeker" and turn.text.strip()
    sent = handle.payloads[-1]
    assert sent["stop"] == ["\n\n", "Counselor:"] and sent["seed"] == 3 and sent["max_tokens"] == 12
    assert SCENARIO.situation in sent["messages"][0]["content"]


def test_counselor_responds_over_http_without_prefill(url, handle):
    config = CounselorConfig(backend="openai", base_url=url, model=MODEL, max_new_tokens=16)
    history = [Turn(role="seeker", text="I was laid off and I feel lost.")]
    output = run_with(
        make_backend(config), lambda b: Counselor(b, config, SafetyConfig()).respond(history, seed=5)
    )
    assert output.turn.role == "counselor" and output.turn.text.strip()
    assert "<think>" not in output.turn.text and "</answer>" not in output.turn.text
    assert 1 <= output.completion_tokens <= 16
    sent = handle.payloads[-1]
    assert sent["messages"][0]["content"].endswith(COUNSELOR_REASONING_FORMAT)  # format asked, not prefilled
    assert sent["messages"][-1] == {"role": "user", "content": "I was laid off and I feel lost."}


def test_counselor_crisis_reply_makes_no_request(url, handle):
    config = CounselorConfig(backend="openai", base_url=url, model=MODEL, max_new_tokens=16)
    history = [Turn(role="seeker", text="I want to kill myself")]
    before = handle.requests
    output = run_with(make_backend(config), lambda b: Counselor(b, config, SafetyConfig()).respond(history))
    assert output.turn.crisis is True and handle.requests == before


def test_judge_sample_scorer_over_http(url, handle):
    config = JudgeConfig(
        scorer="sample", backend="openai", base_url=url, model=MODEL, num_samples=3, max_new_tokens=4
    )
    history = [
        Turn(role="seeker", text="I was laid off and I feel lost."),
        Turn(role="counselor", text="That sounds so hard. What worries you most?"),
    ]
    before = handle.requests
    reward = run_with(make_backend(config), lambda b: Judge(b, config).score(SCENARIO, history, seed=20))
    assert isinstance(reward, float) and math.isfinite(reward) and -1.0 <= reward <= 1.0
    assert handle.requests - before == 3
    assert sorted(p["seed"] for p in handle.payloads[-3:]) == [20, 21, 22]
    assert all(p["temperature"] == 1.0 and p["max_tokens"] == 4 for p in handle.payloads[-3:])
