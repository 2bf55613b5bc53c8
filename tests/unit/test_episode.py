"""PPDPP episode protocol and future rewards, with a scripted backend (pure conversation logic)."""

import asyncio
import dataclasses
import math

import pytest

from esc.backends.base import Generation
from esc.config import CounselorConfig, EpisodeConfig, FutureConfig, JudgeConfig, SafetyConfig, SeekerConfig
from esc.episode import Roles, future_reward, future_rewards, reward_class, run_episode
from esc.roles import Counselor, Judge, Seeker
from esc.safety_model import LLMCrisisClassifier
from esc.schemas import Scenario, Turn

SCENARIO = Scenario(id="s1", emotion_type="sadness", problem_type="breakup", situation="My partner left me.")


class ScriptedBackend:
    """Answers by role (read from the system prompt); the judge's verdicts come from a script."""

    name = "scripted"
    supports_logprobs = True

    def __init__(self, verdicts):
        self.verdicts = list(verdicts)
        self.judge_calls = 0
        self.counselor_calls = 0

    async def generate(self, messages, params):
        system = messages[0]["content"]
        if "judge" in system or "one word" in system:
            text = self.verdicts[self.judge_calls % len(self.verdicts)]
            self.judge_calls += 1
        elif "seeking emotional support" in system:
            text = "I still feel bad."
        else:
            self.counselor_calls += 1
            text = params.prefill + "they are sad</think><answer>That sounds painful.</answer>"
        return Generation(text, 10, 5, "stop")

    async def continuation_logprobs(self, messages, continuations):
        verdict = self.verdicts[self.judge_calls % len(self.verdicts)]
        self.judge_calls += 1
        return [0.0 if c == verdict else -50.0 for c in continuations]

    async def close(self):
        pass


def roles(backend, scorer="sample", samples=1):
    judge = JudgeConfig(scorer=scorer, num_samples=samples)
    return Roles(
        seeker=Seeker(backend, SeekerConfig()),
        counselor=Counselor(backend, CounselorConfig(), SafetyConfig()),
        judge=Judge(backend, judge),
    )


def test_episode_stops_at_first_success():
    backend = ScriptedBackend(["same", "better", "solved"])
    episode = asyncio.run(run_episode(SCENARIO, roles(backend), EpisodeConfig(max_turns=8)))
    assert episode.success and episode.turns == 3
    assert [r.reward for r in episode.records] == [-0.5, 0.5, 1.0]
    roles_spoken = [t.role for t in episode.dialogue.turns]
    assert roles_spoken == ["seeker", "counselor", "seeker", "counselor", "seeker", "counselor"]
    answers = [t for t in episode.dialogue.turns if t.role == "counselor"]
    assert all(t.text == "That sounds painful." and t.reasoning == "they are sad" for t in answers)
    assert [t.reward for t in answers] == [-0.5, 0.5, 1.0]


def test_each_turn_record_names_the_weights_that_wrote_it():
    class Publishing(ScriptedBackend):  # the learner publishes a version after every counselor turn
        async def generate(self, messages, params):
            made = await super().generate(messages, params)
            return dataclasses.replace(made, weights_version=3 + self.counselor_calls)

    episode = asyncio.run(run_episode(SCENARIO, roles(Publishing(["same"])), EpisodeConfig(max_turns=3)))
    assert [r.weights_version for r in episode.records] == [4, 5, 6]


def test_always_better_is_not_success_and_counts_max_turns():
    backend = ScriptedBackend(["better"])
    episode = asyncio.run(run_episode(SCENARIO, roles(backend), EpisodeConfig(max_turns=4)))
    assert not episode.success
    assert episode.turns == 4 and len(episode.records) == 4
    assert episode.dialogue.turns[-1].role == "counselor"  # no seeker line after the last turn


def test_likelihood_scorer_drives_the_same_protocol():
    backend = ScriptedBackend(["worse", "solved"])
    episode = asyncio.run(run_episode(SCENARIO, roles(backend, scorer="likelihood"), EpisodeConfig()))
    assert episode.success and episode.turns == 2
    assert episode.records[0].verdict == "worse"
    assert episode.records[0].reward == pytest.approx(-1.0)


def test_crisis_message_gets_resources_without_the_model():
    class CrisisSeeker(ScriptedBackend):
        async def generate(self, messages, params):
            if "seeking emotional support" in messages[0]["content"]:
                return Generation("I want to kill myself.", 10, 5, "stop")
            return await super().generate(messages, params)

    backend = CrisisSeeker(["same"])
    episode = asyncio.run(run_episode(SCENARIO, roles(backend), EpisodeConfig(max_turns=1)))
    assert episode.records[0].crisis
    assert episode.dialogue.turns[1].crisis
    assert "116 123" in episode.dialogue.turns[1].text or "findahelpline" in episode.dialogue.turns[1].text
    assert backend.counselor_calls == 0


