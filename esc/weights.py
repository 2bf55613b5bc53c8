"""Published policy weights on a shared filesystem: one safetensors file per version.

Layout: `<dir>/v<N>/model.safetensors` plus `<dir>/LATEST` holding the newest N. A version folder is
written under a temporary name and renamed, and LATEST is replaced atomically, so a reader never sees
a half-written version. Version 0 is the base model and is never published.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load, save


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
    write_safetensors(unique_tensors(state_dict), partial / "model.safetensors")
    if extras is not None:
        extras(partial)
    if final.exists():  # a resumed learner re-publishes the versions after its checkpoint
        shutil.rmtree(final)
    os.replace(partial, final)
    pointer = directory / ".LATEST.partial"
    pointer.write_text(f"{version}\n")
    os.replace(pointer, directory / "LATEST")
    return final / "model.safetensors"


SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}  # fmt: skip


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write `tensors` (contiguous, CPU) in the safetensors format one tensor at a time: an 8-byte
    little-endian header length, a JSON header of dtypes, shapes and byte offsets, then the raw data.
    `safetensors.torch.save_file` first turns every tensor into bytes, a second copy of the model."""
    header, offset = {}, 0
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for tensor in tensors.values():
            if tensor.numel():
                out.write(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)


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


def load_into(model: torch.nn.Module, source: str | Path | bytes, share_pages: bool = False) -> None:
    """Copy published weights (a safetensors file, or its bytes) into `model` in place (same
    architecture; tied weights may be absent). A file is read one tensor at a time, so loading needs
    one tensor's worth of extra memory, not a second copy of the model.

    With `share_pages`, CPU tensors of the file's dtype are not copied: the parameters take the file's
    memory-mapped pages, which every process serving the same version shares (the rollout counselor and
    the endpoint's replicas). The mapping is private: a later in-place write copies the page it
    touches, never the file."""
    path = "<bytes>" if isinstance(source, bytes) else source
    targets = model.state_dict()  # shares storage with the parameters
    with ExitStack() as stack:
        if isinstance(source, bytes):
            tensors = load(source)
            get, shapes = tensors.__getitem__, {k: tuple(t.shape) for k, t in tensors.items()}
        else:
            file = stack.enter_context(safe_open(str(source), framework="pt"))
            get, shapes = file.get_tensor, {k: tuple(file.get_slice(k).get_shape()) for k in file.keys()}  # noqa: SIM118
        names = set(shapes)
        missing, unexpected = set(targets) - names, sorted(names - set(targets))
        tied = (
            {k for k in missing if "lm_head" in k}
            if getattr(model.config, "tie_word_embeddings", False)
            else set()
        )
        if unexpected or missing - tied:
            raise ValueError(
                f"weights at {path} do not fit the model (missing {sorted(missing - tied)[:3]},"
                f" unexpected {unexpected[:3]})"
            )
        wrong = [k for k in sorted(names) if shapes[k] != tuple(targets[k].shape)]
        if wrong:  # checked before anything is copied, so a bad file leaves the model as it was
            raise ValueError(
                f"weights at {path} do not fit the model ({wrong[0]} is {shapes[wrong[0]]},"
                f" the model's {tuple(targets[wrong[0]].shape)})"
            )
        with torch.no_grad():
            for name in names:
                tensor, target = get(name), targets[name]
                if share_pages and target.device.type == "cpu" and tensor.dtype == target.dtype:
                    _slot(model, name).data = tensor
                else:
                    target.copy_(tensor)


def _slot(model: torch.nn.Module, name: str) -> torch.Tensor:
    """The parameter or buffer object a state_dict key names."""
    owner, _, attribute = name.rpartition(".")
    return getattr(model.get_submodule(owner), attribute)
