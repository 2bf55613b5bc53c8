"""`rlff run`: the online loop. Actors, store and staleness gate on Ray; the learner on Ray Train.

The driver starts the actor system, starts the learner (`jobs/learn.py`) in a Ray Train `TorchTrainer`
on a background thread, and keeps every rollout worker busy with contexts from the dataset (cycling)
until the learner finishes `learner.max_updates`, Ctrl-C, or a file `runs/<name>/STOP` appears (how
a Ray job, which has no terminal, is ended gracefully). Ctrl-C and STOP are graceful: the gate stops
admitting work, workers finish the groups they started, the learner finishes its update (and
checkpoints on its schedule), the store is flushed and closed. A second Ctrl-C exits at once.
`--resume runs/<name>` continues a run: its saved config, store, checkpoint and published weights.
With `evaluation.heldout` set, the policy answers held-out contexts before the first rollout, every
`evaluation.every` versions and at the end (`jobs/heldout.py`), and the run ends with the learning table.
"""

from __future__ import annotations

import importlib
import itertools
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray import train
from ray.train.torch import TorchTrainer

from actors.replay_store import ReplayStore
from esc.config import ConfigError, RunConfig, load_config
from esc.contexts import dialogue_context
from esc.data import load_dialogues
from jobs import UsageError
from jobs.collect import WATCH_EVERY_S, driver_metrics
from jobs.console import Progress, quiet_libraries
from jobs.heldout import Heldout
from jobs.launcher import init_ray, remote, report_restarts, start_actors
from jobs.learn import learner_loop, staleness
from jobs.serve import check_port_free, start_endpoint
from jobs.train_sft import cold_start
from learner import checkpoint

RAY_LOGS = "/tmp/ray/session_latest/logs"  # where Ray keeps every worker's output on a node


def seeker_checker(config: RunConfig) -> None:
    """Save the seeker-role checker (`esc.seeker_check`) where the dashboard looks for it
    (runs/<name>/seeker_checker.json), when the simulator is grounded in data (`seeker.examples`)."""
    if not config.seeker.examples:
        return
    from esc.seeker_check import SeekerGrounding
    from serve.dashboard import CHECKER_FILE

    SeekerGrounding.from_spec(config.seeker.examples).checker.save(config.run_dir() / CHECKER_FILE)


