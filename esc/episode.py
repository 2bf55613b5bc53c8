"""Conversations between the roles: interactive episodes and future-oriented rewards.

`run_episode` is the PPDPP protocol: the seeker opens; counselor and seeker alternate; the judge rates
the seeker after every counselor turn; the episode succeeds as soon as that reward is strictly above
`success_threshold` (0.5), and fails after `max_turns` counselor turns.

`future_reward` is RLFF-ESC's reward of a candidate reply: append it to the context, let the seeker
and a system agent (a counselor) continue for k exchanges, then judge the final state.

Seeds: every model call gets its own seed derived from the caller's seed and its position in the
conversation, so a run is reproducible whatever else is batched alongside it.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from esc.backends import BackendPool
from esc.config import EpisodeConfig, FutureConfig, RunConfig
from esc.roles import Counselor, Judge, Seeker, is_success
from esc.schemas import Dialogue, Scenario, Turn


def call_seed(seed: int, turn: int, role: int) -> int:
    """Seed of one model call: distinct per (episode seed, turn index, role index)."""
    return seed * 10_000 + turn * 10 + role


class TurnRecord(BaseModel):
    """What happened at one counselor turn of an episode."""

    model_config = ConfigDict(extra="forbid")

    turn: int = Field(ge=1, description="Counselor turn number, from 1.")
    reward: float = Field(ge=-1.0, le=1.0, description="Judge reward after this counselor turn.")
    verdict: str | None = Field(description="Most likely or most sampled verdict.")
    well_formed: bool = Field(description="The counselor output followed <think>/<answer>.")
    crisis: bool = Field(description="The safety check answered instead of the model.")
    raw: str = Field(description="The counselor's full output, reasoning included.")
    weights_version: int | None = Field(
        default=None, description="Policy weights that wrote it (None: a crisis reply, or not tracked)."
    )


class Episode(BaseModel):
    """One evaluated conversation; `dialogue.turns` carry answers only, reasoning on the Turn."""

    model_config = ConfigDict(extra="forbid")

    scenario_id: str
    success: bool
    turns: int = Field(description="Counselor turns used (max_turns when the episode failed).")
    records: list[TurnRecord]
    dialogue: Dialogue
    seconds: float
    completion_tokens: int


@dataclass
class Roles:
    """The three roles an episode needs; `system_agent` continues as counselor in future simulation."""

    seeker: Seeker
    counselor: Counselor
    judge: Judge
    system_agent: Counselor | None = None

    @classmethod
    def from_config(cls, config: RunConfig, pool: BackendPool, future: bool = False) -> Roles:
        """The roles a run's config describes, sharing backends through `pool`. The system agent is
        built only with `future=True` (future simulation), so evaluation loads no model it won't use."""
        agent = config.system_agent
        return cls(
            seeker=Seeker(pool.get(config.seeker), config.seeker),
            counselor=Counselor.from_config(config, pool),
            judge=Judge(pool.get(config.judge), config.judge),
            system_agent=Counselor(pool.get(agent), agent, config.safety) if future else None,
        )


async def run_episode(
    scenario: Scenario,
    roles: Roles,
    config: EpisodeConfig,
    seed: int = 0,
    on_turn: Callable[[], None] | None = None,
) -> Episode:
    """Play one PPDPP episode on `scenario`; see the module docstring for the protocol.
    `on_turn` is called after every judged counselor turn (e.g. to move a progress bar)."""
    started = time.perf_counter()
    history: list[Turn] = [await roles.seeker.speak(scenario, [], seed=call_seed(seed, 0, 0))]
    records: list[TurnRecord] = []
    tokens = 0
    success = False
    for turn in range(1, config.max_turns + 1):
        output = await roles.counselor.respond(history, seed=call_seed(seed, turn, 1))
        tokens += output.completion_tokens
        history.append(output.turn)
        rating = await roles.judge.rate(scenario, history, seed=call_seed(seed, turn, 2))
        history[-1] = output.turn.model_copy(update={"reward": rating.reward})
        records.append(
            TurnRecord(
                turn=turn,
                reward=rating.reward,
                verdict=rating.verdict,
                well_formed=output.well_formed,
                crisis=output.turn.crisis,
                raw=output.raw,
                weights_version=output.weights_version,
            )
        )
        if on_turn is not None:
            on_turn()
        if is_success(rating.reward, config.success_threshold):
            success = True
            break
        if turn < config.max_turns:
            history.append(await roles.seeker.speak(scenario, history, seed=call_seed(seed, turn, 0)))
    dialogue = Dialogue(
        id=f"episode-{scenario.id}-{seed}", scenario=scenario, turns=tuple(history), source="simulated"
    )
    return Episode(
        scenario_id=scenario.id,
        success=success,
        turns=len(records) if success else config.max_turns,
        records=records,
        dialogue=dialogue,
        seconds=time.perf_counter() - started,
        completion_tokens=tokens,
    )


def reward_class(reward: float, edges: list[float]) -> int:
    """Class index of a reward given ascending cut points: n edges give classes 0..n.

    With the default edges [-0.25, 0.25]: class 0 (negative) for reward < -0.25, class 1 (neutral)
    for -0.25 <= reward < 0.25, class 2 (positive) for reward >= 0.25.
    """
    return bisect.bisect_right(edges, reward)


class FutureReward(BaseModel):
    """The future-oriented reward of one candidate reply."""

    model_config = ConfigDict(extra="forbid")

    reward: float = Field(ge=-1.0, le=1.0, description="Judge reward of the simulated final state.")
    label: int = Field(ge=0, description="Reward class under future.class_edges.")
    verdict: str | None
    future: list[Turn] = Field(description="The simulated turns after the candidate.")


async def future_reward(
    scenario: Scenario,
    context: list[Turn],
    candidate: Turn,
    roles: Roles,
    config: FutureConfig,
    seed: int = 0,
) -> FutureReward:
    """Append `candidate` (a counselor turn) to `context`, simulate `config.horizon` seeker/system-agent
    exchanges, and judge the final state. With horizon 0 the judge rates the candidate directly."""
    if candidate.role != "counselor":
        raise ValueError("the candidate must be a counselor turn")
    agent = roles.system_agent or roles.counselor
    history = [*context, candidate]
    for step in range(1, config.horizon + 1):
        history.append(await roles.seeker.speak(scenario, history, seed=call_seed(seed, step, 0)))
        history.append((await agent.respond(history, seed=call_seed(seed, step, 1))).turn)
    rating = await roles.judge.rate(scenario, history, seed=call_seed(seed, config.horizon + 1, 2))
    return FutureReward(
        reward=rating.reward,
        label=reward_class(rating.reward, config.class_edges),
        verdict=rating.verdict,
        future=history[len(context) + 1 :],
    )


async def future_rewards(
    items: list[tuple[Scenario, list[Turn], Turn]], roles: Roles, config: FutureConfig, seed: int = 0
) -> list[FutureReward]:
    """Future rewards of many (scenario, context, candidate) items at once, so the backend batches."""
    return list(
        await asyncio.gather(
            *(
                future_reward(s, ctx, cand, roles, config, seed=seed + i)
                for i, (s, ctx, cand) in enumerate(items)
            )
        )
    )
