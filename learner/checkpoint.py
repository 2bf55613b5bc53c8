"""Learner checkpoints: everything needed to continue a run as if it had not stopped.

Layout: `<dir>/step-<N>/` with `policy.safetensors` (the policy's weights), `optimizer.pt` (AdamW state,
tensors and numbers only, read back with `torch.load(weights_only=True)`), `rng.safetensors` (torch's RNG
state) and `state.json` (weights version, updates done, the ids of every record consumed so far, and the
wall time). `<dir>/LATEST` names the newest complete one. A checkpoint is written under a temporary
name and renamed, so a crash mid-write leaves the previous one in charge.
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


def save(
    directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: LearnerState
) -> Path:
    """Write checkpoint `step-<updates>` and point LATEST at it; returns its folder."""
    directory = Path(directory)
    final = directory / f"step-{state.updates}"
    partial = directory / f".step-{state.updates}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write_safetensors(unique_tensors(model.state_dict()), partial / "policy.safetensors")
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


def restore(folder: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> LearnerState:
    """Load a checkpoint into `model` and `optimizer` in place; returns its state."""
    folder = Path(folder)
    load_into(model, folder / "policy.safetensors")
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch"])
    return read_state(folder)
