"""The three LLM roles of RLFF-ESC over any InferenceBackend: seeker simulator, counselor, judge.

Roles own prompting, parsing and scoring; backends own tokens. Nothing here knows about Ray. Every
async method may be called many times concurrently so the backend can batch the requests.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

from esc import prompts
from esc.backends import BackendPool
from esc.backends.base import Generation, InferenceBackend, SamplingParams, stream_generation
from esc.config import CounselorConfig, JudgeConfig, RoleConfig, RunConfig, SafetyConfig, SeekerConfig
from esc.metrics import verdict_from_probs
from esc.parsing import VERDICTS, parse_counselor, parse_verdict, parse_verdict_word
from esc.safety import check_conversation, crisis_reply
from esc.safety_model import LLMCrisisClassifier
from esc.schemas import Scenario, Turn
from esc.seeker_check import SeekerGrounding

_ROLE_LABEL = re.compile(r"^(?:seeker|me|user|client)\s*:\s*", re.IGNORECASE)
FALLBACK_ANSWER = "I hear you. Could you tell me a little more about how you are feeling?"
_OPEN = re.compile(r"<\s*(think|answer)\s*>", re.IGNORECASE)
_CLOSE = re.compile(r"<\s*/\s*(think|answer)\s*>", re.IGNORECASE)


def used_fallback(raw: str) -> bool:
    """Whether a (non-crisis) counselor output `raw` had no usable answer, so that the seeker was
    sent FALLBACK_ANSWER in its place (`Counselor.respond` parses `raw` the same way)."""
    return not parse_counselor(raw).answer


def malformed_reason(raw: str) -> str:
    """In a few words, why `raw` is not a `<think>R</think><answer>A</answer>` reply (for people
    reading the dashboard); call it only for outputs that were not well formed."""
    opened = {m.lower() for m in _OPEN.findall(raw)}
    closed = {m.lower() for m in _CLOSE.findall(raw)}
    if not raw.strip() or raw.strip().lower() == prompts.THINK_PREFILL:
        return "empty output"
    if "answer" not in opened:
        if "think" in opened and "think" not in closed:
            return "no <answer>: the output ran out inside <think>"
        return "no <answer> tag"
    if not parse_counselor(raw).answer:
        return "empty <answer>"
    if "answer" not in closed:
        return "<answer> never closed"
    return "text outside the <think>/<answer> tags"


def sampling(config: RoleConfig, seed: int | None, **extra) -> SamplingParams:
    return SamplingParams(config.temperature, config.top_p, config.max_new_tokens, seed, **extra)


@dataclass(frozen=True)
class JudgeResult:
    """A judge's rating: `reward` in [-1, 1]; `verdict` the most likely (likelihood) or most sampled
    verdict (None when no sample parsed); `probs` per verdict (likelihood scorer) or the raw
    `samples` (sample scorer)."""

    reward: float
    verdict: str | None
    probs: dict[str, float] | None = None
    samples: list[str] | None = None


@dataclass(frozen=True)
class CounselorOutput:
    """One counselor turn: `turn.text` is the answer only; `raw` is the model's full text.
    `well_formed` False with an empty parsed answer means `turn.text` is FALLBACK_ANSWER, a stand-in
    so the conversation goes on, never the model's words (`used_fallback(raw)` tells it from `raw`).
    `weights_version`: the policy weights that wrote it (None for crisis replies and backends that
    do not track versions)."""

    turn: Turn
    raw: str
    well_formed: bool
    completion_tokens: int
    weights_version: int | None = None
    generation: Generation | None = None  # the backend's output (token ids, behaviour log-probs)


class Counselor:
    """The counselor policy: `<think>/<answer>` replies (or plain ones), behind the safety check."""

    def __init__(
        self,
        backend: InferenceBackend,
        config: CounselorConfig,
        safety: SafetyConfig,
        classifier: Callable[[list[str]], Awaitable[bool]] | None = None,
    ):
        self.backend, self.config, self.safety, self.classifier = backend, config, safety, classifier

    @classmethod
    def from_config(cls, config: RunConfig, pool: BackendPool) -> Counselor:
        """The run's counselor, with the model-based crisis classifier when `safety.classifier` asks."""
        safety, classifier = config.safety, None
        if safety.classifier == "judge":
            classifier = LLMCrisisClassifier(pool.get(config.judge), safety.classifier_threshold)
        elif safety.classifier == "probe":
            from esc.safety_probe import CrisisProbe

            classifier = CrisisProbe().any_crisis
        return cls(pool.get(config.counselor), config.counselor, safety, classifier)

    async def is_crisis(self, history: list[Turn]) -> bool:
        """The lexicon on each of the last `safety.window` seeker turns first; the model-based
        classifier (if any) only when the lexicon is silent: the probe reads the same turns, the judge
        the last one."""
        said = [t.text for t in history if t.role == "seeker"]
        if not said:
            return False
        if check_conversation(said, self.safety.window).crisis:
            return True
        if self.classifier is None:
            return False
        return await self.classifier(said[-self.safety.window :])

    async def respond(
        self,
        history: list[Turn],
        seed: int | None = None,
        answer_stops: tuple[str, ...] = (),
        **sampling_overrides: float | int | None,
    ) -> CounselorOutput:
        """Reply to the last seeker turn of `history`.

        When the safety check flags any of the last `safety.window` seeker messages, the reply is the
        crisis reply with resources, without calling the model, and the turn is flagged `crisis=True`.
        `sampling_overrides` (temperature, top_p, max_new_tokens; None keeps the config's) apply to
        this reply only, e.g. from an API request, as do `answer_stops`, an API client's stop strings:
        decoding ends at the first in the answer (not in the reasoning), where the backend can tell.
        """
        if self.safety.enabled and await self.is_crisis(history):
            return self.crisis_output()
        config, messages, params = self._request(history, seed, sampling_overrides, answer_stops)
        return self._output(config, await self.backend.generate(messages, params), answer_stops)

    async def respond_stream(
        self,
        history: list[Turn],
        seed: int | None = None,
        answer_stops: tuple[str, ...] = (),
        **sampling_overrides: float | int | None,
    ) -> AsyncIterator[str | CounselorOutput]:
        """`respond`, as it is written: the model's raw text so far (prefill included) each time it
        grows, then the `CounselorOutput`, the same one `respond` returns for the same seed. A crisis
        reply comes as the output alone. Closing the iterator early frees the backend's row."""
        if self.safety.enabled and await self.is_crisis(history):
            yield self.crisis_output()
            return
        config, messages, params = self._request(history, seed, sampling_overrides, answer_stops)
        async with aclosing(stream_generation(self.backend, messages, params)) as items:
            async for item in items:
                yield self._output(config, item, answer_stops) if isinstance(item, Generation) else item

    def crisis_output(self) -> CounselorOutput:
        text = crisis_reply(self.safety.region)
        return CounselorOutput(Turn(role="counselor", text=text, crisis=True), text, True, 0)

    def _request(
        self,
        history: list[Turn],
        seed: int | None,
        overrides: dict[str, float | int | None],
        answer_stops: tuple[str, ...] = (),
    ) -> tuple[CounselorConfig, list[dict[str, str]], SamplingParams]:
        changes = {k: v for k, v in overrides.items() if v is not None}
        config = self.config.model_copy(update=changes) if changes else self.config
        # Prefilling "<think>" makes small models far more likely to keep the format; an HTTP
        # chat-completions server cannot prefill, so there the instruction alone asks for it.
        reasoning = config.reasoning
        prefill = prompts.THINK_PREFILL if reasoning and self.backend.name != "openai" else ""
        # a client's stops count in the answer alone: after its opening tag when the counselor thinks
        late = {"late_stop": answer_stops, "late_stop_after": prompts.ANSWER_OPEN if reasoning else ""}
        stop = (prompts.ANSWER_CLOSE,) if reasoning else ()
        params = sampling(config, seed, prefill=prefill, stop=stop, **late)
        return config, prompts.counselor_messages(history, reasoning, config.max_history_turns), params

    def _output(
        self, config: CounselorConfig, generation: Generation, answer_stops: tuple[str, ...] = ()
    ) -> CounselorOutput:
        raw = generation.text
        if generation.stop_sequence == prompts.ANSWER_CLOSE:  # stop strings are cut from the text
            raw += prompts.ANSWER_CLOSE
        cut = generation.stop_sequence in answer_stops  # a client's stop string ended the answer
        if config.reasoning:
            parsed = parse_counselor(raw + prompts.ANSWER_CLOSE if cut else raw)  # read as closed there
            answer, thought, ok = parsed.answer, parsed.reasoning, parsed.well_formed
        else:
            answer, thought, ok = parse_counselor(generation.text).answer, None, True
        # an answer a client's stop string cut to nothing stays empty, as the client asked: no fallback
        text = answer if cut else answer or FALLBACK_ANSWER
        turn = Turn(role="counselor", text=text, reasoning=thought or None)
        return CounselorOutput(
            turn,
            raw,
            ok and bool(answer),
            generation.completion_tokens,
            generation.weights_version,
            generation,
        )


