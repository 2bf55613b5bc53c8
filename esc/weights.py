"""Published policy weights on a shared filesystem: one safetensors file per version.

Layout: `<dir>/v<N>/model.safetensors` plus `<dir>/LATEST` holding the newest N. A version folder is
written under a temporary name and renamed, and LATEST is replaced atomically, so a reader never sees
a half-written version. Version 0 is the base model and is never published.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load, load_file, save, save_file


def publish(
    state_dict: dict[str, torch.Tensor],
    directory: str | Path,
    version: int,
    extras: Callable[[Path], None] | None = None,
) -> Path:
    """Write `state_dict` as weights `version` (>= 1) and point LATEST at it; returns the file.
    `extras(folder)` may add files (model config, tokenizer) before the version becomes visible, which
    makes `v<N>/` a model folder that `esc.models.load_model` and `rlff evaluate --policy` take."""
    if version < 1:
        raise ValueError("published weight versions start at 1; version 0 is the base model")
    directory = Path(directory)
    final = directory / f"v{version}"
    partial = directory / f".v{version}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    save_file(unique_tensors(state_dict), partial / "model.safetensors")
    if extras is not None:
        extras(partial)
    if final.exists():  # a resumed learner re-publishes the versions after its checkpoint
        shutil.rmtree(final)
    os.replace(partial, final)
    pointer = directory / ".LATEST.partial"
    pointer.write_text(f"{version}\n")
    os.replace(pointer, directory / "LATEST")
    return final / "model.safetensors"


def unique_tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies for safetensors; tied weights (lm_head = embeddings) keep their first name."""
    tensors, seen = {}, set()
    for name, tensor in state_dict.items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        tensors[name] = tensor.detach().contiguous().cpu()
    return tensors


def latest(directory: str | Path) -> tuple[int, Path] | None:
    """(version, file) of the newest published weights, or None when nothing is published."""
    pointer = Path(directory) / "LATEST"
    if not pointer.is_file():
        return None
    version = int(pointer.read_text().strip())
    return version, Path(directory) / f"v{version}" / "model.safetensors"


def to_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    """Weights as safetensors bytes, for publishing through Ray's object store (`learner.publish`)."""
    return save(unique_tensors(state_dict))


def load_into(model: torch.nn.Module, source: str | Path | bytes) -> None:
    """Copy published weights (a safetensors file, or its bytes) into `model` in place (same
    architecture; tied weights may be absent)."""
    path = "<bytes>" if isinstance(source, bytes) else source
    tensors = load(source) if isinstance(source, bytes) else load_file(str(source))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = (
        {k for k in missing if "lm_head" in k}
        if getattr(model.config, "tie_word_embeddings", False)
        else set()
    )
    if unexpected or set(missing) - tied:
        raise ValueError(
            f"weights at {path} do not fit the model (missing {sorted(missing)[:3]},"
            f" unexpected {unexpected[:3]})"
        )
