"""The seeker simulator's SFT examples: real ESConv seekers' turns behind the simulator's own prompt.

Example contract: the prompt is exactly what `esc.roles.Seeker` sends for that turn without an opener
(`esc.prompts.seeker_messages(scenario, history, style examples, max_turns)`), and the completion is
the real seeker's words. Training (`learner.sft.train_sft(..., role="seeker")`) and the cache of the
trained model (`jobs/train_sft.py`) are shared with the counselor's SFT. No Ray here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

from esc import prompts
from esc.schemas import Dialogue, Scenario

Message = dict[str, str]
MIN_WORDS = 3  # "yes", "ok, thanks" carry no sign of who is speaking; the simulator need not learn them


def seeker_examples(
    dialogues: Iterable[Dialogue],
    max_examples: int,
    seed: int,
    cap: Callable[[str], str | None] | None = None,
    max_turns: int = 0,
    style: Callable[[Scenario], Sequence[str]] | None = None,
) -> list[dict[str, list[Message]]]:
    """One prompt/completion example per seeker turn of `MIN_WORDS` or more words that opens a dialogue
    or follows a counselor turn (a seeker's second turn in a row continues the first; it is skipped).

    The prompt shows the last `max_turns` turns before it (0: all) and `style(scenario)`, the real
    seekers' turns the simulator shows as examples (None: none); the completion is the turn with its
    whitespace collapsed, mapped through `cap` (e.g. `learner.sft.cap_reply`; None from it skips the
    turn). When more than `max_examples` remain, a seeded random subset is kept, in data order.
    """
    if max_examples <= 0:
        raise ValueError(f"max_examples must be positive, got {max_examples}")
    examples = []
    for dialogue in dialogues:
        turns = dialogue.turns
        shown = list(style(dialogue.scenario)) if style is not None else []
        for i, turn in enumerate(turns):
            if turn.role != "seeker" or (i and turns[i - 1].role == "seeker"):
                continue
            text = " ".join(turn.text.split())
            if text and cap is not None:
                text = cap(text)
            if not text or len(text.split()) < MIN_WORDS:
                continue
            messages = prompts.seeker_messages(dialogue.scenario, list(turns[:i]), shown, max_turns)
            examples.append({"prompt": messages, "completion": [{"role": "assistant", "content": text}]})
    if len(examples) <= max_examples:
        return examples
    chosen = sorted(random.Random(seed).sample(range(len(examples)), max_examples))
    return [examples[i] for i in chosen]
