"""The future-oriented reward model: a linear head on a transformer backbone's last-token state.

Owns the backbone (the base model under a causal LM from `esc.models.load_model`), the head (C class
logits for the classification formulation, one score for ranking), training (`fit`), scoring
(`score`) and its files (`save` / `load`). It reads `RMExample`s and `rm_text` strings from
`learner.rm_data` and its losses from `learner.losses`; it does not know where examples come from
(surveys or simulated futures), nothing of Ray, the replay store or the policy.

Text -> features: `rm_text(context, reply)` is tokenized, truncated FROM THE LEFT to `max_tokens`
(the reply and the turns just before it matter most), right-padded; the feature is the backbone's
final hidden state at the last real token (a causal model's only position that has read everything),
followed by a one-hot of the seeker's starting intensity (unknown, 1..5): the state the reply is judged
in. Within a GRPO group every candidate shares that state, so it moves the level of the scores, never
which reply of a group is preferred.

Training. `train='head'`: the backbone stays frozen; features are computed once (inference mode) and
cached, standardised with the training mean/std, and only the head learns (AdamW, seconds).
`train='full'`: the backbone is fine-tuned too, features recomputed per step without standardisation
(slow on CPU; the same `lr` is used for every weight, so set a small one, e.g. 1e-5).
Classification: weighted cross-entropy with inverse-frequency class weights (N / (C * count_c)), so
the majority class cannot win by being common; prediction = argmax; score = expected reward over
`cfg.values()`, in [min(values), max(values)] (default [-1, 1]). Ranking: Bradley-Terry on the pairs
of `rm_data.ranking_pairs` (within context groups; across groups by label with data-grounded labels);
score = the head's raw output (unbounded, only differences mean something).

Files: `head.safetensors` (head weights, feature mean/std) and `reward_model.json` (config, seed,
metadata); with `train='full'` also `backbone/` via save_pretrained. No pickle, no torch.save.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from esc.config import RewardModelConfig
from esc.models import load_model
from esc.schemas import Turn
from learner.losses import (
    classification_metrics,
    expected_reward,
    rm_classification_loss,
    rm_pairwise_loss,
)
from learner.rm_data import RMExample, ranking_pairs, rm_text

FEATURE_BATCH = 16  # texts per backbone forward pass when extracting features (memory/speed only)
WEIGHT_DECAY = 0.01  # AdamW's decoupled L2 on the head (and backbone with train='full')
STATE_DIMS = 6  # one-hot starting intensity: unknown, 1, 2, 3, 4, 5
META_FILE, HEAD_FILE, BACKBONE_DIR = "reward_model.json", "head.safetensors", "backbone"


class RewardModel:
    """(context, reply) -> reward. Build with `from_config` or `load`; train with `fit`."""

    def __init__(
        self, cfg: RewardModelConfig, lm: Any, tokenizer: Any, seed: int, device: str = "cpu"
    ) -> None:
        self.cfg, self.lm, self.tokenizer, self.seed, self.device = cfg, lm, tokenizer, seed, device
        self.backbone = lm.base_model  # the transformer under the LM head (e.g. LlamaModel)
        self.tokenizer.truncation_side = "left"
        self.tokenizer.padding_side = "right"
        hidden = lm.config.hidden_size + STATE_DIMS
        self.num_outputs = len(cfg.values()) if cfg.formulation == "classification" else 1
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.head = nn.Linear(hidden, self.num_outputs).to(device)
        self.feature_mean = torch.zeros(hidden, device=device)
        self.feature_std = torch.ones(hidden, device=device)

    @classmethod
    def from_config(cls, cfg: RewardModelConfig, seed: int = 0, device: str = "cpu") -> RewardModel:
        """A fresh reward model: `cfg.backbone` loaded (seeded where random) and an untrained head."""
        lm, tokenizer = load_model(cfg.backbone, device=device, seed=seed)
        return cls(cfg, lm, tokenizer, seed, device)

    # ---- features -------------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> Any:
        """Token batch of `texts`: each cut from the LEFT to `cfg.max_tokens` (the end kept), right-padded."""
        return self.tokenizer(
            list(texts), truncation=True, max_length=self.cfg.max_tokens, padding=True, return_tensors="pt"
        ).to(self.device)

    def _features(self, texts: Sequence[str]) -> Tensor:
        """[N, H] last-real-token hidden states; gradients flow when called outside inference mode."""
        batch = self.encode(texts)
        hidden = self.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        last = batch["attention_mask"].sum(dim=1) - 1
        states = hidden.last_hidden_state[torch.arange(len(texts), device=self.device), last]
        return states.float()

    def _state(self, intensities: Sequence[int | None]) -> Tensor:
        """[N, STATE_DIMS] one-hot starting intensity (column 0: unknown or out of range)."""
        index = [i if isinstance(i, int) and 1 <= i <= 5 else 0 for i in intensities]
        return nn.functional.one_hot(torch.tensor(index), STATE_DIMS).float().to(self.device)

    def _example_features(self, examples: Sequence[RMExample]) -> Tensor:
        """[N, H + STATE_DIMS] cached text features plus the state of each example."""
        texts = [rm_text(e.context, e.reply) for e in examples]
        return torch.cat([self._cached_features(texts), self._state([e.intensity for e in examples])], dim=1)

    def _cached_features(self, texts: Sequence[str]) -> Tensor:
        """[N, H] features of many texts, batched by length (less padding), in input order."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.lm.config.hidden_size)
        self.backbone.eval()
        with torch.inference_mode():
            for start in range(0, len(order), FEATURE_BATCH):
                chunk = order[start : start + FEATURE_BATCH]
                out[chunk] = self._features([texts[i] for i in chunk]).cpu()
        return out.clone().to(self.device)  # a normal tensor: inference tensors cannot enter autograd

    def _outputs(self, features: Tensor) -> Tensor:
        """Head outputs [N, C] (classification) or [N] (ranking) of raw features."""
        out = self.head((features - self.feature_mean) / self.feature_std)
        return out if self.num_outputs > 1 else out.squeeze(-1)

    # ---- training ---------------------------------------------------------------------------------

    def fit(self, train: Sequence[RMExample], valid: Sequence[RMExample]) -> dict[str, Any]:
        """Train on `train`, report held-out metrics on `valid` (see `evaluate`) plus training stats.

        Returns {'formulation', 'n_train', 'train_loss_first', 'train_loss_last', 'train_loss_curve'
        (at most 10 epoch means), 'feature_seconds', 'fit_seconds', 'valid': evaluate(valid),
        'train_eval': evaluate on the training examples} (metric keys in `evaluate`).
        """
        started = time.perf_counter()
        texts = [rm_text(e.context, e.reply) for e in train]
        classify = self.cfg.formulation == "classification"
        if classify:
            items = [(i,) for i, e in enumerate(train) if e.label is not None]
            labels = torch.tensor([e.label if e.label is not None else -1 for e in train], device=self.device)
            counts = torch.bincount(labels[labels >= 0], minlength=self.num_outputs).float()
            class_weights = torch.where(counts > 0, counts.sum() / (self.num_outputs * counts), counts)
        else:
            items = ranking_pairs(train, across_groups=self.cfg.labels == "data", seed=self.seed)
        if not items:
            raise ValueError("no training items: examples need labels (classification) or pairs (ranking)")
        cached = None
        if self.cfg.train == "head":
            cached = self._example_features(train)
            self.feature_mean = cached.mean(dim=0)
            self.feature_std = cached.std(dim=0).clamp(min=1e-4)
        feature_seconds = time.perf_counter() - started
        params = list(self.head.parameters())
        if self.cfg.train == "full":
            params += list(self.backbone.parameters())
            self.backbone.train()
        optimizer = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=WEIGHT_DECAY)
        generator = torch.Generator().manual_seed(self.seed)
        curve = []
        for _ in range(self.cfg.epochs):
            losses = []
            order = torch.randperm(len(items), generator=generator).tolist()
            for start in range(0, len(items), self.cfg.batch_size):
                batch = [items[k] for k in order[start : start + self.cfg.batch_size]]
                used = sorted({i for item in batch for i in item})
                where = {i: k for k, i in enumerate(used)}
                if cached is not None:
                    feats = cached[used]
                else:
                    state = self._state([train[i].intensity for i in used])
                    feats = torch.cat([self._features([texts[i] for i in used]), state], dim=1)
                out = self._outputs(feats)
                if classify:
                    rows = torch.tensor([where[i] for (i,) in batch], device=self.device)
                    loss = rm_classification_loss(out[rows], labels[torch.tensor(used)][rows], class_weights)
                else:
                    chosen = torch.tensor([where[i] for i, _ in batch], device=self.device)
                    rejected = torch.tensor([where[j] for _, j in batch], device=self.device)
                    loss = rm_pairwise_loss(out[chosen], out[rejected])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            curve.append(sum(losses) / len(losses))
        self.backbone.eval()
        step = max(1, len(curve) // 10)
        return {
            "formulation": self.cfg.formulation,
            "n_train": len(train),
            "train_loss_first": curve[0],
            "train_loss_last": curve[-1],
            "train_loss_curve": [round(x, 4) for x in curve[::step][:10]],
            "feature_seconds": feature_seconds,
            "fit_seconds": time.perf_counter() - started,
            "valid": self.evaluate(valid, features=None) if valid else {},
            "train_eval": self.evaluate(train, features=cached),
        }

    # ---- inference --------------------------------------------------------------------------------

    def evaluate(self, examples: Sequence[RMExample], features: Tensor | None = None) -> dict[str, Any]:
        """Held-out metrics. Classification: accuracy, macro_f1, majority_baseline, per_class_f1, n.
        Ranking: pairwise_accuracy (share of pairs scored preferred > dispreferred), n_pairs."""
        if features is None:
            features = self._example_features(examples)
        with torch.inference_mode():
            out = self._outputs(features)
        if self.cfg.formulation == "classification":
            keep = [i for i, e in enumerate(examples) if e.label is not None]
            predicted = out.argmax(dim=-1).tolist()
            metrics = classification_metrics(
                [predicted[i] for i in keep], [examples[i].label for i in keep], self.num_outputs
            )
            return {**metrics, "n": len(keep)}
        pairs = ranking_pairs(examples, across_groups=self.cfg.labels == "data", seed=self.seed)
        right = sum(bool(out[i] > out[j]) for i, j in pairs)
        return {"pairwise_accuracy": right / len(pairs) if pairs else None, "n_pairs": len(pairs)}

    def score(
        self,
        contexts: Sequence[tuple[Turn, ...]],
        replies: Sequence[str],
        intensities: Sequence[int | None] | None = None,
    ) -> list[float]:
        """Reward of each (context, reply) given the seeker's starting intensity (None: unknown):
        expected class value (classification) or head output (ranking)."""
        if len(contexts) != len(replies):
            raise ValueError(f"score needs one reply per context, got {len(contexts)} and {len(replies)}")
        if not replies:
            return []
        examples = [
            RMExample(c, r, None, None, "", i)
            for c, r, i in zip(contexts, replies, intensities or [None] * len(replies), strict=True)
        ]
        features = self._example_features(examples)
        with torch.inference_mode():
            out = self._outputs(features)
            if self.cfg.formulation == "classification":
                out = expected_reward(out, self.cfg.values())
        return [float(x) for x in out.cpu()]

    # ---- files ------------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write head.safetensors, reward_model.json and (train='full') backbone/ into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            "weight": self.head.weight,
            "bias": self.head.bias,
            "feature_mean": self.feature_mean,
            "feature_std": self.feature_std,
        }
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / HEAD_FILE))
        fine_tuned = self.cfg.train == "full"
        if fine_tuned:
            self.lm.save_pretrained(folder / BACKBONE_DIR, safe_serialization=True)
            self.tokenizer.save_pretrained(folder / BACKBONE_DIR)
        meta = {
            "config": self.cfg.model_dump(),
            "seed": self.seed,
            "num_outputs": self.num_outputs,
            "hidden_size": self.lm.config.hidden_size,
            "pooling": "last_token",
            "backbone": BACKBONE_DIR if fine_tuned else self.cfg.backbone,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> RewardModel:
        """A reward model written by `save`; the backbone comes from `backbone/` or the config's spec."""
        folder = Path(folder)
        if not (folder / META_FILE).is_file():
            raise FileNotFoundError(f"{folder} holds no {META_FILE}; train one with `rlff train --stage rm`")
        meta = json.loads((folder / META_FILE).read_text())
        cfg = RewardModelConfig.model_validate(meta["config"])
        spec = str(folder / BACKBONE_DIR) if (folder / BACKBONE_DIR).is_dir() else cfg.backbone
        lm, tokenizer = load_model(spec, device=device, seed=meta["seed"])
        model = cls(cfg, lm, tokenizer, meta["seed"], device)
        tensors = load_file(str(folder / HEAD_FILE), device=device)
        with torch.no_grad():
            model.head.weight.copy_(tensors["weight"])
            model.head.bias.copy_(tensors["bias"])
        model.feature_mean, model.feature_std = tensors["feature_mean"], tensors["feature_std"]
        return model