@pytest.mark.parametrize("verdict", [True, False])
def test_model_classifier_reads_the_recent_seeker_turns_when_the_lexicon_is_silent(verdict):
    backend = ScriptedBackend(["same"])
    seen = []

    async def classifier(messages):
        seen.append(list(messages))
        return verdict

    counselor = Counselor(backend, CounselorConfig(), SafetyConfig(window=2), classifier)
    history = [
        Turn(role="seeker", text="Work has been hard."),
        Turn(role="counselor", text="I hear you."),
        Turn(role="seeker", text="I gave away all my things and wrote letters to everyone."),
        Turn(role="counselor", text="Tell me more."),
        Turn(role="seeker", text="Anyway, how are you?"),
    ]
    output = asyncio.run(counselor.respond(history))
    assert seen == [["I gave away all my things and wrote letters to everyone.", "Anyway, how are you?"]]
    assert output.turn.crisis is verdict
    assert backend.counselor_calls == (0 if verdict else 1)


def test_judge_classifier_asks_about_the_last_message_against_its_threshold():
    class YesNo(ScriptedBackend):
        async def continuation_logprobs(self, messages, continuations):
            self.asked = messages[-1]["content"]
            return [math.log(0.8), math.log(0.2)]  # p(yes) = 0.8

    backend = YesNo(["same"])
    assert asyncio.run(LLMCrisisClassifier(backend, 0.7)(["earlier", "the last one"])) is True
    assert "the last one" in backend.asked and "earlier" not in backend.asked
    assert asyncio.run(LLMCrisisClassifier(backend, 0.9)(["the last one"])) is False


def test_sample_scorer_averages_parsable_samples_with_distinct_seeds():
    class Recording(ScriptedBackend):
        seeds = []

        async def generate(self, messages, params):
            self.seeds.append(params.seed)
            return await super().generate(messages, params)

    backend = Recording(["better", "solved", "hmm", "better", "worse"] * 2)
    judge = Judge(backend, JudgeConfig(scorer="sample", num_samples=10))
    result = asyncio.run(judge.rate(SCENARIO, [Turn(role="seeker", text="hi")], seed=100))
    # parsable: better, solved, better, worse twice each -> (0.5 + 1 + 0.5 - 1) * 2 / 8 = 0.25
    assert result.reward == pytest.approx(0.25)
    assert result.verdict == "better" and len(result.samples) == 10
    assert backend.seeds == list(range(100, 110))


@pytest.mark.parametrize("reward, label", [(-1.0, 0), (-0.26, 0), (-0.25, 1), (0.0, 1), (0.25, 2), (1.0, 2)])
def test_reward_classes_with_default_edges(reward, label):
    assert reward_class(reward, FutureConfig().class_edges) == label


def test_future_reward_simulates_k_exchanges_then_judges():
    backend = ScriptedBackend(["solved"])
    context = [Turn(role="seeker", text="My partner left me.")]
    candidate = Turn(role="counselor", text="I'm so sorry.")
    result = asyncio.run(future_reward(SCENARIO, context, candidate, roles(backend), FutureConfig(horizon=2)))
    assert [t.role for t in result.future] == ["seeker", "counselor", "seeker", "counselor"]
    assert result.reward == 1.0 and result.label == 2 and result.verdict == "solved"
    assert backend.judge_calls == 1


def test_future_rewards_run_many_candidates_concurrently():
    backend = ScriptedBackend(["worse", "solved", "same"])
    context = [Turn(role="seeker", text="My partner left me.")]
    items = [(SCENARIO, context, Turn(role="counselor", text=f"reply {i}")) for i in range(3)]
    results = asyncio.run(future_rewards(items, roles(backend), FutureConfig(horizon=1)))
    assert [r.future[0].role for r in results] == ["seeker"] * 3
    assert sorted(r.label for r in results) == [0, 0, 2]  # worse -1, same -0.5, solved 1


def test_future_reward_rejects_a_seeker_candidate():
    with pytest.raises(ValueError, match="counselor turn"):
        asyncio.run(
            future_reward(
                SCENARIO, [], Turn(role="seeker", text="x"), roles(ScriptedBackend(["same"])), FutureConfig()
            )
        )
