"""The same role tests on two backends: the hf backend directly, and the openai backend talking to a
local OpenAI-compatible server (loopback) that the tiny-random model answers."""

from __future__ import annotations

import asyncio

import pytest
from support.openai_server import start_server

from esc.backends.hf import HFBackend
from esc.backends.openai import OpenAIBackend
from esc.config import CounselorConfig, EpisodeConfig, JudgeConfig, SafetyConfig, SeekerConfig
from esc.episode import Roles, run_episode
from esc.models import load_model
from esc.parsing import parse_counselor
from esc.roles import FALLBACK_ANSWER, Counselor, Judge, Seeker, mean_sampled_reward
from esc.schemas import Scenario, Turn

SCENARIO = Scenario(id="r1", emotion_type="anxiety", problem_type="exams", situation="I failed my exam.")
HISTORY = [Turn(role="seeker", text="I failed my exam and I'm scared to tell my parents.")]


def tiny() -> HFBackend:
    model, tokenizer = load_model("tiny-random")
    return HFBackend(model, tokenizer, max_batch_size=8, max_wait_ms=20.0)


@pytest.fixture(scope="module", params=["hf", "openai"])
def backend(request):
    if request.param == "hf":
        yield tiny()
        return
    # The server gets its own backend: an HFBackend's batching worker lives on one event loop.
    with start_server(tiny(), model="tiny-random") as (base_url, _):
        yield OpenAIBackend(base_url=base_url, model="tiny-random", max_retries=0)


def run(backend, coro):
    """Run one test coroutine on a fresh loop, then close the backend's per-loop resources there."""

    async def main():
        try:
            return await coro
        finally:
            await backend.close()

    return asyncio.run(main())


def greedy(cls, **fields):
    return cls(temperature=0.0, max_new_tokens=12, **fields)


def test_seeker_speaks_one_line(backend):
    turn = run(backend, Seeker(backend, greedy(SeekerConfig)).speak(SCENARIO, HISTORY, seed=1))
    assert turn.role == "seeker" and turn.text.strip()
    assert not turn.text.lower().startswith("seeker:")


def test_counselor_shows_only_the_answer(backend):
    counselor = Counselor(backend, greedy(CounselorConfig), SafetyConfig())
    output = run(backend, counselor.respond(HISTORY, seed=1))
    parsed = parse_counselor(output.raw)
    assert output.turn.role == "counselor"
    assert output.turn.text == (parsed.answer or FALLBACK_ANSWER)
    assert output.well_formed == (parsed.well_formed and bool(parsed.answer))
    assert "<think>" not in output.turn.text and "<answer>" not in output.turn.text
    assert output.completion_tokens <= 12


def test_plain_counselor_has_no_reasoning(backend):
    counselor = Counselor(backend, greedy(CounselorConfig, reasoning=False), SafetyConfig())
    output = run(backend, counselor.respond(HISTORY, seed=1))
    assert output.turn.reasoning is None and output.turn.text


def test_crisis_message_bypasses_the_model(backend):
    counselor = Counselor(backend, greedy(CounselorConfig), SafetyConfig(region="uk"))
    output = run(backend, counselor.respond([Turn(role="seeker", text="I want to end my life tonight.")]))
    assert output.turn.crisis and "116 123" in output.turn.text and output.completion_tokens == 0


def test_sample_judge_reward_is_the_mean_of_parsed_samples(backend):
    judge = Judge(backend, JudgeConfig(scorer="sample", num_samples=3, max_new_tokens=4))
    result = run(backend, judge.rate(SCENARIO, HISTORY, seed=5))
    assert len(result.samples) == 3
    assert result.reward == mean_sampled_reward(result.samples)
    assert -1.0 <= result.reward <= 1.0


def test_episode_runs_to_max_turns_or_success(backend):
    roles = Roles(
        seeker=Seeker(backend, greedy(SeekerConfig)),
        counselor=Counselor(backend, greedy(CounselorConfig), SafetyConfig()),
        judge=Judge(backend, JudgeConfig(scorer="sample", num_samples=2, max_new_tokens=4)),
    )
    episode = run(backend, run_episode(SCENARIO, roles, EpisodeConfig(max_turns=2), seed=3))
    assert len(episode.records) == (episode.turns if episode.success else 2)
    assert episode.dialogue.turns[0].role == "seeker"
    assert [t.reward for t in episode.dialogue.counselor_turns()] == [r.reward for r in episode.records]
