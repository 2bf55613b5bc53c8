"""What the learner's ranks decide together. With several Ray Train workers (one process group, gloo
on CPU), every collective call (DDP's gradient all-reduce in `backward`, a checkpoint's gather) must
be made by every rank the same number of times, or the ranks wait for each other forever. So a
decision that one rank could take alone (stop, skip a step, how many micro-batches to run) is taken
from all ranks' values here, and every rank acts on the same answer. With one process (no process
group) each function returns its own value.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> int:
    """How many learner ranks there are (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _reduce(value: float, op: dist.ReduceOp) -> float:
    if world() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor, op=op)
    return float(tensor.item())


def largest(value: float) -> float:
    """The largest of every rank's `value`."""
    return _reduce(float(value), dist.ReduceOp.MAX)


def total(value: float) -> float:
    """The sum of every rank's `value`."""
    return _reduce(float(value), dist.ReduceOp.SUM)


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one."""
    return largest(1.0 if flag else 0.0) > 0


def same_everywhere(values: list[float]) -> bool:
    """Whether every rank holds exactly these values (e.g. a fingerprint of its weights)."""
    if world() == 1:
        return True
    gathered: list[list[float] | None] = [None] * world()
    dist.all_gather_object(gathered, list(values))
    return all(part == gathered[0] for part in gathered)


def fingerprint(model: torch.nn.Module) -> list[float]:
    """A cheap summary of a model's trainable weights: the float64 sum and sum of squares of each."""
    out = []
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                d = p.detach().double()
                out += [float(d.sum()), float((d * d).sum())]
    return out
