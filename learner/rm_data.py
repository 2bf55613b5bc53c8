"""Reward-model examples: context groups of candidate replies, their labels and ranking pairs.

Owns `RMExample` (one (context, reply) with its kind and, for real replies, a scalar label), the
builders that make context groups from ESConv dialogues (data-grounded, future-oriented labels) or
from replay-store candidate groups (simulated future rewards), the ranking pairs within a group, and
`last_seeker_text`, the part of a context the reward model compares a reply with. Plain Python: no
torch, no Ray, no models.

Data-grounded groups. Every labelled reply of a dialogue (`esc.future_labels`: a counselor utterance
after a seeker one, with at least one seeker turn after it) is a context: the turns before it. Its
group holds
- `real`: the counselor's actual reply, with `reward` = its future-oriented label in [-1, 1];
- `other`: `other_replies` real replies of other chosen contexts from OTHER dialogues (seeded):
  fluent and supportive, but written for someone else's problem;
- `empty`: the empty reply;
- `generic`: one of `GENERIC_REPLIES` (seeded), a one-liner that would fit any context;
- `copy`: the seeker's own last turn, repeated back verbatim;
- `padded`: the real reply with the group's first `other` reply appended: longer than the real reply
  and drifting off the seeker's problem, so a longer reply is not a better one by its length alone
  (without it, GRPO on this reward model grew answers by 10 tokens in 16 updates).
Only real replies carry a label; the ranking puts the real reply above every other member of its group
(`ranking_pairs`), and says nothing about the order among the others.

Simulated groups (`labels=simulated`): each labelled candidate of a replay-store group, kind
`candidate`, `reward` = its `future_reward`; pairs are every strictly better / worse pair in a group.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from esc.config import RewardModelConfig
from esc.future_labels import future_labels
from esc.schemas import CandidateGroup, Dialogue, Turn

# the kinds ranked below a group's real reply
NEGATIVE_KINDS = ("other", "empty", "generic", "copy", "padded")
GENERIC_REPLIES = (
    "Okay.",
    "I see.",
    "Hmm.",
    "Alright.",
    "Thanks for sharing.",
    "Tell me more.",
    "That is interesting.",
    "Sure.",
)


@dataclass(frozen=True)
class RMExample:
    """One (context, reply) the reward model scores.

    `context`: the turns before the reply, in spoken order. `reply`: the candidate counselor reply
    (answer text only). `reward`: the scalar label (higher is better, in [-1, 1]) or None (negatives:
    only their rank is known). `group`: examples of one group share a context. `kind`: 'real', one of
    NEGATIVE_KINDS, or 'candidate' (simulated). `intensity`: the seeker's starting intensity (1-5).
    """

    context: tuple[Turn, ...]
    reply: str
    reward: float | None
    group: str
    kind: str = "real"
    intensity: int | None = None
    weight: float = 1.0  # of its pairs (as the preferred member) and its label in training


def last_seeker_text(context: Sequence[Turn]) -> str:
    """The seeker's last turn in `context`: its last run of consecutive seeker utterances, joined."""
    end = max((i for i, t in enumerate(context) if t.role == "seeker"), default=None)
    if end is None:
        return ""
    start = end
    while start > 0 and context[start - 1].role == "seeker":
        start -= 1
    return " ".join(t.text.strip() for t in context[start : end + 1])


def real_examples(dialogues: Iterable[Dialogue], cfg: RewardModelConfig) -> list[RMExample]:
    """One 'real' example per labelled reply of every dialogue (group = '<dialogue id>:<turn index>')."""
    examples = []
    for dialogue in dialogues:
        intensity = dialogue.survey.initial_intensity if dialogue.survey else None
        for label in future_labels(dialogue, cfg.future_turns, cfg.survey_weight):
            examples.append(
                RMExample(
                    context=dialogue.turns[: label.index],
                    reply=dialogue.turns[label.index].text,
                    reward=label.label,
                    group=f"{dialogue.id}:{label.index}",
                    intensity=intensity,
                )
            )
    return examples


def data_grounded_examples(
    dialogues: Iterable[Dialogue], cfg: RewardModelConfig, seed: int, max_contexts: int
) -> list[RMExample]:
    """Context groups (see the module doc) for a seeded choice of at most `max_contexts` labelled replies.

    Returns the groups one after another, each starting with its real reply. 'other' replies are drawn
    from the real replies of the CHOSEN contexts of other dialogues, so they add no text to embed.
    """
    pool = real_examples(dialogues, cfg)
    rng = random.Random(f"rm-contexts:{seed}")
    chosen = [pool[i] for i in sorted(rng.sample(range(len(pool)), min(max_contexts, len(pool))))]
    examples: list[RMExample] = []
    for real in chosen:
        dialogue_id = real.group.rsplit(":", 1)[0]
        donors: list[str] = []
        for _ in range(100 * cfg.other_replies):  # bounded retries: a pool of one dialogue has no donor
            if len(donors) == cfg.other_replies:
                break
            donor = chosen[rng.randrange(len(chosen))]
            if donor.group.rsplit(":", 1)[0] != dialogue_id and donor.reply not in donors:
                donors.append(donor.reply)
        negatives = [("other", text) for text in donors]
        negatives += [("empty", ""), ("generic", rng.choice(GENERIC_REPLIES))]
        negatives.append(("copy", last_seeker_text(real.context)))
        if donors:
            negatives.append(("padded", f"{real.reply.strip()} {donors[0].strip()}"))
        examples.append(real)
        for kind, text in negatives:
            examples.append(RMExample(real.context, text, None, real.group, kind, real.intensity))
    return examples


def simulated_examples(groups: Iterable[CandidateGroup]) -> list[RMExample]:
    """One 'candidate' example per candidate with a future-simulation label, from replay-store groups.

    Candidates without `label` are skipped (they got no future simulation). `group` is the group's id,
    `reward` the candidate's `future_reward`.
    """
    examples = []
    for group in groups:
        for candidate in group.candidates:
            if candidate.label is None:
                continue
            examples.append(
                RMExample(
                    context=group.context,
                    reply=candidate.text,
                    reward=candidate.future_reward,
                    group=group.id,
                    kind="candidate",
                    intensity=group.scenario.initial_intensity,
                )
            )
    return examples


def ranking_pairs(examples: Sequence[RMExample]) -> list[tuple[int, int]]:
    """(preferred, dispreferred) index pairs, only within a group.

    A 'real' example is preferred to every NEGATIVE_KINDS example of its group; two examples that both
    have a `reward` form a pair when one is strictly higher (ties give none) and their replies differ:
    the same reply in the same group (a crisis context's G copies of the crisis reply, several
    fallback lines) is the same input, which no model can rank, whatever its simulated futures gave.
    """
    by_group: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        by_group.setdefault(example.group, []).append(index)
    pairs = []
    for members in by_group.values():
        for i in members:
            for j in members:
                a, b = examples[i], examples[j]
                ranked = a.kind == "real" and b.kind in NEGATIVE_KINDS
                rewarded = a.reward is not None and b.reward is not None and a.reply != b.reply
                if ranked or (rewarded and a.reward > b.reward):
                    pairs.append((i, j))
    return pairs
