"""A running decode batch whose rows join between steps and leave as soon as they are done.

Continuous batching: requests that arrive while a batch is decoding are prefilled on their own and
joined to it at the next step, instead of waiting for the whole batch to finish. The batch keeps, for
all rows together, the KV cache, the attention mask, each row's last position and its next-token
logits. Joining left-pads the shorter side's cache and mask (masked positions are never attended to,
and positions are explicit, so padding changes nothing) and stacks the rows. A finished row leaves
every tensor at once, so the rows still decoding stop paying for it. The batch's cache layers have room
to grow (`kv_room`): a step writes its token in place instead of copying the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from esc.backends.base import Generation, SamplingParams
from esc.backends.kv_room import appendable, give_room, set_states


@dataclass
class Row:
    """One reply being written: its request and what has been sampled so far."""

    key: Any  # the caller's handle for this row
    prompt: list[int]
    params: SamplingParams
    generator: torch.Generator | None
    out_ids: list[int] = field(default_factory=list)  # the reply's tokens
    sampled: list[int] = field(default_factory=list)  # out_ids plus a final end-of-turn token
    sampled_lp: list[float] = field(default_factory=list)
    text: str = ""  # set when a stop string cut the reply
    stop: str | None = None
    finish: str = ""  # "stop" or "length" once done

    def take(self, token: int, logprob: float, eos_ids: set[int], tokenizer: Any) -> None:
        """Append a sampled token and decide whether the reply is finished."""
        self.sampled.append(token)
        self.sampled_lp.append(logprob)
        if token in eos_ids:
            self.finish = "stop"
            return
        self.out_ids.append(token)
        if self.params.stop:
            text = tokenizer.decode(self.out_ids, skip_special_tokens=True)
            hits = sorted((text.index(s), s) for s in self.params.stop if s in text)
            if hits:
                self.text, self.finish, self.stop = text[: hits[0][0]], "stop", hits[0][1]
                return
        if len(self.out_ids) >= self.params.max_new_tokens:
            self.finish = "length"

    def generation(self, tokenizer: Any) -> Generation:
        text = self.text or tokenizer.decode(self.out_ids, skip_special_tokens=True)
        return Generation(
            self.params.prefill + text,
            len(self.prompt),
            len(self.out_ids),
            self.finish or "length",
            self.stop,
            prompt_ids=tuple(self.prompt),
            token_ids=tuple(self.sampled),
            token_logprobs=tuple(self.sampled_lp),
        )


@dataclass
class DecodeBatch:
    rows: list[Row] = field(default_factory=list)
    logits: torch.Tensor | None = None  # [B, 1, V]: each row's next-token logits
    cache: Any = None  # the model's KV cache over the B rows
    mask: torch.Tensor | None = None  # [B, L]: 1 where the cache holds a real token
    positions: torch.Tensor | None = None  # [B, 1]: the position of each row's last token

    def __len__(self) -> int:
        return len(self.rows)

    def can_join(self) -> bool:
        """Whether rows can join now: an empty batch always; a running one if its cache can be padded."""
        return not self.rows or mergeable(self.cache)

    def join(self, rows: list[Row], logits, cache, mask, positions) -> None:
        """Add prefilled rows (their logits, cache, mask and last positions) to the batch."""
        if not self.rows:
            self.rows, self.logits, self.cache = rows, logits, give_room(cache)
            self.mask, self.positions = mask, positions
            return
        width = max(self.mask.shape[1], mask.shape[1])
        ours, theirs = width - self.mask.shape[1], width - mask.shape[1]
        for mine, other in zip(self.cache.layers, cache.layers, strict=True):
            keys = torch.cat([_pad_left(mine.keys, ours, 2), _pad_left(other.keys, theirs, 2)])
            values = torch.cat([_pad_left(mine.values, ours, 2), _pad_left(other.values, theirs, 2)])
            set_states(mine, keys, values)
        self.mask = torch.cat([_pad_left(self.mask, ours, 1), _pad_left(mask, theirs, 1)])
        self.positions = torch.cat([self.positions, positions])
        self.logits = torch.cat([self.logits, logits])
        self.rows = self.rows + rows

    def keep(self, indices: list[int]) -> None:
        """Keep only the rows at `indices` (in order); an empty list empties the batch."""
        if not indices:
            self.rows, self.logits, self.cache, self.mask, self.positions = [], None, None, None, None
            return
        if len(indices) == len(self.rows):
            return
        index = torch.tensor(indices, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.rows = [self.rows[i] for i in indices]
        self.logits, self.mask, self.positions = self.logits[index], self.mask[index], self.positions[index]


def mergeable(cache: Any) -> bool:
    """Caches whose layers each hold plain [B, heads, length, dim] keys and values (no sliding window)."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(appendable(layer) for layer in layers)


def _pad_left(tensor: torch.Tensor, count: int, dim: int) -> torch.Tensor:
    """Zeros prepended along `dim` (1 for a [B, L] mask, 2 for [B, H, L, D] keys and values)."""
    if count == 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - dim - 1) + [count, 0]
    return F.pad(tensor, pad)