class Seeker:
    """The user simulator: role-plays the help-seeker of a scenario.

    With grounding (`config.examples` names dialogues, or `grounding` is passed) the prompt shows
    `num_examples` real seekers' turns of the scenario's problem type, and a turn the role checker
    reads as a counselor's is sampled again up to `max_resamples` times (the most seeker-like try is
    kept; greedy decoding is not resampled); with `openers`, each try starts with a common two-word
    opening of real seekers' turns ("I feel", "My job"). Without grounding, the prompt alone.
    `generations` / `turns` count backend calls and turns spoken, so the resampling cost is
    `generations / turns - 1`; `first_in_role` counts turns whose first try was already in role.
    """

    def __init__(
        self, backend: InferenceBackend, config: SeekerConfig, grounding: SeekerGrounding | None = None
    ):
        self.backend, self.config = backend, config
        if grounding is None and config.examples:
            grounding = SeekerGrounding.from_spec(config.examples)
        self.grounding = grounding
        self.generations = self.turns = self.first_in_role = 0

    async def speak(self, scenario: Scenario, history: list[Turn], seed: int | None = None) -> Turn:
        """The seeker's next line (their opening line when history is empty)."""
        grounding, config = self.grounding, self.config
        examples = grounding.examples.pick(scenario, config.num_examples) if grounding else []
        messages = prompts.seeker_messages(scenario, history, examples, config.max_history_turns)
        best, best_p = "", -1.0
        # a greedy decoder would repeat itself: resample only when sampling
        tries = 1 + config.max_resamples if grounding and config.temperature > 0 else 1
        # an HTTP chat-completions server cannot prefill an opener
        openers = grounding is not None and config.openers and self.backend.name != "openai"
        for attempt in range(tries):
            attempt_seed = None if seed is None else seed + 7919 * attempt
            prefill = grounding.opener(scenario, len(history), attempt) if openers else ""
            generation = await self.backend.generate(
                messages, sampling(config, attempt_seed, prefill=prefill, stop=("\n\n", "Counselor:"))
            )
            self.generations += 1
            text = _ROLE_LABEL.sub("", generation.text.strip()).strip() or scenario.situation
            p = grounding.checker.seeker_probability(text) if grounding else 1.0
            if p > best_p:
                best, best_p = text, p
            if grounding is None or p >= grounding.checker.threshold:
                self.first_in_role += attempt == 0
                break
        self.turns += 1
        return Turn(role="seeker", text=best)


