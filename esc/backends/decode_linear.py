"""The linear layers of a decode step (a few rows against a large weight) through a small C kernel.

A decode step multiplies 1 to 16 rows by every weight of the model, so its speed is how fast the weights
stream from memory. torch's product behind `F.linear` (MKL) does not stream them at that speed for
every CPU and row count: on the 2-core AMD EPYC of 2026-12-07, every linear layer of SmolLM2 once took
46-60 ms at 1 row where reading their bytes takes 11-18, and on the Intel machine of 2026-12-06 8 rows
took twice 1 row's time (docs/benchmarks.md, "Decode through our kernel"). `decode_kernel.c` reads each
weight row once for all rows and prefetches the next while it multiplies.

`use_decode_linear(model)` gives every plain `nn.Linear` of the model a DecodeLinear over
its own parameters (no copy; state dict names and the output layer's tie stay). In float32 CPU
inference, KERNEL_ROWS rows take the kernel; more rows (a prompt's prefill) take oneDNN's product,
which beat MKL's behind `F.linear` by 13-20% from 17 to 2,600 rows on the AMD machine, and the output
layer takes it from ONEDNN_HEAD_FROM rows where the kernel does not (it beat MKL's from 4 rows on the
Intel one, "The output layer through oneDNN"); everything else, and every forward pass with gradients
on, is plain `F.linear`. The kernel is compiled once per machine with the
system's C compiler into `$RLFF_CACHE/kernels/` and loaded with ctypes; its OpenMP threads are torch's
own (the same runtime) and so follow `torch.set_num_threads`. Without a compiler, or where the build or
its check fails, the layers keep torch's products and a warning says why, once;
`RLFF_DECODE_KERNEL=0` in the environment turns the kernel off. Each row's result does
not depend on which other rows share its step. The kernel's sums differ from MKL's in the last bits.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from esc.models import cache_root

KERNEL_ROWS = range(1, 17)  # rows (every position of every sequence) that take the kernel
ONEDNN_FROM = KERNEL_ROWS.stop  # rows from which inference takes oneDNN's product (prefill)
ONEDNN_HEAD_FROM = 4  # the same in the output layer, for rows the kernel does not take
SOURCE = Path(__file__).with_name("decode_kernel.c")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _cpu() -> str:
    """What the compiled kernel depends on: built with -march=native, it may not run on another CPU."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(next(x for x in lines if x.startswith(key)) for key in ("model name", "flags"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def compiler() -> str | None:
    """The C compiler that builds the kernel: `$CC`, else cc, gcc or clang on the PATH; None without one."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _compile(compiler: str, target: Path, extra: tuple[str, ...] = ()) -> str | None:
    """Compile the kernel into `target` (with FLAGS and `extra`); None when it worked, else the
    compiler's first error line."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    command = [compiler, *FLAGS, *extra, "-o", str(partial), str(SOURCE)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        return next((x for x in done.stderr.splitlines() if "error" in x), done.stderr.strip()[:200])
    os.replace(partial, target)  # whole or absent, when processes build at once
    return None


def load(target: Path) -> Callable[..., None]:
    """The compiled file's `decode_linear(x, w, y, m, k, n)`, typed for ctypes (three pointers, three
    int64); raises OSError or AttributeError where the file can't be loaded or lacks it."""
    run = ctypes.CDLL(str(target)).decode_linear
    run.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 3
    run.restype = None
    return run


@functools.cache
def library() -> Path | None:
    """The compiled kernels' file (built on first use), or None (warned once) when it can't be had or
    `RLFF_DECODE_KERNEL=0` turns the kernels off (to compare, or to rule them out)."""
    if os.environ.get("RLFF_DECODE_KERNEL", "1") == "0":
        return None
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + _cpu().encode()).hexdigest()[:16]
    target = cache_root() / "kernels" / f"decode_kernel-{key}.so"
    if not target.exists():
        cc = compiler()
        if cc is None:
            log.warning("decode kernel: no C compiler found; decode steps use torch's products")
            return None
        error = _compile(cc, target)
        if error is not None:
            log.warning("decode kernel: %s failed (%s); decode steps use torch's products", cc, error)
            return None
    return target


