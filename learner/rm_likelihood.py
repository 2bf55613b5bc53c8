"""The reward model's likelihood gain: how much more likely a reply is after the conversation than alone.

For each (context, reply): log p(reply | the context's last `turns` turns as 'Seeker: ...' /
'Counselor: ...' lines, then 'Counselor:') minus log p(reply | 'Counselor:') under a causal LM, over
the reply's first REPLY_TOKENS tokens, summed and per token: the reply's pointwise mutual information
with the conversation. Each distinct prompt is read once and its replies scored after its KV cache
(`CausalLM.score`). Used as two scalar features by `learner.reward_model`; no Ray, no training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from esc.backends.hf_decode import CausalLM
from esc.schemas import Turn

PROMPT_TOKENS = 160  # the dialogue prompt keeps its last 160 tokens
REPLY_TOKENS = 32  # a reply's first 32 tokens are read (ESConv replies: median 15 words)
PROMPT_BATCH, TAIL_BATCH = 8, 64  # prompts, and replies after the baseline prompt, per scoring pass
BASELINE_PROMPT = "Counselor:"  # what the reply's likelihood without the conversation is conditioned on


def dialogue_prompt(context: Sequence[Turn], turns: int) -> str:
    """The last `turns` turns as 'Seeker: ...' / 'Counselor: ...' lines, ending with 'Counselor:'."""
    lines = [f"{'Seeker' if t.role == 'seeker' else 'Counselor'}: {t.text.strip()}" for t in context[-turns:]]
    return "\n".join([*lines, BASELINE_PROMPT])


class LikelihoodGain:
    """Callable: (contexts, replies) -> [(sum, mean) gain per reply]; all zeros when `turns` is 0."""

    def __init__(self, lm: Any, tokenizer: Any, turns: int) -> None:
        self.lm, self.tokenizer, self.turns = lm, tokenizer, turns
        self._scorer = CausalLM(lm, tokenizer)

    def _tokens(self, text: str, keep_end: bool) -> list[int]:
        """Token ids of `text`: its last PROMPT_TOKENS (`keep_end`, a prompt) or first REPLY_TOKENS (a
        reply, which starts with a space as it would after 'Counselor:')."""
        if keep_end:
            return self.tokenizer(text, add_special_tokens=False).input_ids[-PROMPT_TOKENS:]
        ids = self.tokenizer(" " + text.strip(), add_special_tokens=False).input_ids if text.strip() else []
        return ids[:REPLY_TOKENS]

    def _log_likelihoods(self, rows: dict[str, list[tuple[int, list[int]]]], out: list[float]) -> None:
        """out[i] = log p(tail | prompt) summed over the tail's tokens, for every (i, tail) of every prompt
        in `rows`; each prompt is read once and its KV cache shared by its tails (`CausalLM.score`)."""
        prompts = sorted(rows)
        for start in range(0, len(prompts), PROMPT_BATCH):
            chunk = prompts[start : start + PROMPT_BATCH]
            sums = self._scorer.score(
                [self._tokens(p, keep_end=True) for p in chunk], [[t for _, t in rows[p]] for p in chunk]
            )
            for prompt, row in zip(chunk, sums, strict=True):
                for (i, _), value in zip(rows[prompt], row, strict=True):
                    out[i] = value

    def __call__(
        self, contexts: Sequence[Sequence[Turn]], replies: Sequence[str]
    ) -> list[tuple[float, float]]:
        """(sum, mean) over each reply's tokens of log p(token | the dialogue's last turns) minus log p(token
        | BASELINE_PROMPT): how much more likely the conversation makes the reply (pointwise mutual
        information). (0, 0) for a blank reply or with `turns` 0."""
        if not self.turns:
            return [(0.0, 0.0)] * len(replies)
        tails = {r: self._tokens(r, keep_end=False) for r in set(replies)}
        distinct = [r for r in sorted(tails) if tails[r]]
        given, alone = [0.0] * len(replies), [0.0] * len(distinct)
        by_prompt: dict[str, list[tuple[int, list[int]]]] = {}
        for i, (context, reply) in enumerate(zip(contexts, replies, strict=True)):
            if tails[reply]:
                prompt = dialogue_prompt(context, self.turns)
                by_prompt.setdefault(prompt, []).append((i, tails[reply]))
        self.lm.eval()
        self._log_likelihoods(by_prompt, given)
        for start in range(0, len(distinct), TAIL_BATCH):
            self._log_likelihoods(
                {
                    BASELINE_PROMPT: [
                        (start + j, tails[r]) for j, r in enumerate(distinct[start : start + TAIL_BATCH])
                    ]
                },
                alone,
            )
        baseline = dict(zip(distinct, alone, strict=True))
        return [
            (given[i] - baseline[r], (given[i] - baseline[r]) / len(tails[r])) if tails[r] else (0.0, 0.0)
            for i, r in enumerate(replies)
        ]
