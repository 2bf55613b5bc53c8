"""The policy side of GRPO: replay-store groups -> token rows -> log-probs under the current weights.

A candidate travels with the exact tokens the policy saw and sampled (`prompt_ids`, `token_ids`) and the
behaviour log-prob of each sampled token (`token_logprobs`, under `policy_version`), so nothing is
re-tokenised and stale samples can be importance-corrected. Rows are LEFT-padded so every row's
completion ends in the last column and one `logits_to_keep` covers every completion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from esc.backends.base import Generation
from esc.backends.shared_start import can_share, common_start, logits_after_start
from esc.parsing import parse_counselor
from esc.schemas import Candidate, CandidateGroup, Scenario, Turn
from learner.losses import token_logprobs
from learner.strategy import unwrap


@dataclass
class TokenRows:
    """N sequences, W columns (left-padded), completions in the last C columns.

    ids, attention [N, W] long; positions [N, W] long; completion_mask [N, C] float (1 = a sampled
    token); behaviour_logp [N, C] float (0 where masked); group [N] long (which group each row is in).
    """

    ids: torch.Tensor
    attention: torch.Tensor
    positions: torch.Tensor
    completion_mask: torch.Tensor
    behaviour_logp: torch.Tensor
    group: torch.Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]

    def select(self, rows: slice) -> TokenRows:
        return TokenRows(*(t[rows] for t in self._fields()))

    def _fields(self) -> tuple[torch.Tensor, ...]:
        return (
            self.ids,
            self.attention,
            self.positions,
            self.completion_mask,
            self.behaviour_logp,
            self.group,
        )


def candidate(generation: Generation, text: str | None = None, version: int = 0) -> Candidate:
    """A store candidate from a decoded `Generation` of weights `version`: its raw text, the answer
    `text` (default: the raw text) and the token ids and behaviour log-probs the learner trains on.
    For tests and benchmarks that drive a backend directly; rollout workers build theirs from the
    counselor's output."""
    return Candidate(
        text=generation.text if text is None else text,
        raw=generation.text,
        well_formed=parse_counselor(generation.text).well_formed,
        policy_version=version,
        prompt_ids=generation.prompt_ids,
        token_ids=generation.token_ids,
        token_logprobs=generation.token_logprobs,
    )


def candidate_group(
    gid: str, seeker_text: str, candidates: list[Candidate], version: int = 0
) -> CandidateGroup:
    """A group of `candidates` answering one seeker turn, with a stand-in scenario: for tests and
    benchmarks that drive a backend directly."""
    scenario = Scenario(id=gid, emotion_type="unknown", problem_type="unknown", situation=seeker_text)
    turns = (Turn(role="seeker", text=seeker_text),)
    return CandidateGroup(
        id=gid,
        scenario=scenario,
        context=turns,
        candidates=tuple(candidates),
        policy_version=version,
        created_at=0.0,
    )


def trainable(candidate: Candidate) -> bool:
    """A candidate the policy can learn from: it has sampled tokens and their behaviour log-probs."""
    return bool(candidate.token_ids) and len(candidate.token_logprobs) == len(candidate.token_ids)


def build_rows(groups: list[list[Candidate]], max_tokens: int, pad_id: int) -> TokenRows:
    """Token rows for every candidate of every group (each candidate must be `trainable`).

    A row longer than `max_tokens` loses prompt tokens from the left (the completion is kept whole,
    or its own first tokens are cut when it alone exceeds the limit).
    """
    rows, completions, behaviour, group_of = [], [], [], []
    for g, candidates in enumerate(groups):
        for c in candidates:
            completion, logp = list(c.token_ids), list(c.token_logprobs)
            if len(completion) > max_tokens - 1:
                completion, logp = completion[-(max_tokens - 1) :], logp[-(max_tokens - 1) :]
            prompt = list(c.prompt_ids)[-(max_tokens - len(completion)) :]
            rows.append(prompt + completion)
            completions.append(len(completion))
            behaviour.append(logp)
            group_of.append(g)
    width, cols = max(map(len, rows)), max(completions)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    completion_mask = torch.zeros((len(rows), cols))
    behaviour_logp = torch.zeros((len(rows), cols))
    for i, (row, n) in enumerate(zip(rows, completions)):
        ids[i, width - len(row) :] = torch.tensor(row)
        attention[i, width - len(row) :] = 1
        completion_mask[i, cols - n :] = 1.0
        behaviour_logp[i, cols - n :] = torch.tensor(behaviour[i])
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return TokenRows(ids, attention, positions, completion_mask, behaviour_logp, torch.tensor(group_of))


def completion_logprobs(model: torch.nn.Module, rows: TokenRows, share_prefix: bool = True) -> torch.Tensor:
    """log p(token) of every completion column under `model`: [N, C] (garbage where the mask is 0).

    Only the last C + 1 positions' logits are computed (`logits_to_keep`), which keeps the [N, C, V]
    logits small however long the prompts are. With `share_prefix`, the rows' common start (a GRPO
    group's whole prompt, or at least the system prompt) is run once, at batch 1, and its KV cache is
    repeated over the rows, which read only their own tokens: the same log-probs and gradients for
    about 1/G of the prompt's cost. Not with gradient checkpointing, which drops the KV cache.
    """
    device = next(model.parameters()).device
    cols = rows.completion_mask.shape[1]
    plain = unwrap(model)
    shared = _shared_prefix(rows) if share_prefix and can_share(plain) else 0
    if shared < MIN_SHARED:
        out = model(
            input_ids=rows.ids.to(device),
            attention_mask=rows.attention.to(device),
            position_ids=rows.positions.to(device),
            logits_to_keep=cols + 1,
            use_cache=False,
        )
        logits = out.logits[:, :-1]  # position t predicts token t + 1: the last C + 1 logits cover C tokens
        return token_logprobs(logits, rows.ids[:, -cols:].to(device))
    start = rows.ids[0][rows.attention[0].bool()][:shared]
    own = rows.attention.sum(1) - shared  # each row's tokens after the shared part
    width = max(int(own.max()), cols + 1)  # a micro-batch's completions may all be shorter than C
    ids = rows.ids[:, -width:]  # rows are left-padded: each row's own tokens are its last columns
    attention = (torch.arange(width) >= width - own.view(-1, 1)).to(rows.attention.dtype)
    logits = logits_after_start(plain, start, ids, attention, cols + 1, run=model)
    return token_logprobs(logits[:, :-1], rows.ids[:, -cols:].to(device))


MIN_SHARED = 16  # below this many shared prompt tokens, one plain pass is as cheap


def _shared_prefix(rows: TokenRows) -> int:
    """How many leading tokens every row has in common, leaving each row its last prompt token (whose
    logits predict its first completion token)."""
    real = [r[a.bool()].tolist() for r, a in zip(rows.ids, rows.attention)]
    prompt_lengths = rows.attention.sum(1) - rows.completion_mask.sum(1).long()
    return max(0, min(common_start(real), int(prompt_lengths.min()) - 1))
