"""The crisis probe: a linear classifier on the embedded model's hidden states, second to the lexicon.

The crisis lexicon (`esc/safety.py`) recognises the phrasings someone wrote down; on messages written
after it, it caught under half of the crises (docs/safety.md). People in crisis often say it
indirectly ("I've been reading about how much of my insulin it would take"). The probe reads meaning
instead of phrases: the embedded SmolLM2's hidden state after layer `layer`, averaged over the
message's tokens, then a logistic regression trained on labelled messages written for this project
(`esc/data/crisis_train.jsonl`; `rlff crisis-probe train` rebuilds it). It flags a message when
p(crisis) >= `threshold`, a value chosen at training time to keep false alarms on ordinary distress
low in cross-validation.

Only the first `layer` transformer layers run (the rest are dropped on load), so one check costs a
forward pass through part of a 135M model: milliseconds per message. Weights: safetensors, never
pickle. Plain torch; it knows nothing of Ray or serving.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from esc.models import EMBEDDED, in_passing_thread, load_model
from esc.safety import normalise

PROBE_FILE = Path(__file__).parent / "data" / "crisis_probe.safetensors"
TRAIN_FILE = Path(__file__).parent / "data" / "crisis_train.jsonl"
BATCH = 32
MAX_TOKENS = 96  # a message is cut from the left to its last 96 tokens
MEMO_SIZE = 4096  # messages whose probability is kept; the memo starts over beyond it


def load_backbone(layer: int, spec: str = EMBEDDED) -> tuple[Any, Any]:
    """(the model's first `layer` transformer layers with the final norm removed, tokenizer): its
    `last_hidden_state` is the full model's hidden state after layer `layer`."""
    import torch

    lm, tokenizer = load_model(spec)
    base = lm.model
    if not 0 < layer <= len(base.layers):
        raise ValueError(f"the probe's layer must be from 1 to {len(base.layers)}, got {layer}")
    base.layers = base.layers[:layer]
    base.norm = torch.nn.Identity()
    base.config.num_hidden_layers = layer
    tokenizer.truncation_side = "left"
    return base.eval(), tokenizer


def features(backbone: Any, tokenizer: Any, texts: Sequence[str]) -> Any:
    """[N, H] float32: the mean hidden state over each normalised message's tokens."""
    import torch

    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), BATCH):
            chunk = [normalise(t) for t in texts[start : start + BATCH]]
            batch = tokenizer(
                chunk, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
            )
            hidden = backbone(**batch, use_cache=False).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            rows.append((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0))
    return torch.cat(rows) if rows else torch.zeros(0, backbone.config.hidden_size)


class ProbeFileError(ValueError):
    """A probe file that is not one (not safetensors, or without a probe's tensors and metadata)."""


class CrisisProbe:
    """Callable: messages -> p(crisis) per message. Loads the probe file and the backbone it needs."""

    def __init__(self, path: str | Path = PROBE_FILE, spec: str = EMBEDDED):
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `rlff crisis-probe train` to build it")
        try:
            tensors = load_file(path)
            with safe_open(path, framework="pt") as handle:
                meta = handle.metadata() or {}
            self.layer = int(meta["layer"])
            self.threshold = float(meta["threshold"])
            self.mean, self.std = tensors["mean"], tensors["std"]
            self.weight, self.bias = tensors["weight"], tensors["bias"]
        except Exception as error:  # not safetensors, or not a probe's tensors and metadata
            raise ProbeFileError(f"{path} is not a crisis probe file ({type(error).__name__})") from None
        self.backbone, self.tokenizer = load_backbone(self.layer, spec)
        self._memo: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> list[float]:
        """p(crisis) of each message (memoised by text: a conversation's window is re-read every turn)."""
        import torch

        known = {t: self._memo[t] for t in texts if t in self._memo}
        new = [t for t in dict.fromkeys(texts) if t not in known]
        if new:
            x = (features(self.backbone, self.tokenizer, new) - self.mean) / self.std
            known.update(zip(new, torch.sigmoid(x @ self.weight + self.bias).tolist(), strict=True))
            if len(self._memo) + len(new) > MEMO_SIZE:
                self._memo.clear()
            self._memo.update((t, known[t]) for t in new)
        return [known[t] for t in texts]

    def flags(self, texts: Sequence[str]) -> list[bool]:
        with self._lock:
            return [p >= self.threshold for p in self(texts)]

    async def any_crisis(self, messages: Sequence[str]) -> bool:
        """Whether the probe flags any of `messages`, off the event loop (a forward pass is CPU work),
        on a thread of its own (`in_passing_thread`: the counselor's decode thread stays fast)."""
        return any(await asyncio.to_thread(in_passing_thread, self.flags, list(messages)))


def load_labelled(path: str | Path) -> list[dict[str, str]]:
    """Rows {"text", "category"} of a JSON-lines file; 'ordinary' is the only non-crisis category."""
    rows = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{number}: not a JSON object") from None
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("text"), str)
            or not isinstance(row.get("category"), str)
        ):
            raise ValueError(f"{path}:{number}: each line needs a string 'text' and 'category'")
        rows.append(row)
    return rows
