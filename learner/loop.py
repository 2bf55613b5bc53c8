"""The learner: one GRPO policy update is `sample -> score -> advantages -> update -> publish`.

It owns the policy's trainable weights and optimizer, the weights version, and the ids of every record
it consumed. It does not know where records come from or where weights go: `sample(n)` and
`publish(version, state_dict)` are handed in (the Ray Train job wires them to the replay store, the
counselor actors and the staleness gate; tests wire them to plain lists), and so is the reward model
(`reward(contexts, answers) -> scores`), so a rule-based reward can stand in for it in tests.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch

from esc.config import LearnerConfig
from esc.memory import peak_rss_gb, release_free_memory, start_peak_window
from esc.models import bf16_autocast, use_bf16
from esc.parsing import parse_counselor
from esc.schemas import Candidate, CandidateGroup, Turn
from learner import ranks
from learner.lora import policy_state
from learner.losses import (
    format_reward,
    group_advantages,
    group_novelty,
    group_redundancy,
    kl_k3,
    overlong_penalty,
    policy_loss,
    safety_penalty,
)
from learner.policy import build_rows, completion_logprobs, trainable
from learner.strategy import EngineFactory, adamw, plain_step

Sample = Callable[[int], list[CandidateGroup]]
Publish = Callable[[int, dict[str, torch.Tensor]], None]
# reward(contexts, answers, intensities) -> one score per answer; intensities: seekers' starting 1-5 or None
Reward = Callable[[list[tuple[Turn, ...]], list[str], list[int | None]], list[float]]


class RewardParts(NamedTuple):
    """Per-candidate GRPO reward and its parts, each a float32 tensor of shape (n,)."""

    reward: torch.Tensor
    rm_score: torch.Tensor
    format_reward: torch.Tensor
    unsafe: torch.Tensor


def grpo_reward(
    rm_scores: Sequence[float],
    raws: Sequence[str],
    reward_weight: float,
    format_weight: float,
    safety_weight: float,
    format_gate: bool = False,
) -> RewardParts:
    """The reward GRPO maximises, for n candidates: RM score * reward_weight + format reward (graded,
    `format_reward(raw)`) * format_weight - safety penalty (crisis lexicon on the parsed answer) *
    safety_weight. With `format_gate`, a reply without the full format (format reward below 1) gets
    the RM's floor, -1, in place of its RM score, so no malformed reply outscores a well-formed one
    (`rm_score` still holds the RM's own score). The learner and the held-out report
    (`jobs/heldout.py`) both score with this."""
    if len(rm_scores) != len(raws):
        raise ValueError(f"grpo_reward needs one RM score per reply, got {len(rm_scores)} and {len(raws)}")
    rm = torch.tensor(list(rm_scores), dtype=torch.float32)
    fmt = torch.tensor([format_reward(raw) for raw in raws], dtype=torch.float32)
    unsafe = torch.tensor([safety_penalty(parse_counselor(raw).answer) for raw in raws], dtype=torch.float32)
    scored = torch.where(fmt == 1.0, rm, torch.full_like(rm, -1.0)) if format_gate else rm
    return RewardParts(reward_weight * scored + format_weight * fmt - safety_weight * unsafe, rm, fmt, unsafe)


class Stages:
    """Wall-clock seconds (`stage_<name>_s`) of each named stage of one update, and the process's peak
    resident size during it (`stage_<name>_peak_gb`, on Linux): which stage makes the learner's peak."""

    def __init__(self) -> None:
        self.figures: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started, windowed = time.perf_counter(), start_peak_window()
        yield
        self.figures[f"stage_{name}_s"] = time.perf_counter() - started
        if windowed and (peak := peak_rss_gb()) is not None:
            self.figures[f"stage_{name}_peak_gb"] = peak


class Learner:
    def __init__(
        self,
        config: LearnerConfig,
        model: torch.nn.Module,
        pad_id: int,
        reward: Reward,
        reward_weight: float = 1.0,
        ref_model: torch.nn.Module | None = None,
        version: int = 0,
        engine: EngineFactory | None = None,
        budget: int = 0,
    ):
        """`model`: the plain policy; `ref_model`: frozen reference, needed when `config.kl_beta > 0`;
        `version`: the weights version `model` holds now; `budget`: the counselor's `max_new_tokens`,
        needed when `config.overlong_start > 0`; `engine`: builds, from the model and the AdamW
        optimizer made here, what the update runs forward on and what turns a loss into a step
        (`learner.strategy`: plain torch by default, DDP-wrapped, or a DeepSpeed engine)."""
        if config.kl_beta > 0 and ref_model is None:
            raise ValueError("learner.kl_beta > 0 needs a reference model")
        if config.overlong_start and budget < 1:
            raise ValueError("learner.overlong_start needs the counselor's budget (max_new_tokens)")
        self.config, self.pad_id, self.budget = config, pad_id, budget
        self.reward, self.reward_weight, self.ref_model = reward, reward_weight, ref_model
        self.version = version
        self.consumed: list[str] = []
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = adamw(params, config.lr)
        self.model, self.engine = (engine or plain_step(config.max_grad_norm))(model, self.optimizer)

    def update(self, sample: Sample, publish: Publish, groups_wanted: int) -> dict[str, Any]:
        """One policy update on `groups_wanted` groups; returns its metrics (the version it published
        among them). Raises TimeoutError (from `sample`) when no data comes."""
        stage = Stages()
        with stage("sample"):
            records = sample(groups_wanted)
            groups = [[c for c in r.candidates if trainable(c)] for r in records]
            kept = [(r, g) for r, g in zip(records, groups) if len(g) >= 2]
        with stage("score"):
            rewards, parts = self.score(kept)
        with stage("advantages"):
            sizes = [len(g) for _, g in kept]
            advantages = torch.cat(
                [group_advantages(r.view(1, -1)).view(-1) for r in rewards.split(sizes)] or [rewards]
            )
        with stage("update"):  # every rank steps when any rank kept a group (learner.ranks)
            stats = self.optimise([g for _, g in kept], advantages) if ranks.any_rank(bool(kept)) else {}
        with stage("publish"):
            self.version += 1
            self.consumed.extend(r.id for r in records)
            publish(self.version, policy_state(self.model))
        release_free_memory()  # activations and gradients are freed; other processes can have the pages
        staleness = Counter(self.version - 1 - r.policy_version for r in records)
        return {
            "weights_version": self.version,
            "groups_used": len(kept),
            "staleness_hist": {str(k): v for k, v in sorted(staleness.items())},
            **parts,
            **stats,
            **stage.figures,
        }

    def score(
        self, kept: list[tuple[CandidateGroup, list[Candidate]]]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Rewards, flat over the kept candidates of each group in order (`grpo_reward`, plus
        `learner.novelty_weight` x `group_novelty`, minus `learner.redundancy_weight` x
        `group_redundancy`, minus `overlong_penalty` of each completion's sampled
        tokens when `learner.overlong_start` is set), and their batch means."""
        if not kept:
            return torch.zeros(0), {}
        contexts, answers, raws, intensities = [], [], [], []
        for record, candidates in kept:
            for c in candidates:
                contexts.append(record.context)
                answers.append(c.text)
                raws.append(c.raw)
                intensities.append(record.scenario.initial_intensity)
        rm = self.reward(contexts, answers, intensities)
        c = self.config
        parts = grpo_reward(rm, raws, self.reward_weight, c.format_weight, c.safety_weight, c.format_gate)
        novelty = torch.tensor(
            [n for _, group in kept for n in group_novelty([g.text for g in group])], dtype=torch.float32
        )
        redundancy = torch.tensor(
            [n for _, group in kept for n in group_redundancy([g.text for g in group])], dtype=torch.float32
        )
        lengths = [len(g.token_ids) for _, group in kept for g in group]
        overlong = torch.tensor(overlong_penalty(lengths, self.budget, c.overlong_start), dtype=torch.float32)
        # training terms only: held-out rewards (jobs/heldout.py) are grpo_reward's parts alone
        flat = parts.reward + c.novelty_weight * novelty - c.redundancy_weight * redundancy - overlong
        summary = {
            "novelty_mean": float(novelty.mean()),
            "redundancy_mean": float(redundancy.mean()),
            "overlong_mean": float(overlong.mean()),
            "reward_mean": float(flat.mean()),
            "rm_score_mean": float(parts.rm_score.mean()),
            "format_rate": float((parts.format_reward == 1.0).float().mean()),
            "unsafe_rate": float(parts.unsafe.mean()),
        }
        return flat, summary

    def optimise(self, groups: list[list[Candidate]], advantages: torch.Tensor) -> dict[str, float]:
        """One optimizer step over every candidate, in micro-batches of `learner.micro_batch` rows
        (gradients accumulate, each micro-batch weighted by its share of the batch's completion
        tokens, so the step equals one on the whole batch). With several ranks, the batch is the union
        of every rank's groups: shares are of the tokens of all ranks (DDP averages gradients, hence
        the factor `world`), and a rank with fewer micro-batches (or none) runs zero-weight passes so
        that every rank makes the same number of backward calls. The metrics are this rank's own."""
        rows = build_rows(groups, self.config.max_tokens, self.pad_id) if groups else None
        size, world = self.config.micro_batch, ranks.world()
        local_tokens = float(rows.completion_mask.sum()) if rows is not None else 0.0
        all_tokens = max(ranks.total(local_tokens), 1.0)
        starts = range(0, len(rows), size) if rows is not None else range(0)
        passes = int(ranks.largest(len(starts)))
        self.model.train()
        sums: Counter = Counter()
        boundary = getattr(self.engine, "set_gradient_accumulation_boundary", None)  # DeepSpeed's
        for i in range(passes):
            if boundary is not None:  # DeepSpeed: reduce gradients across ranks after the last pass only
                boundary(i == passes - 1)
            if i >= len(starts):
                self.engine.backward(zero_weight_loss(self.model, self.pad_id))
                continue
            part = rows.select(slice(starts[i], starts[i] + size))
            loss, tokens = self._micro_batch(
                part, advantages[starts[i] : starts[i] + size], local_tokens, sums
            )
            self.engine.backward(loss * (tokens * world / all_tokens))
        grad_norm = self.engine.step()
        if grad_norm is None:  # DeepSpeed's step returns nothing; its engine keeps the norm
            grad_norm = self.engine.get_global_grad_norm() or float("nan")
        self.model.eval()
        out = {k: v for k, v in sums.items() if k not in ("kl", "policy_kl")}
        for key in ("kl", "policy_kl"):  # summed per token below
            if key in sums:
                out[key] = sums[key] / local_tokens if local_tokens else 0.0
        return {**out, "grad_norm": float(grad_norm), "completion_tokens": int(local_tokens)}

    def _micro_batch(self, part, advantages: torch.Tensor, local_tokens: float, sums: Counter):
        """The loss of one micro-batch (its rows' `advantages`) and its completion tokens; adds its
        metrics, weighted by its share of this rank's tokens, to `sums`."""
        device = next(self.model.parameters()).device.type
        with bf16_autocast(device, use_bf16(self.config.bf16, device)):  # products in bf16, log-probs float32
            logp = completion_logprobs(self.model, part).float()
        mask = part.completion_mask.to(logp.device)
        behaviour = part.behaviour_logp.to(logp.device)
        loss, stats = policy_loss(
            logp,
            logp.detach(),  # proximal policy = these weights before the step (one step per batch)
            behaviour,
            advantages.to(logp.device),
            mask,
            clip_eps=self.config.clip_eps,
            is_cap=self.config.is_cap,
        )
        sums["policy_kl"] += float(kl_k3(behaviour, logp.detach(), mask)) * float(mask.sum())
        if self.ref_model is not None and self.config.kl_beta > 0:
            with torch.no_grad(), bf16_autocast(device, use_bf16(self.config.bf16, device)):
                ref_logp = completion_logprobs(self.ref_model, part).float()
            kl = kl_k3(logp, ref_logp, mask)
            loss = loss + self.config.kl_beta * kl
            sums["kl"] += float(kl) * float(mask.sum())
        share = float(mask.sum()) / local_tokens
        sums["policy_loss"] += float(loss.detach()) * share
        for key in ("clip_fraction", "is_weight_mean", "is_truncated_fraction"):
            sums[key] += stats[key] * share
        return loss, float(mask.sum())


def zero_weight_loss(model: torch.nn.Module, pad_id: int) -> torch.Tensor:
    """A loss of 0 whose backward touches every trainable weight: what a rank with no rows left
    backpropagates so that its collective calls match the other ranks'."""
    device = next(model.parameters()).device
    logits = model(input_ids=torch.tensor([[pad_id]], device=device)).logits
    return logits.sum() * 0.0
