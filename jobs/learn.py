"""The learner as a Ray Train job: every Ray Train worker runs `learner_loop`.

Each worker builds its learner (`build_learner`: the policy, DDP-wrapped by Ray Train when there are
several workers, gloo on CPU; the reward model; a frozen reference when `learner.kl_beta > 0`),
resumes from the newest checkpoint, then repeats `Learner.update` until `learner.max_updates` or until
the staleness gate says the run is stopping (every rank stops together: `learner.ranks`), and ends with
a checkpoint of its last update. Records come from the replay store (`StoreSampler`: each
worker samples its own share, as consumer `learner-r<rank>`, validated back into `CandidateGroup`);
rank 0 publishes each new version (`Publisher`: to `runs/<name>/weights` or through Ray's object
store), waits for the counselor actors to load it, then moves the gate. Before each update every
rank switches to the newest reward-model version an online refresh published (`learner.rm_versions`;
without one, version 0: the model trained before the run). Handles arrive in `train_loop_config`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
import torch.distributed as dist
from ray import train

from actors.metrics_hub import METRICS
from esc import placement, weights
from esc.config import RunConfig
from esc.models import load_model, slow_bf16_note, use_bf16
from esc.schemas import CandidateGroup
from learner import checkpoint, ranks, rm_versions
from learner.bf16 import train_in_bf16
from learner.checkpoint import LearnerState
from learner.loop import Learner
from learner.lora import add_lora
from learner.recompute import recompute_mlps
from learner.reward_model import RewardModel
from learner.rm_versions import FollowedReward
from learner.strategy import EngineFactory, deepspeed_step, plain_step, unwrap

CALL_TIMEOUT_S = 300.0  # every ray.get here: a store call, a weights load by the counselors
POLL_S = 0.5  # how often a learner waiting for records asks the store again
HOLD_WAIT_S = 30.0  # each wait at the gate while the driver holds the learner (the first points run)


class Stopping(Exception):
    """The run is stopping while the learner waits for records."""


def staleness(config: RunConfig) -> int:
    """The staleness bound in force: 0 in sync mode (generation and training alternate)."""
    return 0 if config.learner.mode == "sync" else config.rollout.max_staleness


@dataclass
class Handles:
    """The actors a learner worker talks to; `gate` is None offline (`rlff train --stage policy`)."""

    store: Any
    gate: Any
    hub: Any
    counselors: list

    def stopping(self) -> bool:
        return self.gate is not None and ray.get(self.gate.stopped.remote(), timeout=CALL_TIMEOUT_S)

    def wait_to_start(self) -> bool:
        """Online, wait while the driver holds the learner back (`StalenessGate.hold_learner`); False
        when the run stopped meanwhile (Ctrl-C during its first points): the learner then ends at once."""
        while self.gate is not None:
            call = self.gate.learner_may_start.remote(HOLD_WAIT_S)
            if ray.get(call, timeout=HOLD_WAIT_S + CALL_TIMEOUT_S):
                return not self.stopping()
        return True


def learner_loop(loop_config: dict[str, Any]) -> None:
    config = RunConfig.model_validate(loop_config["config"])
    handles = Handles(*(loop_config[k] for k in ("store", "gate", "hub", "counselors")))
    context = train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    rm_dir = loop_config["reward_model"]
    if ranks.any_rank(not handles.wait_to_start()):  # every rank, or none, goes on to load its models
        return
    learner, model_files = build_learner(config, rm_dir, rank, world)
    updates = saved = resume(config, learner, handles, rank)
    sample = StoreSampler(config, learner, handles, f"learner-r{rank}")
    publish = Publisher(config, handles, model_files, rank)
    per_rank, lc = max(1, config.learner.batch_size // world), config.learner
    session = f"{ranks.largest(time.time()):.0f}"  # one name for this start on every rank
    with UpdateLog(config.run_dir() / "learner" / f"updates-r{rank}.jsonl", session) as log:
        # every rank stops when any rank sees the gate stop (learner.ranks: no rank waits alone)
        while updates < lc.max_updates and not ranks.any_rank(handles.stopping()):
            before = len(learner.consumed)
            # the newest reward-model version any rank sees (online refresh; 0 without one): one file read
            switch_s = learner.reward.follow(int(ranks.largest(rm_versions.latest(rm_dir))))
            try:
                metrics = learner.update(sample, publish, per_rank)
            except Stopping:
                break
            updates += 1
            metrics.update(rm_version=learner.reward.version, rm_switch_s=switch_s)
            ids, weights_hash = learner.consumed[before:], same_weights(learner, world)
            log.write(updates, learner.version, ids, weights_hash, learner.reward.version, metrics)
            if updates % lc.checkpoint_every == 0:
                save_checkpoint(config, learner, updates, world, rank)
                saved = updates
            if handles.hub is not None and rank == 0:
                handles.hub.record.remote("learner", {k: v for k, v in metrics.items() if k in METRICS})
            train.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    if updates > saved:  # the last update, Ctrl-C or STOP: a resumed run redoes nothing
        save_checkpoint(config, learner, updates, world, rank)
    if handles.gate is not None and rank == 0:
        ray.get(handles.gate.stop.remote(), timeout=CALL_TIMEOUT_S)  # the learner is done: rollouts may end


def same_weights(learner: Learner, world: int) -> str | None:
    """With several ranks: a short hash of this rank's weights, after checking that every rank holds
    the same (a RuntimeError otherwise); None with one rank."""
    if world == 1:
        return None
    values = ranks.fingerprint(unwrap(learner.model))
    if not ranks.same_everywhere(values):
        raise RuntimeError(f"the learner ranks hold different weights at version {learner.version}")
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


def build_learner(config: RunConfig, reward_model: str, rank: int, world: int):
    """This worker's `Learner` and the function that writes the model's config and tokenizer beside
    each published version (the plain model's, before any LoRA wrapping)."""
    lc = config.learner
    placement.apply(lc.placement)
    torch.manual_seed(config.seed + rank)
    device = "cuda" if lc.use_gpu and torch.cuda.is_available() else "cpu"
    model, tokenizer = load_model(config.counselor.model, device=device, seed=config.seed)
    if lc.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if lc.recompute_mlp:
        recompute_mlps(model)
    plain = model

    def model_files(folder) -> None:
        plain.config.save_pretrained(folder)
        plain.generation_config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    if lc.lora_rank:
        model = add_lora(model, lc.lora_rank)
    reference = load_model(config.counselor.model, device=device)[0] if lc.kl_beta > 0 else None
    if reference is not None:
        reference.requires_grad_(False)  # never trained: no gradients, and bf16 copies under learner.bf16
    lc = lc.model_copy(update={"bf16": use_bf16(lc.bf16, device)})  # "auto": on where the device has bf16
    if lc.bf16:
        explicit = config.learner.bf16 is True
        note = slow_bf16_note("learner.bf16") if explicit and device == "cpu" and rank == 0 else None
        if note:
            print(note)
        for policy_or_reference in (model, reference):
            if policy_or_reference is not None:
                train_in_bf16(policy_or_reference)
    reward = FollowedReward(RewardModel.load(reward_model, device=device), reward_model)
    learner = Learner(
        lc,
        model,
        tokenizer.pad_token_id,
        reward,
        config.reward_model.weight,
        reference,
        engine=engine_factory(config, world),
        budget=config.counselor.max_new_tokens,
    )
    return learner, model_files


def engine_factory(config: RunConfig, world: int) -> EngineFactory:
    """DeepSpeed when `learner.strategy` asks for it; else plain torch, DDP-wrapped by Ray Train when
    there are several workers."""
    lc = config.learner
    if lc.strategy == "deepspeed":
        return deepspeed_step(lc, world)
    if world > 1:
        return plain_step(lc.max_grad_norm, lambda m: train.torch.prepare_model(m, move_to_device=False))
    return plain_step(lc.max_grad_norm)


def resume(config: RunConfig, learner: Learner, handles: Handles, rank: int) -> int:
    """Restore the newest checkpoint (if any) into `learner`, hand this worker's unconsumed samples back
    to the store, and (rank 0, online) rebase the gate on the restored version; returns updates done."""
    updates = restore_learner(config, learner, rank)
    call = handles.store.requeue.remote(f"learner-r{rank}", learner.consumed)
    requeued = ray.get(call, timeout=CALL_TIMEOUT_S)
    if handles.gate is not None and rank == 0:
        stats = ray.get(handles.store.stats.remote(), timeout=CALL_TIMEOUT_S)["by_kind"].get("group", {})
        call = handles.gate.rebase.remote(learner.version, stats.get("unconsumed", 0))
        ray.get(call, timeout=CALL_TIMEOUT_S)
    print(f"learner r{rank}: version {learner.version}, {updates} updates done, {requeued} records requeued")
    return updates


def restore_learner(config: RunConfig, learner: Learner, rank: int) -> int:
    """Load the newest checkpoint (if any) into `learner`: weights, this rank's optimizer state, version
    and consumed ids; returns the updates it had done (0 without a checkpoint)."""
    latest = checkpoint.latest(config.checkpoint_dir())
    if latest is None:
        return 0
    state = checkpoint.restore(latest, unwrap(learner.model), learner.optimizer, rank)
    refresh = getattr(getattr(learner.engine, "optimizer", None), "refresh_fp32_params", None)
    if refresh is not None:  # DeepSpeed ZeRO steps its own fp32 copy of the weights: reread them
        refresh()
    learner.version, learner.consumed = state.version, list(state.consumed)
    return state.updates


class StoreSampler:
    """`sample(n)` for `Learner.update`: n fresh groups from the replay store as `CandidateGroup`s.
    Online it waits for workers to write them (up to `learner.sample_timeout_s`, raising `Stopping`
    when the run stops meanwhile); offline it takes what the store holds and stops when it is empty."""

    def __init__(self, config: RunConfig, learner: Learner, handles: Handles, consumer: str):
        self.config, self.learner, self.handles, self.consumer = config, learner, handles, consumer
        self.offline = handles.gate is None

    def __call__(self, n: int) -> list[CandidateGroup]:
        """This rank's groups, once every rank has its own: when any rank's run is stopping (or, offline,
        its store share is empty) every rank raises `Stopping`; when any timed out, TimeoutError."""
        problem, message = 0, "another learner rank got no groups in time"
        try:
            records = self.fetch(n)
        except Stopping:
            records, problem = [], 1
        except TimeoutError as error:
            records, problem, message = [], 2, str(error)
        agreed = ranks.largest(problem)
        if agreed == 2:
            raise TimeoutError(message)
        if agreed == 1:
            raise Stopping
        return records

    def fetch(self, n: int) -> list[CandidateGroup]:
        store, timeout = self.handles.store, self.config.learner.sample_timeout_s
        bound = 10**9 if self.offline else staleness(self.config)
        version = self.learner.version
        dropped = ray.get(store.drop_stale.remote(version, bound, "group"), timeout=CALL_TIMEOUT_S)
        if dropped and self.handles.gate is not None:  # never consumed: they leave the gate's count
            ray.get(self.handles.gate.retire.remote(dropped), timeout=CALL_TIMEOUT_S)
        deadline, records = time.monotonic() + timeout, []
        while len(records) < n:
            call = store.sample.remote(n - len(records), version, bound, self.consumer, "group")
            records += [CandidateGroup.model_validate(r) for r in ray.get(call, timeout=CALL_TIMEOUT_S)]
            if len(records) >= n:
                break
            if self.offline:
                if not records:
                    raise Stopping
                break
            if self.handles.stopping():
                raise Stopping
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {n} fresh groups in the store after {timeout:.0f} s")
            time.sleep(POLL_S)
        return records


class Publisher:
    """`publish(version, state)` for `Learner.update`: rank 0 sends the new weights to every counselor
    (through runs/<name>/weights, or as one shared copy in Ray's object store with
    `learner.publish=object_store`), waits until they serve it, then moves the gate."""

    def __init__(self, config: RunConfig, handles: Handles, model_files, rank: int):
        self.config, self.handles, self.model_files, self.rank = config, handles, model_files, rank

    def __call__(self, version: int, state: dict[str, torch.Tensor]) -> None:
        if self.rank != 0:
            return
        counselors = self.handles.counselors
        if self.config.learner.publish == "object_store":
            data = ray.put(weights.to_bytes(state))
            loads = [c.load_weights.remote(version, data) for c in counselors]
        else:
            weights.publish(state, self.config.weights_dir(), version, self.model_files)
            loads = [c.load_weights.remote(version) for c in counselors]
        ray.get(loads, timeout=CALL_TIMEOUT_S)
        if self.handles.gate is not None:
            ray.get(self.handles.gate.set_version.remote(version), timeout=CALL_TIMEOUT_S)


class UpdateLog:
    """runs/<name>/learner/updates-r<rank>.jsonl: one line per update with the ids it consumed, the
    reward-model version that scored them, when it ended and how long its stages took. `session` (the
    same on every rank) tells the lines of a resumed run apart."""

    def __init__(self, path: Path, session: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.session = path, session

    def __enter__(self) -> UpdateLog:
        self.file = open(self.path, "a")
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def write(
        self,
        update: int,
        version: int,
        ids: list[str],
        weights: str | None = None,
        rm_version: int = 0,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        line = {"update": update, "version": version, "session": self.session, "ids": ids}
        line.update(rm_version=rm_version, time=time.time())
        line.update(
            {k: v for k, v in (metrics or {}).items() if k.startswith("stage_") or k == "rm_switch_s"}
        )
        if weights is not None:  # several ranks: the hash of this rank's weights (`same_weights`)
            line["weights"] = weights
        self.file.write(json.dumps(line) + "\n")
        self.file.flush()


def save_checkpoint(config: RunConfig, learner: Learner, updates: int, world: int, rank: int) -> None:
    """Rank 0 saves the policy, optimizer and every rank's consumed ids (gathered). Under DeepSpeed ZeRO
    with several ranks, each rank holds part of the optimizer state and saves that part first."""
    split = world > 1 and config.learner.strategy == "deepspeed" and config.learner.zero_stage > 0
    if split:
        checkpoint.save_shard(config.checkpoint_dir(), updates, rank, learner.optimizer)
    consumed = list(learner.consumed)
    if world > 1:  # also waits for every rank's part of the optimizer state
        gathered: list[list[str] | None] = [None] * world
        dist.all_gather_object(gathered, consumed)
        consumed = list(dict.fromkeys(rid for part in gathered for rid in (part or [])))
    if rank == 0:
        state = LearnerState(learner.version, updates, tuple(consumed))
        model, shards = unwrap(learner.model), world if split else 0
        checkpoint.save(config.checkpoint_dir(), model, learner.optimizer, state, shards=shards)
