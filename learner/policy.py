"""The policy side of GRPO: replay-store groups -> token rows -> log-probs under the current weights.

A candidate travels with the exact tokens the policy saw and sampled (`prompt_ids`, `token_ids`) and the
behaviour log-prob of each sampled token (`token_logprobs`, under `policy_version`), so nothing is
re-tokenised and stale samples can be importance-corrected. Rows are LEFT-padded so every row's
completion ends in the last column and one `logits_to_keep` covers every completion.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from esc.backends.hf_decode import cache_keyword
from esc.backends.prefix_cache import shared_length
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


def candidate(generation: Any, text: str | None = None) -> dict[str, Any]:
    """A store candidate from a decoded `Generation`: its raw text, the answer `text` (default: the raw
    text) and the token ids and behaviour log-probs the learner trains on."""
    return {
        "text": generation.text if text is None else text,
        "raw": generation.text,
        "prompt_ids": list(generation.prompt_ids),
        "token_ids": list(generation.token_ids),
        "token_logprobs": list(generation.token_logprobs),
    }


def trainable(candidate: dict[str, Any]) -> bool:
    """A candidate the policy can learn from: it has sampled tokens and their behaviour log-probs."""
    tokens = candidate.get("token_ids") or ()
    return bool(tokens) and len(candidate.get("token_logprobs") or ()) == len(tokens)


def build_rows(groups: list[list[dict[str, Any]]], max_tokens: int, pad_id: int) -> TokenRows:
    """Token rows for every candidate of every group (each candidate must be `trainable`).

    A row longer than `max_tokens` loses prompt tokens from the left (the completion is kept whole,
    or its own first tokens are cut when it alone exceeds the limit).
    """
    rows, completions, behaviour, group_of = [], [], [], []
    for g, candidates in enumerate(groups):
        for c in candidates:
            completion, logp = list(c["token_ids"]), list(c["token_logprobs"])
            if len(completion) > max_tokens - 1:
                completion, logp = completion[-(max_tokens - 1) :], logp[-(max_tokens - 1) :]
            prompt = list(c["prompt_ids"])[-(max_tokens - len(completion)) :]
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
    shared = _shared_prefix(rows) if share_prefix and not _checkpointing(plain) else 0
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
    first = rows.ids[0][rows.attention[0].bool()][:shared].view(1, -1).to(device)
    cache_kw = cache_keyword(plain)
    # the plain module, so a DDP wrapper sees one forward (its gradient hooks still fire once per weight)
    head = plain(
        input_ids=first,
        position_ids=torch.arange(shared, device=device).view(1, -1),
        use_cache=True,
        logits_to_keep=1,
    )
    cache = getattr(head, cache_kw)
    cache.batch_repeat_interleave(len(rows))
    own = rows.attention.sum(1) - shared  # each row's tokens after the shared part
    width = max(int(own.max()), cols + 1)  # a micro-batch's completions may all be shorter than C
    ids = rows.ids[:, -width:]  # rows are left-padded: each row's own tokens are its last columns
    attention = (torch.arange(width) >= width - own.view(-1, 1)).to(rows.attention.dtype)
    ones = torch.ones((len(rows), shared), dtype=attention.dtype)
    positions = (attention.cumsum(-1) - 1).clamp(min=0) + shared
    out = model(
        input_ids=ids.to(device),
        attention_mask=torch.cat([ones, attention], 1).to(device),
        position_ids=positions.to(device),
        logits_to_keep=cols + 1,
        use_cache=True,
        **{cache_kw: cache},
    )
    return token_logprobs(out.logits[:, :-1], rows.ids[:, -cols:].to(device))


MIN_SHARED = 16  # below this many shared prompt tokens, one plain pass is as cheap


def _checkpointing(model: torch.nn.Module) -> bool:
    """Whether activation (gradient) checkpointing is on; transformers renamed the flag in 5.x."""
    flag = getattr(model, "is_activation_checkpointing", None)
    if flag is None:
        with warnings.catch_warnings():  # the old name warns of its removal in transformers 6
            warnings.simplefilter("ignore", FutureWarning)
            flag = getattr(model, "is_gradient_checkpointing", False)
    return bool(flag)


def _shared_prefix(rows: TokenRows) -> int:
    """How many leading tokens every row has in common, leaving each row its last prompt token (whose
    logits predict its first completion token)."""
    real = [r[a.bool()].tolist() for r, a in zip(rows.ids, rows.attention)]
    prompt_lengths = rows.attention.sum(1) - rows.completion_mask.sum(1).long()
    shared = min(shared_length(real[0], r) for r in real)
    return max(0, min(shared, int(prompt_lengths.min()) - 1))
