"""The future-oriented reward model: a small bounded head on frozen features of a context and a reply.

Owns the frozen backbone (the base model under a causal LM from `esc.models.load_model`), the feature
map, the head, training (`fit`), held-out metrics (`evaluate`), scoring (`score`) and its files
(`save` / `load`). It reads `RMExample`s from `learner.rm_data` and its pairwise loss from
`learner.losses`; it does not know where examples come from, nothing of Ray, the store or the policy.

Features of (context, reply, intensity). The context is represented by the seeker's last turn
(`rm_data.last_seeker_text`), what a reply answers, by the content words of its last `CONTEXT_TURNS`
turns, and by its last `cfg.likelihood_turns` turns as a dialogue prompt. Each text is embedded ONCE,
separately (a reply shared by many contexts costs one forward pass): the mean over its tokens of the
backbone's final hidden state (after its first `layers` layers when set; the final norm still applies),
the text cut from the LEFT to `max_tokens`; a blank text embeds as zeros. Embeddings are standardised with
the training texts' mean/std; the reply's is projected on their first `text_dims` principal components,
giving r: with 500 training contexts, the full 576 dimensions let the head memorise its training labels
(correlation 0.91 on them, 0.02 held out). The feature vector is [r, scalars, state]: r says what the
reply is like (the products c * r of the seeker's and the reply's components, once features too, cost 0.02
of held-out real-vs-other ranking with the likelihood gain and gained none without it). The scalars are
the cosine of the seeker's and the reply's full standardised embeddings; the share of the reply's content
words (4+ letters) found in the seeker's turn, of the seeker's found in the reply and of the reply's found
in the last `CONTEXT_TURNS` turns; the reply's words up to `LENGTH_CAP` / LENGTH_CAP (length counts up to
the median ESConv counselor reply, never beyond: with log(1 + words) the policy learned to pad its
answers); a blank-reply flag; the VADER affect of the seeker's turn and of the reply; the dialogue stage
(context length in turns / 20); whether the reply greets, says goodbye or asks a question, each also times
the stage (a greeting fits the start of a conversation, not its middle); whether the reply repeats the
seeker's turn verbatim; and, when `cfg.likelihood_turns` > 0 (zeros otherwise), the likelihood gain
(`learner.rm_likelihood`): the reply's pointwise mutual information with the conversation under the
backbone's own LM, log p(reply | the last `likelihood_turns` turns as 'Seeker: ...' / 'Counselor: ...'
lines, then 'Counselor:') minus log p(reply | 'Counselor:'), over the reply's first
`rm_likelihood.REPLY_TOKENS` tokens, per token and summed; the sum enters as sign * log(1 + |sum|),
because a reply that repeats the seeker's words gains about 55 nats (a real reply about 10) and would
otherwise set the feature's whole scale. The embedding says what a reply is like; the likelihood gain says
whether it answers THIS conversation (docs/learner.md has the held-out rankings). The state is a one-hot
of the seeker's starting intensity (unknown, 1..5). The context-only parts set the level of a group's
scores, never which of its replies wins. `learner.rm_scalars` computes the scalars.

Head and training. Features are standardised with the training mean/std (clipped to +-6); the head
is a linear layer (`hidden=0`) or one GELU hidden layer. Its raw output s is trained full-batch with
AdamW on Bradley-Terry loss over `rm_data.ranking_pairs` (the real reply above each negative of its
context) plus `label_weight` * mean squared error between tanh(s) and the label of each labelled
reply. `score` returns tanh(s), in [-1, 1]: usable as a GRPO reward as it is.

With `cfg.bf16` every backbone pass (embeddings, likelihood gain) runs under bf16 autocast, in `fit`,
`evaluate` and `score` alike, so replies are scored as the head was trained. The decoder layers' linear
weights are then kept in bf16 (`linears_in_bf16`): autocast would cast them to bf16 on every pass
anyway, so the features are the same bit for bit, from 0.2 GB less memory (SmolLM2-135M) and ~7%
faster; embeddings and norms stay float32.
Files: `head.safetensors` (head weights, the standardisation tensors and the projection) and
`reward_model.json` (config, seed, metadata). No pickle, no torch.save. The backbone is reloaded from
the config's spec.
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
from esc.future_labels import affect
from esc.models import bf16_autocast, load_model, use_bf16
from esc.schemas import Turn
from esc.stats import correlation_ci, mean_ci
from learner.losses import rm_pairwise_loss
from learner.rm_data import NEGATIVE_KINDS, RMExample, last_seeker_text, ranking_pairs
from learner.rm_likelihood import LikelihoodGain
from learner.rm_scalars import SCALARS, scalars

EMBED_BATCH = 16  # texts per backbone forward pass (memory/speed only)
FEATURE_CLIP = 6.0  # standardised features are clipped to +-6: a text unlike any in training cannot blow up
STATE_DIMS = 6  # one-hot starting intensity: unknown, 1, 2, 3, 4, 5
META_FILE, HEAD_FILE = "reward_model.json", "head.safetensors"


def linears_in_bf16(lm: nn.Module) -> None:
    """Store every nn.Linear weight of `lm`'s decoder (`lm.base_model`) in bf16, in place; biases, norms,
    embeddings and the tied LM head stay float32. Only for a model run under bf16 autocast, which casts a
    float32 weight to these same values each call. The float32 tensors left are copied to memory of their
    own: the model file is one memory map, and while any tensor still lies on it, the float32 pages the
    conversion read stay mapped and counted (the reward model then held 0.21 GB more than in float32).
    A model converted already (an online refresh wraps the same `lm` again) is left as it is."""
    linears = [m for m in lm.base_model.modules() if isinstance(m, nn.Linear)]
    if all(m.weight.dtype == torch.bfloat16 for m in linears):
        return
    with torch.no_grad():
        for layer in linears:
            layer.weight.data = layer.weight.data.to(torch.bfloat16)
        for tensor in [*lm.parameters(), *lm.buffers()]:
            if tensor.dtype != torch.bfloat16:
                tensor.data = tensor.data.clone()


class RewardModel:
    """(context, reply, intensity) -> reward in (-1, 1). Build: `from_config` or `load`; train: `fit`."""

    def __init__(
        self, cfg: RewardModelConfig, lm: Any, tokenizer: Any, seed: int, device: str = "cpu"
    ) -> None:
        self.cfg, self.lm, self.tokenizer, self.seed, self.device = cfg, lm, tokenizer, seed, device
        self.backbone = lm.base_model  # the transformer under the LM head (e.g. LlamaModel)
        if cfg.layers and cfg.layers < len(self.backbone.layers):
            self.backbone.layers = self.backbone.layers[: cfg.layers]  # a shallower encoder, same weights
        self.bf16 = use_bf16(cfg.bf16, device)  # reward_model.bf16 ("auto": where this device has bf16)
        if self.bf16:
            linears_in_bf16(lm)
        self.tokenizer.truncation_side = "left"
        self.tokenizer.padding_side = "right"
        self.likelihood_gains = LikelihoodGain(lm, tokenizer, cfg.likelihood_turns)  # zeros when 0
        self.memo: dict[str, Tensor] | None = None  # a dict: `embed` keeps every text's embedding there
        size = lm.config.hidden_size
        dims = cfg.text_dims + SCALARS + STATE_DIMS
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            if cfg.hidden:
                self.head = nn.Sequential(nn.Linear(dims, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, 1))
            else:
                self.head = nn.Sequential(nn.Linear(dims, 1))
        self.head.to(device)
        self.text_mean, self.text_std = torch.zeros(size, device=device), torch.ones(size, device=device)
        self.projection = torch.eye(size, cfg.text_dims, device=device)  # set by `fit`: principal axes
        self.feature_mean, self.feature_std = (
            torch.zeros(dims, device=device),
            torch.ones(dims, device=device),
        )

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

    def embed(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Raw embedding [H] of each distinct text: mean final hidden state over its tokens (blank: zeros)."""
        memo = self.memo if self.memo is not None else {}
        distinct = sorted({t for t in texts if t.strip() and t not in memo}, key=lambda t: (len(t), t))
        out = {t: torch.zeros(self.lm.config.hidden_size, device=self.device) for t in texts if not t.strip()}
        out.update((t, memo[t]) for t in texts if t in memo)
        self.backbone.eval()
        with torch.inference_mode(), bf16_autocast(self.device, self.bf16):
            for start in range(0, len(distinct), EMBED_BATCH):
                chunk = distinct[start : start + EMBED_BATCH]
                batch = self.encode(chunk)
                hidden = self.backbone(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
                out.update({t: v.clone() for t, v in zip(chunk, pooled, strict=True)})
        if self.memo is not None:
            self.memo.update((t, out[t]) for t in distinct)
        return out

    def features(
        self,
        contexts: Sequence[Sequence[Turn]],
        replies: Sequence[str],
        intensities: Sequence[int | None],
        table: dict[str, Tensor] | None = None,
    ) -> Tensor:
        """[N, text_dims + SCALARS + STATE_DIMS] raw (unstandardised) features, as in the module doc.

        `table`: raw embeddings (`embed`) of every seeker turn and reply involved, when already computed."""
        seekers = [last_seeker_text(c) for c in contexts]
        if table is None:
            table = self.embed(list(seekers) + list(replies))
        rows = []
        with bf16_autocast(self.device, self.bf16):
            gains = self.likelihood_gains(contexts, replies)
        for context, seeker, reply, intensity, gain in zip(
            contexts, seekers, replies, intensities, gains, strict=True
        ):
            c = (table[seeker] - self.text_mean) / self.text_std if seeker.strip() else table[seeker]
            r = (table[reply] - self.text_mean) / self.text_std if reply.strip() else table[reply]
            cosine = float(nn.functional.cosine_similarity(c, r, dim=0))
            state = [0.0] * STATE_DIMS
            state[intensity if isinstance(intensity, int) and 1 <= intensity <= 5 else 0] = 1.0
            extra = torch.tensor(scalars(context, seeker, reply, cosine, gain) + state, device=self.device)
            rows.append(torch.cat([r @ self.projection, extra]))
        return torch.stack(rows)

    def _example_features(self, examples: Sequence[RMExample]) -> Tensor:
        return self.features(
            [e.context for e in examples], [e.reply for e in examples], [e.intensity for e in examples]
        )

    def _raw(self, features: Tensor) -> Tensor:
        """[N] raw head outputs s of unstandardised features."""
        standard = ((features - self.feature_mean) / self.feature_std).clamp(-FEATURE_CLIP, FEATURE_CLIP)
        return self.head(standard).squeeze(-1)

    # ---- training ---------------------------------------------------------------------------------

    def fit(self, train: Sequence[RMExample], valid: Sequence[RMExample]) -> dict[str, Any]:
        """Train the head on `train`; report `evaluate(valid)` and `evaluate(train)` plus training stats.

        Returns {'n_train', 'n_pairs', 'n_labelled', 'train_loss_first', 'train_loss_last',
        'train_loss_curve' (at most 10 points), 'feature_seconds', 'fit_seconds', 'valid', 'train_eval'}.
        """
        started = time.perf_counter()
        pairs = ranking_pairs(train)
        labelled = [i for i, e in enumerate(train) if e.reward is not None]
        if not pairs and not labelled:
            raise ValueError("no training items: examples need ranking pairs or labels")
        texts = {last_seeker_text(e.context) for e in train} | {e.reply for e in train}
        table = self.embed(sorted(texts))  # each distinct text once: the backbone dominates the cost
        raw = torch.stack([v for t, v in table.items() if t.strip()])
        self.text_mean, self.text_std = raw.mean(dim=0), raw.std(dim=0).clamp(min=1e-4)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            standard = (raw - self.text_mean) / self.text_std
            _, _, axes = torch.pca_lowrank(standard, q=min(self.cfg.text_dims, *standard.shape), center=False)
        self.projection = torch.zeros_like(self.projection)
        self.projection[:, : axes.shape[1]] = axes
        cached = self.features(
            [e.context for e in train], [e.reply for e in train], [e.intensity for e in train], table
        )
        self.feature_mean, self.feature_std = cached.mean(dim=0), cached.std(dim=0).clamp(min=1e-4)
        feature_seconds = time.perf_counter() - started
        chosen = torch.tensor([i for i, _ in pairs], dtype=torch.long, device=self.device)
        rejected = torch.tensor([j for _, j in pairs], dtype=torch.long, device=self.device)
        rows = torch.tensor(labelled, dtype=torch.long, device=self.device)
        targets = torch.tensor([train[i].reward for i in labelled], device=self.device)
        pair_w = torch.tensor([train[i].weight for i, _ in pairs], device=self.device)
        label_w = torch.tensor([train[i].weight for i in labelled], device=self.device)
        optimizer = torch.optim.AdamW(
            self.head.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        curve = []
        self.head.train()
        for _ in range(self.cfg.epochs):
            s = self._raw(cached)
            loss = rm_pairwise_loss(s[chosen], s[rejected], pair_w) if pairs else s.new_zeros(())
            if labelled:
                squared = (torch.tanh(s[rows]) - targets) ** 2
                loss = loss + self.cfg.label_weight * (squared * label_w).sum() / label_w.sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            curve.append(loss.item())
        self.head.eval()
        step = max(1, len(curve) // 10)
        return {
            "n_train": len(train),
            "n_pairs": len(pairs),
            "n_labelled": len(labelled),
            "train_loss_first": curve[0],
            "train_loss_last": curve[-1],
            "train_loss_curve": [round(x, 4) for x in curve[::step][:10]],
            "feature_seconds": feature_seconds,
            "fit_seconds": time.perf_counter() - started,
            "valid": self.evaluate(valid) if valid else {},
            "train_eval": self.evaluate(train, scores=self._scores(cached)),
        }

    # ---- inference --------------------------------------------------------------------------------

    def _scores(self, features: Tensor) -> list[float]:
        with torch.inference_mode():
            return [float(x) for x in torch.tanh(self._raw(features)).cpu()]

    def evaluate(
        self, examples: Sequence[RMExample], scores: Sequence[float] | None = None
    ) -> dict[str, Any]:
        """Held-out metrics, each an `Estimate` dict (value, lo, hi: bootstrap 95% CI, n) or None.

        `rank_real_vs_<kind>` for each of NEGATIVE_KINDS: share of (real, <kind>) pairs of one context
        where the real reply scores higher (ties count half), averaged per context, CI over contexts, n =
        contexts, plus `n_pairs`. `pairwise_accuracy`: the same over all `ranking_pairs` (no CI).
        `label_correlation`: Pearson correlation of scores with labels over the labelled examples;
        `label_vs_seeker_affect`: the same for minus the affect of the seeker turn each reply answers, a
        context-only reference (constant within a group, so it ranks no reply).
        """
        if scores is None:
            scores = self._scores(self._example_features(examples))
        metrics: dict[str, Any] = {}
        for kind in NEGATIVE_KINDS:
            per_context: dict[str, list[float]] = {}
            for i, j in ranking_pairs(examples):
                if examples[i].kind == "real" and examples[j].kind == kind:
                    win = 1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0
                    per_context.setdefault(examples[i].group, []).append(win)
            shares = [sum(v) / len(v) for v in per_context.values()]
            metrics[f"rank_real_vs_{kind}"] = (
                {**mean_ci(shares, seed=self.seed).as_dict(), "n_pairs": sum(map(len, per_context.values()))}
                if shares
                else None
            )
        pairs = ranking_pairs(examples)
        right = sum(scores[i] > scores[j] for i, j in pairs)
        metrics["pairwise_accuracy"] = right / len(pairs) if pairs else None
        metrics["n_pairs"] = len(pairs)
        labelled = [i for i, e in enumerate(examples) if e.reward is not None]
        labels = [examples[i].reward for i in labelled]
        enough, mine = len(labelled) >= 3, [scores[i] for i in labelled]
        metrics["label_correlation"] = (
            correlation_ci(mine, labels, seed=self.seed).as_dict() if enough else None
        )
        # the reference no reply can move: how well minus the affect of the answered seeker turn alone
        # predicts the labels (labels are a change of affect, so they regress towards the mean)
        state_only = [-affect(last_seeker_text(examples[i].context)) for i in labelled]
        metrics["label_vs_seeker_affect"] = (
            correlation_ci(state_only, labels, seed=self.seed).as_dict() if enough else None
        )
        return metrics

    def score(
        self,
        contexts: Sequence[tuple[Turn, ...]],
        replies: Sequence[str],
        intensities: Sequence[int | None] | None = None,
    ) -> list[float]:
        """Reward in (-1, 1) of each (context, reply) given the seeker's starting intensity (None: unknown).

        Args: one context and one reply per item; `intensities` 1-5 or None (default: all None)."""
        if len(contexts) != len(replies):
            raise ValueError(f"score needs one reply per context, got {len(contexts)} and {len(replies)}")
        if not replies:
            return []
        return self._scores(self.features(contexts, replies, intensities or [None] * len(replies)))

    # ---- files ------------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write head.safetensors and reward_model.json into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        tensors.update(
            text_mean=self.text_mean,
            text_std=self.text_std,
            feature_mean=self.feature_mean,
            feature_std=self.feature_std,
            projection=self.projection,
        )
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / HEAD_FILE))
        meta = {
            # bf16 as resolved here: a copy loaded on another device scores as this one trained
            "config": self.cfg.model_copy(update={"bf16": self.bf16}).model_dump(),
            "seed": self.seed,
            "hidden_size": self.lm.config.hidden_size,
            "pooling": "mean",
            "backbone": self.cfg.backbone,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @staticmethod
    def require_saved(folder: str | Path) -> Path:
        """`folder` as a Path if `save` wrote a reward model there; else FileNotFoundError saying how to
        train one. Cheap: callers that load later check with it up front."""
        folder = Path(folder)
        if not (folder / META_FILE).is_file():
            raise FileNotFoundError(f"{folder} holds no {META_FILE}; train one with `rlff train --stage rm`")
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> RewardModel:
        """A reward model written by `save`; the backbone comes from the config's spec."""
        folder = cls.require_saved(folder)
        meta = json.loads((folder / META_FILE).read_text())
        cfg = RewardModelConfig.model_validate(meta["config"])
        lm, tokenizer = load_model(cfg.backbone, device=device, seed=meta["seed"])
        model = cls(cfg, lm, tokenizer, meta["seed"], device)
        model.load_head(folder)
        return model

    def load_head(self, folder: str | Path) -> None:
        """Take the head and feature statistics `save` wrote to `folder` (a model of the same backbone
        and settings, e.g. an online refresh): the backbone stays, so this is quick."""
        tensors = load_file(str(Path(folder) / HEAD_FILE), device=self.device)
        self.head.load_state_dict({k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")})
        self.text_mean, self.text_std = tensors["text_mean"], tensors["text_std"]
        self.feature_mean, self.feature_std = tensors["feature_mean"], tensors["feature_std"]
        self.projection = tensors["projection"]