def load_checked(load: Callable[[Path], T], agrees: Callable[[T], bool], what: str, instead: str) -> T | None:
    """`load(library())` where there is a library, it loads, and the result `agrees` with torch here;
    else None, with a warning that names `what` and what decode steps use `instead`."""
    target = library()
    if target is None:
        return None
    try:
        run = load(target)
    except (OSError, AttributeError) as error:  # a damaged file, a missing OpenMP library
        log.warning("%s: loading %s failed (%s); decode steps use %s", what, target, error, instead)
        return None
    if not agrees(run):
        log.warning("%s: %s disagrees with torch here; decode steps use %s", what, target, instead)
        return None
    return run


@functools.cache
def kernel() -> Callable[..., None] | None:
    """The compiled `decode_linear(x, w, y, m, k, n)`, or None (warned once) where `library()` is None or
    the kernel can't be loaded or gives wrong products."""
    return load_checked(load, _agrees, "decode kernel", "torch's products")


def _agrees(run: Callable[..., None]) -> bool:
    """Whether the kernel matches `F.linear` on an odd shape (a tail past whole vectors, an odd row)."""
    generator = torch.Generator().manual_seed(0)
    x, w = torch.randn(11, 37, generator=generator), torch.randn(67, 37, generator=generator)
    y = torch.empty(11, 67)
    run(x.data_ptr(), w.data_ptr(), y.data_ptr(), 11, 37, 67)
    return torch.allclose(y, F.linear(x, w), atol=1e-4)


def kernel_product(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor | None:
    """`F.linear(x, weight)` for a float32 `x` (any leading dimensions) through the kernel, or None when
    there is none. The output is made in its final shape: a decode step calls this about 200 times, and
    a DecodeLinear call of a tiny layer took 10.7 microseconds with the reshapes around it, 8.1 without
    (2026-12-07)."""
    run = kernel()
    if run is None:
        return None
    x = x.contiguous()
    n, k = weight.shape
    out = torch.empty((*x.shape[:-1], n))
    run(x.data_ptr(), weight.data_ptr(), out.data_ptr(), x.numel() // max(k, 1), k, n)
    return out


class DecodeLinear(torch.nn.Linear):
    """An `nn.Linear` over another's own parameters (the same Parameter objects) whose float32 CPU
    inference takes the kernel for KERNEL_ROWS rows and oneDNN's product from `onednn_from` rows."""

    def __init__(self, layer: torch.nn.Linear, output_layer: bool = False):
        super().__init__(layer.in_features, layer.out_features, bias=False, device="meta")
        self.weight, self.bias = layer.weight, layer.bias
        no_onednn = 1 << 62  # more rows than any input has
        self.onednn_from = (ONEDNN_HEAD_FROM if output_layer else ONEDNN_FROM) if _has_onednn() else no_onednn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if (
            torch.is_grad_enabled()
            or x.dtype is not torch.float32
            or weight.dtype is not torch.float32
            or not weight.is_cpu
            or not weight.is_contiguous()
            or x.shape[-1] != weight.shape[1]  # F.linear's own error, where the kernel would read past x
        ):
            return F.linear(x, weight, bias)
        rows = x.numel() // max(x.shape[-1], 1)
        out = kernel_product(x, weight) if rows in KERNEL_ROWS else None
        if out is not None:
            return out if bias is None else out.add_(bias)
        if rows >= self.onednn_from:
            out = torch.ops.mkldnn._linear_pointwise(x.reshape(rows, -1), weight, bias, "none", [], "")
            return out.view(*x.shape[:-1], self.out_features)
        return F.linear(x, weight, bias)


def _has_onednn() -> bool:
    onednn = getattr(torch.ops, "mkldnn", None)
    return torch.backends.mkldnn.is_available() and hasattr(onednn, "_linear_pointwise")


def use_decode_linear(model: Any) -> int:
    """Give every plain `nn.Linear` of `model` a DecodeLinear in its place (the output layer, found by
    transformers' `get_output_embeddings`, with oneDNN from fewer rows); how many it replaced."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, child_name, DecodeLinear(child, output_layer=child is head))
                replaced += 1
    return replaced
