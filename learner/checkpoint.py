"""Learner checkpoints: everything needed to continue a run as if it had not stopped.

Layout: `<dir>/step-<N>/` with `policy.safetensors` (the policy's weights), `optimizer.pt` (AdamW state,
tensors and numbers only, read back with `torch.load(weights_only=True)`), `rng.safetensors` (torch's RNG
state) and `state.json` (weights version, updates done, the ids of every record consumed so far, and the
wall time). `<dir>/LATEST` names the newest complete one. A checkpoint is written under a temporary
name and renamed, so a crash mid-write leaves the previous one in charge.

When the optimizer state is split across ranks (DeepSpeed ZeRO with several ranks: each rank holds the
AdamW state of its part of the weights), each rank first writes its part with `save_shard`, and the
checkpoint holds `optimizer-r<rank>.pt` in place of `optimizer.pt`; `restore` reads the rank's own.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from esc.weights import load_into, unique_tensors, write_safetensors


@dataclass(frozen=True)
class LearnerState:
    version: int
    updates: int
    consumed: tuple[str, ...]


def _shards(directory: Path, updates: int) -> Path:
    return directory / f".step-{updates}.shards"


def save_shard(directory: str | Path, updates: int, rank: int, optimizer: torch.optim.Optimizer) -> None:
    """This rank's part of a split optimizer state, for checkpoint `step-<updates>` (before `save`)."""
    folder = _shards(Path(directory), updates)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(optimizer.state_dict(), folder / f"optimizer-r{rank}.pt")


def save(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: LearnerState,
    shards: int = 0,
) -> Path:
    """Write checkpoint `step-<updates>` and point LATEST at it; returns its folder. `shards`: how many
    ranks wrote their part of the optimizer state with `save_shard` (0: `optimizer` is whole)."""
    directory = Path(directory)
    final = directory / f"step-{state.updates}"
    partial = directory / f".step-{state.updates}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write_safetensors(unique_tensors(model.state_dict()), partial / "policy.safetensors")
    if shards:
        parts = _shards(directory, state.updates)
        for rank in range(shards):
            os.replace(parts / f"optimizer-r{rank}.pt", partial / f"optimizer-r{rank}.pt")
        parts.rmdir()
    else:
        torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    save_file({"torch": torch.get_rng_state()}, partial / "rng.safetensors")
    body = {
        "version": state.version,
        "updates": state.updates,
        "consumed": list(state.consumed),
        "time": time.time(),
    }
    (partial / "state.json").write_text(json.dumps(body))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    pointer = directory / ".LATEST.partial"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, directory / "LATEST")
    return final


def latest(directory: str | Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    pointer = Path(directory) / "LATEST"
    return Path(directory) / pointer.read_text().strip() if pointer.is_file() else None


def read_state(folder: str | Path) -> LearnerState:
    body = json.loads((Path(folder) / "state.json").read_text())
    return LearnerState(body["version"], body["updates"], tuple(body["consumed"]))


def restore(
    folder: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int = 0
) -> LearnerState:
    """Load a checkpoint into `model` and `optimizer` in place (the optimizer state of `rank` when it is
    split across ranks); returns its state."""
    folder = Path(folder)
    load_into(model, folder / "policy.safetensors")
    own = folder / f"optimizer-r{rank}.pt"
    path = own if own.is_file() else folder / "optimizer.pt"
    optimizer.load_state_dict(torch.load(path, weights_only=True))
    torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch"])
    return read_state(folder)
