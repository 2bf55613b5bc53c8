"""The learner as a Ray Train job: every Ray Train worker runs `learner_loop`.

Each worker loads the policy (DDP-wrapped by Ray Train when there are several workers, gloo on CPU),
the reward model and, when `learner.kl_beta > 0`, a frozen reference; resumes from the newest
checkpoint; then repeats `Learner.update` until `learner.max_updates` or until the staleness gate says
the run is stopping. Records come from the replay store actor (each worker samples its own share, as
consumer `learner-r<rank>`); rank 0 publishes each new version to `runs/<name>/weights`, waits for the
counselor actors to load it, then moves the gate. Handles arrive in `train_loop_config`.
"""

from __future__ import annotations

import json
import time
from typing import Any

import ray
import torch
import torch.distributed as dist
from ray import train

from actors.metrics_hub import METRICS
from esc import weights
from esc.config import RunConfig
from esc.models import load_model
from learner import checkpoint
from learner.checkpoint import LearnerState
from learner.loop import Learner
from learner.lora import add_lora
from learner.reward_model import RewardModel
from learner.strategy import deepspeed_engine, unwrap

CALL_TIMEOUT_S = 300.0  # every ray.get here: a store call, a weights load by the counselors
POLL_S = 0.5  # how often a learner waiting for records asks the store again


class Stopping(Exception):
    """The run is stopping while the learner waits for records."""


def staleness(config: RunConfig) -> int:
    """The staleness bound in force: 0 in sync mode (generation and training alternate)."""
    return 0 if config.learner.mode == "sync" else config.rollout.max_staleness


def learner_loop(loop_config: dict[str, Any]) -> None:
    config = RunConfig.model_validate(loop_config["config"])
    store, gate, hub, counselors = (loop_config[k] for k in ("store", "gate", "hub", "counselors"))
    lc = config.learner
    context = train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if lc.torch_threads:
        torch.set_num_threads(lc.torch_threads)
    torch.manual_seed(config.seed + rank)
    device = "cuda" if lc.use_gpu and torch.cuda.is_available() else "cpu"
    model, tokenizer = load_model(config.counselor.model, device=device, seed=config.seed)
    if lc.gradient_checkpointing:
        model.gradient_checkpointing_enable()

    plain = model  # the model before any LoRA wrapping: its config describes what is published

    def model_files(folder) -> None:  # config + tokenizer beside each published version
        plain.config.save_pretrained(folder)
        plain.generation_config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    if lc.lora_rank:
        model = add_lora(model, lc.lora_rank)
    reference = load_model(config.counselor.model, device=device)[0] if lc.kl_beta > 0 else None
    reward = RewardModel.load(loop_config["reward_model"], device=device)
    wrapped = model
    if world > 1 and lc.strategy == "ddp":
        wrapped = train.torch.prepare_model(model, move_to_device=False)
    learner = Learner(
        lc, wrapped, tokenizer.pad_token_id, reward.score, config.reward_model.weight, reference
    )
    if lc.strategy == "deepspeed":
        learner.model = learner.engine = deepspeed_engine(model, learner.optimizer, lc, world)
        wrapped = learner.model
    consumer, updates = f"learner-r{rank}", 0
    latest = checkpoint.latest(config.checkpoint_dir())
    if latest is not None:
        state = checkpoint.restore(latest, unwrap(wrapped), learner.optimizer)
        learner.version, learner.consumed, updates = state.version, list(state.consumed), state.updates
    requeued = ray.get(store.requeue.remote(consumer, learner.consumed), timeout=CALL_TIMEOUT_S)
    if gate is not None and rank == 0:
        stats = ray.get(store.stats.remote(), timeout=CALL_TIMEOUT_S)["by_kind"].get("group", {})
        ray.get(gate.rebase.remote(learner.version, stats.get("unconsumed", 0)), timeout=CALL_TIMEOUT_S)
    log_path = config.run_dir() / "learner" / f"updates-r{rank}.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    session = f"{time.time():.0f}"
    print(f"learner r{rank}: version {learner.version}, {updates} updates done, {requeued} records requeued")

    def stopping() -> bool:
        return gate is not None and ray.get(gate.stopped.remote(), timeout=CALL_TIMEOUT_S)

    offline = gate is None  # `rlff train --stage policy`: learn from what the store holds, then stop

    def sample(n: int) -> list[dict[str, Any]]:
        bound, version = (10**9 if offline else staleness(config)), learner.version
        ray.get(store.drop_stale.remote(version, bound), timeout=CALL_TIMEOUT_S)
        deadline, records = time.monotonic() + lc.sample_timeout_s, []
        while len(records) < n:
            call = store.sample.remote(n - len(records), version, bound, consumer, "group")
            records += ray.get(call, timeout=CALL_TIMEOUT_S)
            if offline and len(records) < n:
                if not records:
                    raise Stopping
                break
            if len(records) < n:
                if stopping():
                    raise Stopping
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no {n} fresh groups in the store after {lc.sample_timeout_s:.0f} s")
                time.sleep(POLL_S)
        return records

    def publish(version: int, state: dict[str, torch.Tensor]) -> None:
        if rank != 0:
            return
        if lc.publish == "object_store":  # one shared copy in the object store, no shared disk needed
            data = ray.put(weights.to_bytes(state))
            ray.get([c.load_weights.remote(version, data) for c in counselors], timeout=CALL_TIMEOUT_S)
        else:
            weights.publish(state, config.weights_dir(), version, model_files)
            ray.get([c.load_weights.remote(version) for c in counselors], timeout=CALL_TIMEOUT_S)
        if gate is not None:
            ray.get(gate.set_version.remote(version), timeout=CALL_TIMEOUT_S)

    per_rank = max(1, lc.batch_size // world)
    with open(log_path, "a") as log:
        while updates < lc.max_updates and not stopping():
            before = len(learner.consumed)
            try:
                metrics = learner.update(sample, publish, per_rank)
            except Stopping:
                break
            updates += 1
            used = learner.consumed[before:]
            log.write(
                json.dumps({"update": updates, "version": learner.version, "session": session, "ids": used})
            )
            log.write("\n")
            log.flush()
            if updates % lc.checkpoint_every == 0 or updates == lc.max_updates:
                _checkpoint(config, unwrap(wrapped), learner, updates, world, rank)
            if hub is not None and rank == 0:
                hub.record.remote("learner", {k: v for k, v in metrics.items() if k in METRICS})
            train.report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    if gate is not None and rank == 0:
        ray.get(gate.stop.remote(), timeout=CALL_TIMEOUT_S)  # the learner is done: rollouts may end


def _checkpoint(config: RunConfig, model, learner: Learner, updates: int, world: int, rank: int) -> None:
    """Rank 0 saves the policy, optimizer and every rank's consumed ids (gathered)."""
    consumed = list(learner.consumed)
    if world > 1:
        gathered: list[list[str] | None] = [None] * world
        dist.all_gather_object(gathered, consumed)
        consumed = list(dict.fromkeys(rid for part in gathered for rid in (part or [])))
    if rank == 0:
        state = LearnerState(learner.version, updates, tuple(consumed))
        checkpoint.save(config.checkpoint_dir(), model, learner.optimizer, state)
