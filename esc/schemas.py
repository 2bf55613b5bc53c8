"""Wire types of the domain: scenarios, turns and dialogues.

Every other layer speaks these types. They are pydantic models so they validate on the way in and
serialise to JSON/msgpack-friendly dicts (`model_dump()`) on the way out; no pickle anywhere.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["seeker", "counselor"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scenario(_Strict):
    """What a help-seeker brings to a conversation.

    Invariants: `situation` is non-empty free text written from the seeker's point of view;
    `initial_intensity`, when known, is the seeker's self-rated emotion intensity (1 = mild, 5 = severe).
    `id` is stable across runs for the same source record, so it can key stores and splits.
    """

    id: str = Field(min_length=1, description="Stable identifier, e.g. 'builtin-07' or 'esconv-train-12'.")
    emotion_type: str = Field(min_length=1, description="Main emotion, e.g. 'anxiety'.")
    problem_type: str = Field(min_length=1, description="Kind of problem, e.g. 'job crisis'.")
    situation: str = Field(min_length=1, description="The seeker's situation in their own words.")
    initial_intensity: int | None = Field(default=None, ge=1, le=5, description="Emotion intensity 1-5.")

    @field_validator("emotion_type", "problem_type", "situation")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class Turn(_Strict):
    """One utterance.

    Invariants: `text` is what the other party sees (for the counselor: the answer only, never the
    reasoning). `reasoning` is set only on counselor turns produced with explicit thinking.
    `reward` is the judge's reward for the seeker's state after this counselor turn, in [-1, 1].
    `strategy` is the annotated support strategy (ESConv/ExTES) where the data has one.
    """

    role: Role
    text: str
    strategy: str | None = None
    reasoning: str | None = None
    reward: float | None = Field(default=None, ge=-1.0, le=1.0)
    crisis: bool = Field(default=False, description="The safety check flagged this turn.")


class Survey(_Strict):
    """The seeker's own ratings (ESConv): emotion intensity before and after, 1-5."""

    initial_intensity: int = Field(ge=1, le=5)
    final_intensity: int = Field(ge=1, le=5)


class Dialogue(_Strict):
    """A conversation about one scenario.

    Invariants: `turns` are in spoken order; the same role may speak several turns in a row (real
    ESConv data does this). `split` is 'train', 'valid' or 'test' where the source defines one.
    """

    id: str = Field(min_length=1)
    scenario: Scenario
    turns: tuple[Turn, ...] = ()
    split: str | None = None
    survey: Survey | None = None
    source: str = Field(default="builtin", description="'builtin', 'esconv', 'extes' or 'simulated'.")

    def counselor_turns(self) -> list[Turn]:
        return [t for t in self.turns if t.role == "counselor"]


class Candidate(_Strict):
    """One candidate counselor reply to a context, as the policy of `policy_version` wrote it.

    `text` is the answer only; `raw` the full output with reasoning. The future fields are set when
    the candidate got future simulation: `future_reward` in [-1, 1], its class `label`, the judge's
    `verdict`, and the simulated `future` turns.
    """

    text: str
    raw: str
    reasoning: str | None = None
    well_formed: bool
    policy_version: int = Field(ge=0)
    future_reward: float | None = Field(default=None, ge=-1.0, le=1.0)
    label: int | None = Field(default=None, ge=0)
    verdict: str | None = None
    future: tuple[Turn, ...] = ()
    prompt_ids: tuple[int, ...] = Field(default=(), description="Prompt tokens the policy saw (prefill in).")
    token_ids: tuple[int, ...] = Field(default=(), description="Sampled tokens; empty for crisis replies.")
    token_logprobs: tuple[float, ...] = Field(
        default=(), description="Behaviour log-prob of each sampled token, under `policy_version`."
    )


class CandidateGroup(_Strict):
    """G candidate replies to one context: the unit the replay store holds and GRPO learns from.

    Invariants: `id` is deterministic for (run, context, the version served when the group started),
    so a retried or resumed worker re-creates the same id and the store keeps one copy. Each candidate
    carries the version that wrote it; when new weights arrive while a group is being written, its
    candidates can differ, and `policy_version` is the oldest of them (what staleness is counted
    from). `created_at` is Unix seconds. The store keeps `model_dump()` as msgpack and the learner
    validates what it samples back into this type.
    """

    id: str = Field(min_length=1)
    kind: Literal["group"] = "group"
    scenario: Scenario
    context: tuple[Turn, ...]
    candidates: tuple[Candidate, ...] = Field(min_length=1)
    policy_version: int = Field(ge=0)
    created_at: float
    worker: str = Field(default="", description="Which rollout worker produced it.")


class Context(_Strict):
    """A point in a conversation where the counselor speaks next: what training and collection work on.

    `turns` end with a seeker turn; `reference` is the real counselor reply that followed, where the
    data has one. `id` is stable for the same source dialogue and seed.
    """

    id: str = Field(min_length=1)
    scenario: Scenario
    turns: tuple[Turn, ...] = Field(min_length=1)
    reference: Turn | None = None
