"""A running decode batch whose rows join between steps and leave as soon as they are done.

Continuous batching: requests that arrive while a batch is decoding are prefilled on their own and
joined to it at the next step, instead of waiting for the whole batch to finish. The batch keeps, for
all rows together, the KV cache, the attention mask and each row's last position; each row keeps the
token the next step reads (its prompt's last token, then the one it sampled last). Joining left-pads
the shorter side's cache and mask (masked positions are never attended to, and positions are explicit,
so padding changes nothing) and stacks the rows. A finished row leaves every tensor at once, so the
rows still decoding stop paying for it, unless rows may join before the next step: then its tensor row
stays as a free slot, and a joining row whose prompt fits the batch's width is written into it in place
(the other rows' caches are copied neither at the leave nor at the join). The batch's cache layers have
room to grow (`kv_room`): a step writes its token in place instead of copying the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from esc.backends.base import Generation, SamplingParams, first_stop
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
        if self.params.stop or self.params.late_stop:
            text = tokenizer.decode(self.out_ids, skip_special_tokens=True)
            hit = first_stop(text, self.params)
            if hit is not None:
                self.text, self.finish, self.stop = text[: hit[0]], "stop", hit[1]
                return
        if len(self.out_ids) >= self.params.max_new_tokens:
            self.finish = "length"

    def generation(self, tokenizer: Any) -> Generation:
        cut = self.stop is not None  # a stop string ended it: `text` is what came before (maybe "")
        text = self.text if cut else tokenizer.decode(self.out_ids, skip_special_tokens=True)
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
    """The running rows and their tensors. `slots[i]` is the row of tensor row i, or None once that row
    has left with its slot kept for the next row to join (`leave(..., keep_slots=True)`)."""

    slots: list[Row | None] = field(default_factory=list)
    cache: Any = None  # the model's KV cache over the B slots
    mask: torch.Tensor | None = None  # [B, L]: 1 where the cache holds a real token
    positions: torch.Tensor | None = None  # [B, 1]: the position of each slot's last token

    @property
    def rows(self) -> list[Row]:
        """The rows still decoding, in slot order."""
        return [row for row in self.slots if row is not None]

    def __len__(self) -> int:
        return sum(row is not None for row in self.slots)

    def can_join(self) -> bool:
        """Whether rows can join now: an empty batch always; a running one if its cache can be padded."""
        return not self.slots or mergeable(self.cache)

    def join(self, rows: list[Row], cache, mask, positions) -> None:
        """Add prefilled rows (their cache, mask and last positions) to the batch: into the
        slots of rows that left, in place, while their prompts fit the batch's width; else stacked."""
        if not self.slots:
            self.slots, self.cache = list(rows), give_room(cache)
            self.mask, self.positions = mask, positions
            return
        free = [i for i, row in enumerate(self.slots) if row is None]
        if free and mask.shape[1] <= self.mask.shape[1]:
            n = min(len(free), len(rows))
            self._fill(free[:n], rows[:n], cache, mask[:n], positions[:n])
            if n == len(rows):
                return
            cache.batch_select_indices(torch.arange(n, len(rows), device=mask.device))
            rows, mask, positions = rows[n:], mask[n:], positions[n:]
        self.compact()
        width = max(self.mask.shape[1], mask.shape[1])
        ours, theirs = width - self.mask.shape[1], width - mask.shape[1]
        for mine, other in zip(self.cache.layers, cache.layers, strict=True):
            keys = torch.cat([_pad_left(mine.keys, ours, 2), _pad_left(other.keys, theirs, 2)])
            values = torch.cat([_pad_left(mine.values, ours, 2), _pad_left(other.values, theirs, 2)])
            set_states(mine, keys, values)
        self.mask = torch.cat([_pad_left(self.mask, ours, 1), _pad_left(mask, theirs, 1)])
        self.positions = torch.cat([self.positions, positions])
        self.slots = self.slots + list(rows)

    def _fill(self, slots: list[int], rows: list[Row], cache, mask, positions) -> None:
        """Write the first len(rows) rows of a prefilled cache into free `slots`: their keys and values
        at the right end of the batch's width (the slot's older positions are masked out)."""
        index = torch.tensor(slots, device=self.mask.device)
        n, start = len(rows), self.mask.shape[1] - mask.shape[1]
        for mine, other in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys[index, :, start:] = other.keys[:n]
            mine.values[index, :, start:] = other.values[:n]
        self.mask[index] = _pad_left(mask, start, 1)
        self.positions[index] = positions
        for slot, row in zip(slots, rows, strict=True):
            self.slots[slot] = row

    def leave(self, done: list[Row], keep_slots: bool = False) -> None:
        """Take finished rows out of the batch. `keep_slots`: their tensor rows stay, as free slots for
        rows that may join before the next step (cheaper than copying every other row's cache now and
        again at the join); the next step drops those still free. Else they leave every tensor now."""
        gone = {id(row) for row in done}
        if keep_slots and len(gone) < len(self):
            self.slots = [None if row is not None and id(row) in gone else row for row in self.slots]
        else:
            self._select([i for i in self._live() if id(self.slots[i]) not in gone])

    def compact(self) -> None:
        """Drop the free slots (no row joined into them)."""
        self._select(self._live())

    def keep(self, indices: list[int]) -> None:
        """Keep only the rows at `indices` of `rows` (in order); an empty list empties the batch."""
        live = self._live()
        self._select([live[i] for i in indices])

    def _live(self) -> list[int]:
        """The slots that hold a row."""
        return [i for i, row in enumerate(self.slots) if row is not None]

    def _select(self, slots: list[int]) -> None:
        """Keep only the tensor rows at `slots`, dropping every other slot."""
        if not slots:
            self.slots, self.cache, self.mask, self.positions = [], None, None, None
            return
        if len(slots) == len(self.slots):
            return
        index = torch.tensor(slots, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.slots = [self.slots[i] for i in slots]
        self.mask, self.positions = self.mask[index], self.positions[index]


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
