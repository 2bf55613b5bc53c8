"""The openai backend's label-likelihood scorer, in-flight limit, retries and token counts.

Most tests answer through `httpx.MockTransport` with hand-made bodies, so the numbers are checked by
hand; the last ones run the judge against the loopback test server answered by the tiny-random model.
"""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest
from support.openai_server import run_with

from actors.common import Throughput
from esc.backends import BackendError, SamplingParams, make_backend
from esc.backends.openai import TOP_LOGPROBS, OpenAIBackend, label_logprobs
from esc.config import JudgeConfig
from esc.parsing import VERDICTS
from esc.prompts import judge_messages
from esc.roles import Judge
from esc.schemas import Scenario, Turn

URL = "http://endpoint.test/v1"
SCENARIO = Scenario(id="s1", emotion_type="anxiety", problem_type="job crisis", situation="I was laid off.")
HISTORY = [
    Turn(role="seeker", text="I was laid off and I feel lost."),
    Turn(role="counselor", text="That sounds so hard. What worries you most?"),
]
LIKELIHOOD = JudgeConfig(scorer="likelihood", backend="openai", base_url=URL, model="m")
# The first token's alternatives: "better" gets " better" + "Better" + "bet" = 0.55, "same" 0.2 (the
# ambiguous "s" counts for neither "same" nor "solved"), "worse" 0.05; "\n" strips to nothing; no
# token starts "solved", which gets the smallest listed probability, 0.02 ("I").
TOP = [
    (" better", 0.4),
    ("same", 0.2),
    ("Better", 0.1),
    ("s", 0.1),
    ("bet", 0.05),
    ("worse", 0.05),
    ("\n", 0.04),
    ("I", 0.02),
]


def body(usage=(30, 1)) -> dict:
    """An OpenAI chat completion of one token whose top_logprobs are TOP."""
    entries = [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in TOP]
    return {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": TOP[0][0]},
                "logprobs": {"content": [{**entries[0], "top_logprobs": entries}]},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]},
    }


def mock(*answers, seen: list | None = None) -> httpx.MockTransport:
    """Answers the requests in turn: a dict is a 200 JSON body, an httpx.Response is sent as is."""
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(json.loads(request.content))
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    return httpx.MockTransport(handler)


def test_label_logprobs_merge_case_spaces_and_prefixes_by_hand():
    top = [(t, math.log(p)) for t, p in TOP]
    got = label_logprobs(top, list(VERDICTS))
    assert [math.exp(lp) for lp in got] == pytest.approx([0.05, 0.2, 0.55, 0.02])


def test_judge_gets_the_label_probabilities_from_one_request():
    seen: list[dict] = []
    backend = OpenAIBackend(URL, "m", transport=mock(body(), seen=seen))
    result = run_with(backend, lambda b: Judge(b, LIKELIHOOD).rate(SCENARIO, HISTORY))
    # softmax of the logs = the masses renormalised: 0.05, 0.2, 0.55, 0.02 over 0.82
    assert result.probs == pytest.approx(
        {"worse": 5 / 82, "same": 20 / 82, "better": 55 / 82, "solved": 2 / 82}
    )
    assert result.verdict == "better"
    assert result.reward == pytest.approx((-5 - 10 + 27.5 + 2) / 82)
    assert len(seen) == 1 and TOP_LOGPROBS == 20
    assert seen[0] == {
        "model": "m",
        "messages": judge_messages(SCENARIO, HISTORY),
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 20,
    }


@pytest.mark.parametrize(
    "choice",
    [
        {"message": {"content": "same"}},
        {"message": {"content": "same"}, "logprobs": None},
        {"message": {"content": "same"}, "logprobs": {"content": []}},
        {"message": {"content": "same"}, "logprobs": {"content": [{"token": "same", "logprob": -0.1}]}},
        {"message": {"content": "same"}, "logprobs": {"content": [{"token": "a", "top_logprobs": []}]}},
    ],
)
def test_no_logprobs_names_the_sample_scorer_in_one_sentence(choice):
    backend = OpenAIBackend(URL, "m", transport=mock({"choices": [choice]}))
    with pytest.raises(BackendError) as error:
        run_with(backend, lambda b: Judge(b, LIKELIHOOD).verdict_probs(SCENARIO, HISTORY))
    assert str(error.value) == (
        f"server at {URL} returned no top_logprobs for the reply's first token;"
        " set judge.scorer: sample for this server"
    )


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The seconds the code under test asked asyncio.sleep for, without waiting them."""
    asked: list[float] = []

    async def no_wait(seconds):
        asked.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    return asked


def test_stats_count_usage_requests_retries_and_failures(waits):
    busy = httpx.Response(503, json={"error": {"message": "busy"}})
    generation = {
        "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3},
    }
    bad = httpx.Response(400, json={"error": {"message": "no"}})
    backend = OpenAIBackend(
        URL, "m", transport=mock(busy, generation, body(usage=(7, 1)), bad), backoff_s=0.5
    )

    async def calls(b):
        await b.generate([{"role": "user", "content": "hi"}], SamplingParams())
        await b.continuation_logprobs([{"role": "user", "content": "hi"}], ["yes", "no"])
        with pytest.raises(BackendError, match="HTTP 400: no"):
            await b.generate([{"role": "user", "content": "hi"}], SamplingParams())

    run_with(backend, calls)
    assert backend.stats == {
        "prompt_tokens": 18,
        "completion_tokens": 4,
        "requests": 4,
        "retries": 1,
        "failures": 1,
    }
    assert Throughput(backend)()["tokens"] == 22  # what a role actor reports
    assert waits == [0.5]


@pytest.mark.parametrize(
    ("retry_after", "wait"), [("0.3", 0.3), ("100", 2.0), ("Wed, 21 Oct 2026 07:28:00 GMT", 1.0)]
)
def test_retry_after_seconds_are_honoured_up_to_max_backoff(waits, retry_after, wait):
    limited = httpx.Response(
        429, headers={"Retry-After": retry_after}, json={"error": {"message": "slow down"}}
    )
    backend = OpenAIBackend(URL, "m", transport=mock(limited, body()), backoff_s=1.0, max_backoff_s=2.0)
    run_with(backend, lambda b: b.continuation_logprobs([{"role": "user", "content": "hi"}], ["same"]))
    assert waits == [wait]  # an HTTP date is not read: the usual backoff


def test_max_concurrent_bounds_requests_in_flight():
    in_flight, most = 0, 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json=body())

    configured = make_backend(JudgeConfig(backend="openai", base_url=URL, model="m", max_concurrent=3))
    assert isinstance(configured, OpenAIBackend) and configured.max_concurrent == 3
    backend = OpenAIBackend(URL, "m", max_concurrent=3, transport=httpx.MockTransport(handler))
    messages = [{"role": "user", "content": "hi"}]
    run_with(
        backend, lambda b: asyncio.gather(*(b.continuation_logprobs(messages, ["same"]) for _ in range(10)))
    )
    assert most == 3 and backend.stats["requests"] == 10