def resume_config(folder: str, overrides: list[str]) -> RunConfig:
    """The config a run was started with (runs/<name>/config.json), plus overrides."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise UsageError(f"{folder} is not a run folder (no config.json); give runs/<name>")
    try:
        return load_config(path, overrides)
    except ConfigError as error:
        raise UsageError(str(error)) from None


def reward_model_dir(config: RunConfig) -> Path:
    folder = config.run_dir() / "reward_model"
    if not (folder / "reward_model.json").is_file():
        raise UsageError(
            f"no reward model at {folder}; train one first with `rlff train --stage rm` (same --config)"
        )
    return folder


def _trainer(config: RunConfig, loop_config: dict[str, Any]) -> TorchTrainer:
    lc = config.learner
    return TorchTrainer(
        learner_loop,
        train_loop_config=loop_config,
        scaling_config=train.ScalingConfig(
            num_workers=lc.num_workers, use_gpu=lc.use_gpu, resources_per_worker={"CPU": lc.cpus_per_worker}
        ),
        run_config=train.RunConfig(
            name="learner", storage_path=str((config.run_dir() / "ray_train").resolve())
        ),
    )


def run_offline_policy(config: RunConfig) -> int:
    """`rlff train --stage policy`: GRPO on the groups the store holds (from `rlff collect`), no actors
    but the store; stops at learner.max_updates or when the store has nothing left."""
    config = config.absolute()
    rm_dir = reward_model_dir(config)
    config.write_resolved()
    init_ray()
    store = remote(ReplayStore, config.actors.store).remote(str(config.store_dir()), config.store.capacity)
    held = ray.get(store.stats.remote(), timeout=60)["unconsumed"]
    if held == 0:
        raise UsageError(
            f"the store at {config.store_dir()} has no unconsumed groups; run `rlff collect` first"
        )
    loop_config = {"config": config.model_dump(), "store": store, "gate": None, "hub": None, "counselors": []}
    _trainer(config, {**loop_config, "reward_model": str(rm_dir.resolve())}).fit()
    done = checkpoint.latest(config.checkpoint_dir())
    updates = checkpoint.read_state(done).updates if done else 0
    print(f"{updates} policy updates done; weights in {config.weights_dir()}")
    ray.get(store.close.remote(), timeout=60)
    return 0


def run_online(config: RunConfig, resume: bool = False) -> int:
    if not resume and (config.checkpoint_dir() / "LATEST").is_file():
        raise UsageError(
            f"{config.run_dir()} already holds a learner checkpoint; continue it with"
            f" `rlff run --resume {config.run_dir()}` or start a new run with --set name=NEW"
        )
    if config.counselor.backend != "hf":
        raise UsageError(
            f"rlff run needs counselor.backend hf: the {config.counselor.backend} backend cannot load the"
            " weights the learner publishes yet (see docs/cluster.md)"
        )
    config = cold_start(config.absolute())
    rm_dir = reward_model_dir(config)
    contexts = [
        dialogue_context(d, config.seed) for d in load_dialogues(config.data.scenarios, seed=config.seed)
    ]
    if not contexts:
        raise UsageError(f"data.scenarios {config.data.scenarios!r} holds no dialogues")
    if config.serve.enabled:
        check_port_free(config.serve.host, config.serve.port)
        importlib.import_module("ray.serve")  # importing it gives Serve's logger a terminal handler
    log_file = quiet_libraries(config.run_dir() / "run.log")
    heldout = Heldout(config, rm_dir, resume) if config.evaluation.heldout else None
    config.write_resolved()
    (config.run_dir() / "STOP").unlink(missing_ok=True)  # left over from an earlier stop
    seeker_checker(config)
    init_ray(quiet=True)
    print(f"logs: {log_file} (libraries); actors and learner: {RAY_LOGS} on each node", flush=True)
    started = time.perf_counter()
    system = start_actors(config, staleness=staleness(config), wait=False)
    loop_config = {
        "config": config.model_dump(),
        "store": system.store,
        "gate": system.gate,
        "hub": system.hub,
        "counselors": system.counselor,
        "reward_model": str(rm_dir.resolve()),
    }
    trainer = _trainer(config, loop_config)
    outcome: dict[str, Any] = {}
    learner = threading.Thread(target=_fit, args=(trainer, outcome), daemon=True)
    if heldout is None:
        learner.start()  # Ray Train starts its workers while the actors load their models
    system.wait_ready()
    print(f"actors ready in {time.perf_counter() - started:.1f} s; run folder {config.run_dir()}", flush=True)
    if config.serve.enabled:  # deployed while Ray Train starts its workers; it follows what is published
        start_endpoint(config, follow=True)
        quiet_libraries(log_file)  # in case starting Serve configured its logger again
    if heldout is not None:  # version 0 before the learner starts, so its first wait for groups
        heldout.first(system)  # (learner.sample_timeout_s) does not include this point
        learner.start()
    evaluation = Evaluations(config, system)
    totals = _drive(config, system, contexts, learner, evaluation, heldout)
    learner.join()
    if heldout is not None and "error" not in outcome:
        heldout.last()  # the final point, learning.json and the table
    store = ray.get(system.store.stats.remote(), timeout=60)
    gate = ray.get(system.gate.state.remote(), timeout=60)
    print(
        f"groups: {totals['stored']} stored, {totals['skipped']} skipped; learner version {gate['version']};"
        f" store {store['total']} records ({store['unconsumed']} unconsumed, {store['stale']} stale)"
    )
    print(
        f"metrics: {config.run_dir() / 'metrics.jsonl'}; weights: {config.weights_dir()};"
        f" checkpoints: {config.checkpoint_dir()}"
    )
    ray.get([system.store.close.remote(), system.hub.close.remote()], timeout=60)
    if "error" in outcome:
        print(f"error: the learner failed: {outcome['error']}", file=sys.stderr)
        return 1
    return 0


def _fit(trainer: TorchTrainer, outcome: dict[str, Any]) -> None:
    try:
        trainer.fit()
    except Exception as error:  # reported by the driver; the run still shuts down cleanly
        outcome["error"] = f"{type(error).__name__}: {error}"


class Evaluations:
    """Periodic evaluations (`evaluation.every`): at version 0 and every N versions after, one runs on
    the first rollout worker with the run's role actors; its SR/AT go to the metrics as source
    'evaluate'. One at a time; none starts once the run is stopping."""

    def __init__(self, config: RunConfig, system):
        self.config, self.system, self.next, self.ref = config, system, 0, None
        spec = config.evaluation.scenarios or config.data.scenarios
        picked = load_dialogues(spec, seed=config.seed)[: config.evaluation.episodes]
        self.scenarios = [d.scenario.model_dump() for d in picked] if config.evaluation.every else []

    def refs(self) -> list:
        return [self.ref] if self.ref is not None else []

    def maybe_start(self) -> None:
        if not self.scenarios or self.ref is not None:
            return
        version = ray.get(self.system.gate.state.remote(), timeout=60)["version"]
        if version >= self.next:
            self.ref = self.system.workers[0].evaluate.remote(self.scenarios, self.config.seed)
            self.next = version + self.config.evaluation.every

    def finish(self, ref) -> bool:
        """Record the evaluation `ref` (if it is the one running); False for any other ref."""
        if ref is not self.ref:
            return False
        self.ref = None
        result = ray.get(ref, timeout=60)
        metrics = {k: result[k] for k in ("sr", "at", "eval_format_rate")}
        self.system.hub.record.remote("evaluate", {**metrics, "weights_version": result["policy_version"]})
        print(
            f"evaluation at version {result['policy_version']}: SR {result['sr']:.2f}, AT {result['at']:.2f},"
            f" format {result['eval_format_rate']:.2f}",
            flush=True,
        )
        return True


def _drive(
    config: RunConfig,
    system,
    contexts,
    learner: threading.Thread,
    evaluation: Evaluations,
    heldout: Heldout | None = None,
) -> dict[str, int]:
    """Keep every worker busy with `rollout.in_flight` contexts until the learner ends; returns outcome
    counts. Ctrl-C stops the gate and waits for work in flight (a periodic evaluation included; a
    held-out point in its thread is joined by `Heldout.last`)."""
    feed = itertools.cycle(contexts)
    chunk = config.rollout.in_flight
    stop_file = config.run_dir() / "STOP"  # how a run without a terminal (a Ray job) is ended gracefully
    pending: dict[Any, Any] = {}
    totals = {"stored": 0, "duplicate": 0, "skipped": 0, "stopped": 0}
    pids, restarts, stopping = system.pids(), 0, False
    start_version = ray.get(system.gate.state.remote(), timeout=60)["version"]
    progress = Progress(config.learner.max_updates, start_version)
    while True:
        try:
            if not stopping and stop_file.exists():
                stop_file.unlink()
                print(f"stopping: {stop_file} found; finishing work in flight", file=sys.stderr, flush=True)
                stopping = True
                ray.get(system.gate.stop.remote(), timeout=60)
            if not stopping and not learner.is_alive():
                stopping = True
                ray.get(system.gate.stop.remote(), timeout=60)
            busy = set(pending.values())
            for worker in system.workers:
                if not stopping and worker not in busy:
                    batch = [next(feed).model_dump() for _ in range(chunk)]
                    pending[worker.collect.remote(batch)] = worker
            if not stopping:
                evaluation.maybe_start()
                if heldout is not None:
                    heldout.maybe_start()
            if not pending and not evaluation.refs() and stopping:
                return totals
            done, _ = ray.wait([*pending, *evaluation.refs()], num_returns=1, timeout=WATCH_EVERY_S)
            progress.update(ray.get(system.hub.snapshot.remote(), timeout=60))  # a line per new version
            for ref in done:
                if evaluation.finish(ref):
                    continue
                pending.pop(ref)
                for key, value in ray.get(ref, timeout=60).items():
                    totals[key] += value
            if not done:
                now = system.pids(pids)
                lines, restarted = report_restarts(pids, now)
                for line in lines:
                    print(line, file=sys.stderr, flush=True)
                restarts, pids = restarts + restarted, now
                driver_metrics(system, 0, restarts, now)
        except KeyboardInterrupt:
            if stopping:
                raise
            print("stopping: finishing work in flight (Ctrl-C again to quit at once)", file=sys.stderr)
            stopping = True
            ray.get(system.gate.stop.remote(), timeout=60)