class Judge:
    """Rates the seeker's state after a counselor turn with PPDPP verdict rewards in [-1, 1]."""

    def __init__(self, backend: InferenceBackend, config: JudgeConfig):
        self.backend, self.config = backend, config

    async def verdict_probs(self, scenario: Scenario, history: list[Turn]) -> dict[str, float]:
        """Softmax over the four verdict labels' continuation log-likelihoods (one forward pass)."""
        labels = list(VERDICTS)
        logps = await self.backend.continuation_logprobs(prompts.judge_messages(scenario, history), labels)
        top = max(logps)
        weights = [math.exp(lp - top) for lp in logps]
        total = sum(weights)
        return {label: w / total for label, w in zip(labels, weights)}

    async def samples(self, scenario: Scenario, history: list[Turn], seed: int | None = None) -> list[str]:
        """`num_samples` sampled judge texts (seeded one after another from `seed`)."""
        messages = prompts.judge_messages(scenario, history)
        seeds = [None if seed is None else seed + i for i in range(self.config.num_samples)]
        generations = await asyncio.gather(
            *(self.backend.generate(messages, sampling(self.config, s)) for s in seeds)
        )
        return [g.text for g in generations]

    async def rate(self, scenario: Scenario, history: list[Turn], seed: int | None = None) -> JudgeResult:
        """Judge the seeker's state after `history` with the configured scorer."""
        if self.config.scorer == "likelihood":
            probs = await self.verdict_probs(scenario, history)
            return JudgeResult(expected_reward(probs), verdict_from_probs(probs), probs=probs)
        texts = await self.samples(scenario, history, seed)
        verdicts = [v for v in map(parse_verdict_word, texts) if v is not None]
        top = max(verdicts, key=verdicts.count) if verdicts else None
        return JudgeResult(mean_sampled_reward(texts), top, samples=texts)

    async def score(self, scenario: Scenario, history: list[Turn], seed: int | None = None) -> float:
        """The reward in [-1, 1] of the seeker's state after `history`."""
        return (await self.rate(scenario, history, seed)).reward


def expected_reward(probs: dict[str, float]) -> float:
    """Expected PPDPP reward under verdict probabilities (label -> p, summing to 1)."""
    return sum(VERDICTS[label] * p for label, p in probs.items())


def mean_sampled_reward(texts: list[str]) -> float:
    """PPDPP: mean reward of the parsable verdicts; unparsable samples are dropped; 0.0 if none parse."""
    rewards = [r for r in map(parse_verdict, texts) if r is not None]
    return sum(rewards) / len(rewards) if rewards else 0.0


def is_success(reward: float, threshold: float = 0.5) -> bool:
    """PPDPP success: the mean reward is strictly above the threshold (0.5 = all 'better' fails)."""
    return reward > threshold
