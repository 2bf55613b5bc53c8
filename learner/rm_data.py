"""Reward-model examples: what the reward model reads and which label or reward it learns.

Owns `RMExample` (one (context, reply) with its class label and/or scalar reward), the builders that
make examples from ESConv dialogues with seeker surveys (data-grounded labels) or from replay-store
candidate groups (simulated future rewards), the preference pairs of the ranking formulation, and
`rm_text`, the one string the reward model reads. Plain Python: no torch, no Ray, no models.

Data-grounded labels. ESConv seekers rated their emotion intensity (1-5) before and after the
conversation; improvement = initial - final. A context is the turns before one counselor turn of the
dialogue (`esc.contexts.dialogue_context`), its reply the real counselor turn that followed, its label
the improvement cut by `improvement_edges` (bisect_right, as `esc.episode.reward_class`). The label
belongs to the whole conversation, not the single reply: a weak, noisy signal by design. The seeker's
starting intensity travels along (`intensity`): it is part of the state a reply is judged in (a seeker
at 5/5 has more room to improve than one at 2/5), and the reward model reads it as a feature.

Negatives. A share `negatives` of extra examples pairs a context with ANOTHER dialogue's real reply
and takes the lowest class (0): a reply written for someone else's problem ignores what this seeker
said, so it is a poor reply here whatever that other conversation's outcome. They give the model
examples of replies that do not fit, which the survey labels alone never show.

Scalar rewards (ranking). Data-grounded real replies get reward = improvement / 4 (4 is the largest
change on a 1-5 scale), clipped to [-1, 1]; negatives get -1, below every real reply that did not make
the seeker feel worse by 4 points. Simulated candidates keep the judge's `future_reward`.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from esc.config import RewardModelConfig
from esc.contexts import dialogue_context
from esc.schemas import Dialogue, Turn

NEGATIVE_REWARD = -1.0  # scalar reward of a negative (another dialogue's reply): the lowest possible
_ROLE_NAMES = {"seeker": "Seeker", "counselor": "Counselor"}


@dataclass(frozen=True)
class RMExample:
    """One (context, reply) the reward model scores.

    `context`: the turns before the reply, in spoken order. `reply`: the candidate counselor reply
    (answer text only). `label`: reward class in [0, C) or None when unknown. `reward`: scalar reward
    (higher is better) or None. `group`: examples with the same group share a context; ranking pairs
    are formed within a group.
    """

    context: tuple[Turn, ...]
    reply: str
    label: int | None
    reward: float | None
    group: str
    intensity: int | None = None  # the seeker's emotion intensity (1-5) at the start, when known


def improvement_label(initial: int, final: int, edges: Sequence[float]) -> int:
    """Class of the survey improvement `initial - final` under ascending `edges` (n edges, n+1 classes)."""
    return bisect.bisect_right(list(edges), initial - final)


def data_grounded_examples(
    dialogues: Iterable[Dialogue], cfg: RewardModelConfig, seed: int
) -> list[RMExample]:
    """Examples from dialogues with a seeker survey: real replies plus `negatives` mismatched replies.

    One context per surveyed dialogue (seeded pick); dialogues without a survey or without a counselor
    turn after a seeker turn are skipped. Then round(cfg.negatives * n_real) negatives: a seeded
    context paired with a seeded other dialogue's reference reply, label 0, reward -1, same group as
    the context. Finally at most cfg.max_examples examples are kept (seeded choice, order preserved).
    """
    real: list[RMExample] = []
    for dialogue in dialogues:
        if dialogue.survey is None:
            continue
        context = dialogue_context(dialogue, seed)
        if context.reference is None:
            continue
        survey = dialogue.survey
        real.append(
            RMExample(
                context=context.turns,
                reply=context.reference.text,
                label=improvement_label(
                    survey.initial_intensity, survey.final_intensity, cfg.improvement_edges
                ),
                reward=max(-1.0, min(1.0, (survey.initial_intensity - survey.final_intensity) / 4.0)),
                group=context.id,
                intensity=survey.initial_intensity,
            )
        )
    rng = random.Random(f"rm-negatives:{seed}")
    negatives: list[RMExample] = []
    if len(real) >= 2:
        count = round(cfg.negatives * len(real))
        hosts = [rng.randrange(len(real)) for _ in range(count)]
        for host in hosts:
            donor = rng.randrange(len(real) - 1)
            donor += donor >= host  # any example but the host itself
            negatives.append(
                RMExample(
                    context=real[host].context,
                    reply=real[donor].reply,
                    label=0,
                    reward=NEGATIVE_REWARD,
                    group=real[host].group,
                    intensity=real[host].intensity,
                )
            )
    examples = real + negatives
    if len(examples) > cfg.max_examples:
        keep = sorted(random.Random(f"rm-cap:{seed}").sample(range(len(examples)), cfg.max_examples))
        examples = [examples[i] for i in keep]
    return examples


def simulated_examples(records: Iterable[dict[str, Any]]) -> list[RMExample]:
    """One example per candidate with a future-simulation label, from replay-store 'group' records.

    A record is a `CandidateGroup.model_dump()`; candidates without `label` are skipped (they got no
    future simulation). `group` is the record id, `reward` the candidate's `future_reward`.
    """
    examples = []
    for record in records:
        context = tuple(Turn.model_validate(t) for t in record["context"])
        intensity = (record.get("scenario") or {}).get("initial_intensity")
        for candidate in record["candidates"]:
            if candidate.get("label") is None:
                continue
            examples.append(
                RMExample(
                    context=context,
                    reply=candidate["text"],
                    label=int(candidate["label"]),
                    reward=candidate.get("future_reward"),
                    group=str(record["id"]),
                    intensity=intensity,
                )
            )
    return examples


def ranking_pairs(examples: Sequence[RMExample], across_groups: bool, seed: int) -> list[tuple[int, int]]:
    """(preferred, dispreferred) index pairs for the Bradley-Terry formulation.

    Within each group: every pair with a strictly higher `reward` (ties give none), as in the paper's
    ranking of replies to one context. With `across_groups` (data-grounded labels, where most groups hold
    a single real reply): also one pair per labelled example with a seeded example of another group and
    a different `label`, the higher label preferred, so the survey outcome is learnt, not only the
    real-vs-negative contrast. Examples without reward (within) or label (across) take no part.
    """
    from learner.losses import preference_pairs

    by_group: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        if example.reward is not None:
            by_group.setdefault(example.group, []).append(index)
    pairs = []
    for members in by_group.values():
        rewards = [examples[i].reward for i in members]
        pairs.extend((members[i], members[j]) for i, j in preference_pairs(rewards))  # type: ignore[arg-type]
    if across_groups:
        rng = random.Random(f"rm-pairs:{seed}")
        labelled = [i for i, e in enumerate(examples) if e.label is not None]
        for i in labelled:
            others = [j for j in labelled if examples[j].group != examples[i].group]
            others = [j for j in others if examples[j].label != examples[i].label]
            if others:
                j = rng.choice(others)
                pairs.append((i, j) if examples[i].label > examples[j].label else (j, i))  # type: ignore[operator]
    return pairs


def rm_text(context: Sequence[Turn], reply: str, max_chars: int | None = None) -> str:
    """The one text the reward model reads: the dialogue so far, one line per turn, then the reply.

    "Seeker: ...\\nCounselor: ...\\nCounselor (candidate): <reply>". With `max_chars`, only the last
    `max_chars` characters are kept (the end matters most: the reply and the turns it answers); the
    model also truncates from the left at token level.
    """
    lines = [f"{_ROLE_NAMES[t.role]}: {' '.join(t.text.split())}" for t in context]
    lines.append(f"Counselor (candidate): {' '.join(reply.split())}")
    text = "\n".join(lines)
    return text[-max_chars:] if max_chars is not None and len(text) > max_chars else text
