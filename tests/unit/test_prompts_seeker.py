"""The seeker simulator's prompt (with and without real seekers' turns as examples) and its resampling
of out-of-role turns, with a scripted backend (pure prompt and control logic)."""

import asyncio

import pytest

from esc import prompts
from esc.backends.base import Generation
from esc.config import SeekerConfig
from esc.roles import Seeker
from esc.schemas import Dialogue, Scenario, Turn
from esc.seeker_check import RoleChecker, SeekerExamples, SeekerGrounding

SCENARIO = Scenario(
    id="esconv-valid-3", emotion_type="anxiety", problem_type="job crisis", situation="I may lose my job."
)
SEEKER_TURNS = [
    "I am so worried that my contract will not be renewed next month.",
    "I feel anxious every morning before I go to work.",
    "My boss ignores me and I think I will be fired soon.",
    "I have not slept well since they announced the layoffs.",
]
SUPPORTER_TURNS = [
    "I'm here to listen. What would you like to talk about today?",
    "That sounds really stressful. Have you tried talking to your manager?",
    "It's okay to take your time. How are you feeling about it?",
    "I understand. Have you considered looking at other jobs?",
]


def dialogues():
    turns = []
    for supporter, seeker in zip(SUPPORTER_TURNS, SEEKER_TURNS):
        turns += [Turn(role="counselor", text=supporter), Turn(role="seeker", text=seeker)]
    return [Dialogue(id="d", scenario=SCENARIO, turns=tuple(turns), source="esconv")]


def grounding():
    checker = RoleChecker.fit(dialogues(), min_count=1)
    return SeekerGrounding(checker, SeekerExamples.from_dialogues(dialogues(), checker))


def test_prompt_without_examples_describes_the_seeker_and_alternates_roles():
    history = [Turn(role="seeker", text="I might lose my job."), Turn(role="counselor", text="Tell me more.")]
    messages = prompts.seeker_messages(SCENARIO, history)
    system = messages[0]["content"]
    assert messages[0]["role"] == "system"
    assert "anxiety" in system and "job crisis" in system and "I may lose my job." in system
    assert "seeking emotional support" in system and "This is how people" not in system
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
    assert messages[1]["content"] == prompts.SEEKER_OPENING
    assert messages[2]["content"] == "I might lose my job." and messages[3]["content"] == "Tell me more."


def test_examples_are_listed_in_the_system_prompt_only():
    examples = ["I feel   lost\nand tired.", "My sister is angry with me."]
    messages = prompts.seeker_messages(SCENARIO, [], examples)
    system = messages[0]["content"]
    assert '- "I feel lost and tired."' in system  # whitespace folded to one line per example
    assert '- "My sister is angry with me."' in system
    assert all("sister" not in m["content"] for m in messages[1:])


def test_examples_come_from_real_seeker_turns_and_no_supporter_text_leaks_in():
    g = grounding()
    examples = g.examples.pick(SCENARIO, 3)
    assert len(examples) == 3 and set(examples) <= set(SEEKER_TURNS)
    system = prompts.seeker_messages(SCENARIO, [], examples)[0]["content"]
    for supporter in SUPPORTER_TURNS:
        assert supporter not in system
    # The only counselor text the seeker sees is the conversation itself, as "user" messages.
    listed = [line for line in system.splitlines() if line.startswith("- ")]
    assert len(listed) == 3


class ScriptedBackend:
    """Returns the scripted texts in order and records the prompts it was sent."""

    name = "scripted"

    def __init__(self, texts):
        self.texts, self.calls = list(texts), []

    async def generate(self, messages, params):
        self.calls.append((messages, params))
        return Generation(self.texts[(len(self.calls) - 1) % len(self.texts)], 10, 8, "stop")


def speak(backend, config, grounding=None):
    seeker = Seeker(backend, config, grounding)
    return seeker, asyncio.run(seeker.speak(SCENARIO, [], seed=5))


def test_grounded_seeker_resamples_a_counselor_like_turn():
    backend = ScriptedBackend(["I'm here to listen. How are you feeling?", "I am so worried about my job."])
    seeker, turn = speak(backend, SeekerConfig(num_examples=2, max_resamples=2), grounding())
    assert turn.text == "I am so worried about my job."
    assert (seeker.generations, seeker.turns) == (2, 1)
    assert [params.seed for _, params in backend.calls] == [5, 5 + 7919]  # a fresh seed per try
    system = backend.calls[0][0][0]["content"]
    assert sum(line.startswith("- ") for line in system.splitlines()) == 2


def test_resampling_is_bounded_and_keeps_the_most_seeker_like_try():
    texts = ["I'm here to listen.", "Have you tried talking to your manager?", "It's okay to take your time."]
    backend = ScriptedBackend(texts)
    g = grounding()
    seeker, turn = speak(backend, SeekerConfig(max_resamples=2), g)
    assert seeker.generations == 3
    assert turn.text == max(texts, key=g.checker.seeker_probability)


def test_without_grounding_the_prompt_alone_is_used_once():
    backend = ScriptedBackend(["Seeker: I'm here to listen."])
    seeker, turn = speak(backend, SeekerConfig(max_resamples=3))
    assert seeker.generations == 1 and turn.text == "I'm here to listen."  # role label stripped
    assert "This is how people" not in backend.calls[0][0][0]["content"]


def test_greedy_sampling_does_not_resample():
    backend = ScriptedBackend(["I'm here to listen.", "I am worried."])
    seeker, _ = speak(backend, SeekerConfig(temperature=0.0, max_resamples=2), grounding())
    assert seeker.generations == 1  # the same prompt and greedy decoding would give the same text


@pytest.mark.parametrize("field,value", [("num_examples", -1), ("max_resamples", 9)])
def test_config_bounds(field, value):
    with pytest.raises(ValueError):
        SeekerConfig(**{field: value})


def test_each_try_is_prefilled_with_a_real_opener_except_over_http():
    g = SeekerGrounding(grounding().checker, grounding().examples, ("I feel", "My boss"))
    backend = ScriptedBackend(["I'm here to listen.", "I'm here for you.", "I am worried."])
    speak(backend, SeekerConfig(max_resamples=2), g)
    assert [params.prefill for _, params in backend.calls] == [g.opener(SCENARIO, 0, a) for a in range(3)]
    assert {params.prefill for _, params in backend.calls} <= {"I feel", "My boss"}
    backend = ScriptedBackend(["I am worried."])
    backend.name = "openai"
    speak(backend, SeekerConfig(), g)
    assert backend.calls[0][1].prefill == ""
    backend = ScriptedBackend(["I am worried."])
    speak(backend, SeekerConfig(openers=False), g)
    assert backend.calls[0][1].prefill == ""
