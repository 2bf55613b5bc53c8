"""Turning dialogues into contexts: points where the counselor speaks next."""

from __future__ import annotations

import hashlib

from esc.schemas import Context, Dialogue, Turn


def _pick(key: str, seed: int, n: int) -> int:
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest(), 16) % n


def dialogue_context(dialogue: Dialogue, seed: int) -> Context:
    """One context from a dialogue.

    With real turns: a counselor turn that follows a seeker turn, chosen by a seeded hash of the
    dialogue id (so every run picks the same one); the turns before it are the context and it is the
    reference. Without usable turns (built-in scenarios): the seeker's situation as their opening line.
    """
    turns = dialogue.turns
    choices = [
        i for i in range(1, len(turns)) if turns[i].role == "counselor" and turns[i - 1].role == "seeker"
    ]
    if not choices:
        opening = (Turn(role="seeker", text=dialogue.scenario.situation),)
        return Context(id=dialogue.id, scenario=dialogue.scenario, turns=opening)
    index = choices[_pick(dialogue.id, seed, len(choices))]
    return Context(id=dialogue.id, scenario=dialogue.scenario, turns=turns[:index], reference=turns[index])
