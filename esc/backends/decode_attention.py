"""A decode step's attention (one new token a row over the KV cache) through a small C kernel.

With 16 rows over a 166-token prompt, torch's SDPA took 13.6 ms of a 68 ms decode step of SmolLM2 on the
2-core AMD EPYC of 2026-12-07: 460 us a layer for 2.8 MB of keys and values. Its CPU kernel is made for
blocks of queries; a decode step has one. `decode_attention` in `decode_kernel.c` (the library that
`decode_linear.library()` builds) takes each head of each row on its own: one pass over the keys for the
scores, a vector e^x for the softmax, one pass over the values, 2.7x SDPA's speed in isolation
(docs/benchmarks.md).

`use_decode_attention(model)` registers it with transformers as the attention implementation "rlff_decode"
(masks made as for "sdpa") and switches a model that uses "sdpa" to it. Its forward takes the kernel for
float32 CPU inference with one query position and a boolean mask or none; everything else (a prompt's
prefill, scoring, gradients on, a GPU, sliding windows) goes to transformers' own SDPA forward unchanged.
Each row's result does not depend on which rows share its step; it differs from SDPA's in the last bits.
"""

from __future__ import annotations

import ctypes
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

from esc.backends.decode_linear import load_checked

NAME = "rlff_decode"  # the attention implementation's name in transformers' registries
UNSUPPORTED = ("sliding_window", "softcap", "s_aux", "position_bias")  # keyword arguments the kernel lacks


def load(target: Path) -> Callable[..., int]:
    """The compiled file's `decode_attention`, typed for ctypes (five pointers, twelve int64, a float)."""
    run = ctypes.CDLL(str(target)).decode_attention
    run.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 12 + [ctypes.c_float]
    run.restype = ctypes.c_int
    return run


@functools.cache
def kernel() -> Callable[..., int] | None:
    """The compiled `decode_attention`, or None (warned once) where there is no library, it can't be
    loaded, or it disagrees with SDPA here."""
    return load_checked(load, _agrees, "decode attention", "SDPA")


def attend(run, query, key, value, mask, scale: float) -> torch.Tensor | None:
    """[rows, 1, heads, dim] attention of `query` [rows, heads, 1, dim] over `key` and `value` [rows,
    kv_heads, length, dim] (any strides but a contiguous last one), `mask` [rows or 1, 1, 1, length]
    (True: attend) or None; None where the kernel declines the shapes."""
    rows, heads, _, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    query = query.contiguous()
    key = key if key.stride(-1) == 1 else key.contiguous()
    value = value if value.stride(-1) == 1 else value.contiguous()
    if mask is not None:
        mask = mask.reshape(mask.shape[0], length)
        mask = mask if mask.stride(-1) == 1 else mask.contiguous()
    out = torch.empty((rows, 1, heads, dim))
    failed = run(
        query.data_ptr(),
        key.data_ptr(),
        value.data_ptr(),
        None if mask is None else mask.data_ptr(),
        out.data_ptr(),
        rows,
        heads,
        kv_heads,
        length,
        dim,
        *key.stride()[:3],
        *value.stride()[:3],
        0 if mask is None or mask.shape[0] == 1 else mask.stride(0),
        scale,
    )
    return None if failed else out


def _agrees(run) -> bool:
    """Whether the kernel matches SDPA on odd shapes: grouped heads, cache views with room, padding."""
    generator = torch.Generator().manual_seed(0)
    key = torch.randn(3, 2, 21, 32, generator=generator)[:, :, :19]
    value = torch.randn(3, 2, 21, 32, generator=generator)[:, :, :19]
    query = torch.randn(3, 6, 1, 32, generator=generator)
    mask = torch.ones(3, 1, 1, 19, dtype=torch.bool)
    mask[1, ..., :5] = False
    got = attend(run, query, key, value, mask, 0.3)
    want = F.scaled_dot_product_attention(query, key, value, mask, scale=0.3, enable_gqa=True)
    return got is not None and torch.allclose(got, want.transpose(1, 2), atol=1e-5)


def _fits(query, key, value, mask, dropout: float, kwargs: dict) -> bool:
    return (
        query.shape[2] == 1
        and not torch.is_grad_enabled()
        and dropout == 0.0
        and all(t.dtype is torch.float32 and t.is_cpu for t in (query, key, value))
        and key.shape == value.shape
        and key.shape[0] == query.shape[0]  # the kernel reads row r's keys for query row r
        and key.shape[-1] == query.shape[-1]
        and query.shape[1] % key.shape[1] == 0
        and (mask is None or (mask.dtype is torch.bool and mask.shape[1:3] == (1, 1)))
        and (mask is None or (mask.shape[0] in (1, query.shape[0]) and mask.shape[-1] == key.shape[2]))
        and all(kwargs.get(name) is None for name in UNSUPPORTED)
    )


def decode_attention_forward(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: the kernel where it fits, else SDPA's forward."""
    run = kernel() if _fits(query, key, value, attention_mask, dropout, kwargs) else None
    if run is not None:  # checked after the shapes, so a GPU never builds the CPU kernel
        scale = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
        out = attend(run, query, key, value, attention_mask, scale)
        if out is not None:
            return out, None
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def use_decode_attention(model: Any) -> bool:
    """Switch `model` from "sdpa" to the kernel's implementation (registered on first use); whether it
    uses it now. Other implementations (eager, flash) are left as they are."""
    AttentionInterface.register(NAME, decode_attention_forward)  # again is harmless: the same entry
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    if model.config._attn_implementation == "sdpa":
        model.set_attn_implementation(NAME)
    return model.config._attn_implementation == NAME
