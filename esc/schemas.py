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
