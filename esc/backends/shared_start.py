"""Rows that begin with the same tokens, run with that start computed once: the hf backend's KV-cache
sharing as one small interface for callers outside the backend (the learner's log-prob pass).

`common_start` says how long the shared start is; `logits_after_start` runs the start once at batch 1,
repeats its KV cache over the rows, and runs each row's own tokens against it. What transformers
calls the cache argument, and how it names the activation-checkpointing flag, stays in this module.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch


def common_start(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every sequence has in common (0 for no sequences)."""
    if not sequences:
        return 0
    return len(os.path.commonprefix([list(s) for s in sequences]))


def cache_keyword(model: Any) -> str:
    """The forward() keyword for a KV cache: transformers renamed `past_key_values` to `cache` (5.x)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def can_share(model: torch.nn.Module) -> bool:
    """Whether a KV cache can be shared through `model`: not with activation (gradient) checkpointing,
    which recomputes activations and drops the cache. transformers renamed the flag in 5.x."""
    flag = getattr(model, "is_activation_checkpointing", None)
    if flag is None:
        with warnings.catch_warnings():  # the old name warns of its removal in transformers 6
            warnings.simplefilter("ignore", FutureWarning)
            flag = getattr(model, "is_gradient_checkpointing", False)
    return not flag


def logits_after_start(
    model: torch.nn.Module,
    start: torch.Tensor,
    ids: torch.Tensor,
    attention: torch.Tensor,
    logits_to_keep: int,
    run: torch.nn.Module | None = None,
) -> torch.Tensor:
    """The last `logits_to_keep` logits of N rows that each continue `start` ([S] token ids).

    `ids`, `attention` [N, W]: each row's own tokens after the start, LEFT-padded (attention 0 on
    padding). The start runs once on `model` (the plain module, batch 1); the rows run on `run`
    (default `model`; e.g. a DDP wrapper, so its gradient hooks fire once per weight) and read the
    start's cache: the same logits and gradients as running every full row, for one start's cost.
    """
    device = next(model.parameters()).device
    shared, rows = start.numel(), ids.shape[0]
    keyword = cache_keyword(model)
    head = model(
        input_ids=start.view(1, -1).to(device),
        position_ids=torch.arange(shared, device=device).view(1, -1),
        use_cache=True,
        logits_to_keep=1,
    )
    cache = getattr(head, keyword)
    cache.batch_repeat_interleave(rows)
    ones = torch.ones((rows, shared), dtype=attention.dtype)
    positions = (attention.cumsum(-1) - 1).clamp(min=0) + shared
    out = (run or model)(
        input_ids=ids.to(device),
        attention_mask=torch.cat([ones, attention], 1).to(device),
        position_ids=positions.to(device),
        logits_to_keep=logits_to_keep,
        use_cache=True,
        **{keyword: cache},
    )
    return out.logits
