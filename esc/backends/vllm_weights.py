"""Published weights for the vLLM backend: reading a safetensors file (or its bytes) tensor by tensor
and by its header alone, and `WeightLoader`, the method vLLM mixes into its worker
(`worker_extension_cls`) to reload the served model in place. Imports no vLLM at module level: the
worker imports this module by name.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def tensors(source: str | bytes) -> Iterator[tuple[str, Any]]:
    """(name, tensor) of a safetensors file or its bytes; a file is read one tensor at a time."""
    if isinstance(source, bytes):
        from safetensors.torch import load

        yield from load(source).items()
        return
    from safetensors import safe_open

    with safe_open(source, framework="pt") as file:
        for name in file.keys():  # noqa: SIM118 (a safe_open handle is not iterable)
            yield name, file.get_tensor(name)


def shapes(source: str | Path | bytes) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header (8-byte length, JSON), tensors left unread."""
    if isinstance(source, bytes):
        size = struct.unpack("<Q", source[:8])[0]
        header = json.loads(source[8 : 8 + size])
    else:
        with open(source, "rb") as file:
            header = json.loads(file.read(struct.unpack("<Q", file.read(8))[0]))
    return {name: tuple(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}


class WeightLoader:
    """Mixed into vLLM's worker class (`worker_extension_cls`), so it runs where the model lives: in
    this process or in vLLM's worker process. `self` is the vLLM worker."""

    def esc_load_weights(self, source: str | bytes) -> None:
        """Reload the model in place from a safetensors file (or its bytes) keyed by the HF model's
        parameter names.

        A tied `lm_head` is absent from such files. vLLM's reload then keeps the head's old processed
        copy (on the CPU build, the GEMM's prepacked weight; the log says `ParallelLMHead: Failed to load
        weights`) although it shares the embedding's storage, so such a head is processed again here."""
        from vllm.model_executor.layers.vocab_parallel_embedding import (
            ParallelLMHead,
            VocabParallelEmbedding,
        )

        self.reload_weights(weights_iterator=tensors(source))
        modules = list(self.model_runner.get_model().modules())
        embeddings = {m.weight.data_ptr() for m in modules if type(m) is VocabParallelEmbedding}
        for module in modules:
            if isinstance(module, ParallelLMHead) and module.weight.data_ptr() in embeddings:
                module.quant_method.process_weights_after_loading(module)
