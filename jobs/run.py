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
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray import train
from ray.train.torch import TorchTrainer

from esc.config import ConfigError, RunConfig, load_config
from esc.contexts import dialogue_context
from esc.data import load_dialogues
from jobs import UsageError
from jobs.console import Progress, quiet_libraries
from jobs.driver import Watch, get
from jobs.evaluations import Evaluations
from jobs.heldout import Heldout
from jobs.launcher import (
    init_ray,
    start_actors,
    start_rm_trainer,
    start_store,
)
from jobs.learn import learner_loop, staleness
from jobs.serve import check_open_bind, check_port_free, start_endpoint
from jobs.train_sft import cold_start
from learner import checkpoint

REFRESH_END_S = 300.0  # how long the end of a run waits for the reward-model trainer's last refresh
LEARNER_END_S = 60.0  # how long a run stopped during its first points waits for Ray Train to end


def ray_logs() -> Path:
    """Where Ray keeps every worker's output on a node: under $RAY_TMPDIR (else the temp folder)."""
    return Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray" / "session_latest" / "logs"


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
    if not folder.strip():
        raise UsageError("--resume needs a run folder (runs/<name>), not an empty path")
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise UsageError(f"{folder} is not a run folder (no config.json); give runs/<name>")
    try:
        config = load_config(path, overrides)
        written = json.loads(path.read_text(encoding="utf-8"))
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if not isinstance(written, dict) or not {"name", "runs_dir"} <= written.keys():
        raise UsageError(f"{path} is not the config a run wrote (it names no run); give runs/<name>")
    return config


def reward_model_dir(config: RunConfig) -> Path:
    folder = config.run_dir() / "reward_model"
    if not (folder / "reward_model.json").is_file():
        raise UsageError(
            f"no reward model at {folder}; train one first with `rlff train --stage rm` (same --config)"
        )
    return folder


def _trainer(config: RunConfig, loop_config: dict[str, Any]) -> TorchTrainer:
    place = config.learner.placement
    resources = {"CPU": place.num_cpus, **place.resources}
    if place.num_gpus:
        resources["GPU"] = place.num_gpus
    return TorchTrainer(
        learner_loop,
        train_loop_config=loop_config,
        scaling_config=train.ScalingConfig(
            num_workers=place.replicas, use_gpu=place.num_gpus > 0, resources_per_worker=resources
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
    store = start_store(config)
    held = get(store.stats.remote())["unconsumed"]
    if held == 0:
        raise UsageError(
            f"the store at {config.store_dir()} has no unconsumed groups; run `rlff collect` first"
        )
    loop_config = {"config": config.model_dump(), "store": store, "gate": None, "hub": None, "counselors": []}
    _trainer(config, {**loop_config, "reward_model": str(rm_dir.resolve())}).fit()
    done = checkpoint.latest(config.checkpoint_dir())
    updates = checkpoint.read_state(done).updates if done else 0
    print(f"{updates} policy updates done; weights in {config.weights_dir()}")
    get(store.close.remote())
    return 0


def online_inputs(config: RunConfig, resume: bool) -> tuple[RunConfig, Path, list]:
    """Check what `rlff run` needs before anything starts; returns the config (cold-started: the
    counselor is the SFT model when `sft.cold_start`), the reward model's folder and the contexts."""
    if not resume and (config.checkpoint_dir() / "LATEST").is_file():
        raise UsageError(
            f"{config.run_dir()} already holds a learner checkpoint; continue it with"
            f" `rlff run --resume {config.run_dir()}` or start a new run with --set name=NEW"
        )
    if config.counselor.backend not in ("hf", "vllm"):
        raise UsageError(
            f"rlff run needs counselor.backend hf or vllm: the {config.counselor.backend} backend cannot"
            " load the weights the learner publishes"
        )
    refresh = config.reward_refresh
    if refresh.every and refresh.data_weight and not config.reward_model.data:
        raise UsageError(
            "reward_refresh.data_weight mixes in ESConv's data-grounded examples: set"
            " reward_model.data=esconv:PATH, or reward_refresh.data_weight=0"
        )
    config = cold_start(config.absolute())
    rm_dir = reward_model_dir(config)
    contexts = [
        dialogue_context(d, config.seed) for d in load_dialogues(config.data.scenarios, seed=config.seed)
    ]
    if not contexts:
        raise UsageError(f"data.scenarios {config.data.scenarios!r} holds no dialogues")
    return config, rm_dir, contexts


def run_online(config: RunConfig, resume: bool = False) -> int:
    if config.serve.enabled:
        check_open_bind(config)  # first: a refused bind is about the command, not the run's inputs
    config, rm_dir, contexts = online_inputs(config, resume)
    if config.serve.enabled:
        check_port_free(config.serve.host, config.serve.port)
        importlib.import_module("ray.serve")  # importing it gives Serve's logger a terminal handler
    log_file = quiet_libraries(config.run_dir() / "run.log")
    heldout = Heldout(config, rm_dir, resume) if config.evaluation.heldout else None
    config.write_resolved()
    (config.run_dir() / "STOP").unlink(missing_ok=True)  # left over from an earlier stop
    seeker_checker(config)
    init_ray(quiet=True)
    print(f"logs: {log_file} (libraries); actors and learner: {ray_logs()} on each node", flush=True)
    started = time.perf_counter()
    system = start_actors(config, staleness=staleness(config), wait=False)
    refresh = None  # the online reward-model trainer's run() call (`reward_refresh.every`)
    if config.reward_refresh.every:
        refresh = start_rm_trainer(config, system, str(rm_dir.resolve())).run.remote()
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
    evaluation = Evaluations(config, system)
    # the first held-out point and evaluation come before the learner loads its models: its first wait
    # for groups (learner.sample_timeout_s) does not include them, and they do not share the machine with
    # updates. Ray Train starts its workers meanwhile, while the actors load their models.
    first = heldout is not None or bool(evaluation.scenarios)
    get(system.gate.hold_learner.remote(first))
    learner.start()
    try:
        system.wait_ready()
        ready = time.perf_counter() - started
        print(f"actors ready in {ready:.1f} s; run folder {config.run_dir()}", flush=True)
        if config.serve.enabled:  # it follows what the learner publishes
            start_endpoint(config, follow=True)
            quiet_libraries(log_file)  # in case starting Serve configured its logger again
        if heldout is not None:
            heldout.first(system)
        evaluation.first()
    except BaseException as error:  # Ctrl-C or a failure before the rollouts: the held learner ends unloaded
        if isinstance(error, KeyboardInterrupt):
            print("stopping: Ray Train's workers end first (Ctrl-C again to quit at once)", file=sys.stderr)
        get(system.gate.stop.remote())
        learner.join(LEARNER_END_S)
        raise
    get(system.gate.hold_learner.remote(False))
    totals = _drive(config, system, contexts, learner, evaluation, heldout)
    learner.join()
    if "error" not in outcome:
        evaluation.last()
        if heldout is not None:
            heldout.last()  # the final point, learning.json and the table
    refresh_failed = end_refresh(refresh)
    failed = _finish(config, system, totals, outcome.get("error")) or refresh_failed or totals.get("failed")
    return int(bool(failed))


def end_refresh(refresh) -> bool:
    """Wait for the reward-model trainer to finish its refresh in progress (the gate has stopped) and
    say where it got to; True when the trainer failed (the run then exits 1: the reward model stopped
    following the policy at some point, which the run's figures should not hide)."""
    if refresh is None:
        return False
    try:
        done = ray.get(refresh, timeout=REFRESH_END_S)
    except ray.exceptions.GetTimeoutError:
        print(
            f"reward-model trainer: still training after {REFRESH_END_S:.0f} s; stopped (what it took goes"
            " back to the store on --resume)",
            file=sys.stderr,
        )
        return False
    except ray.exceptions.RayError as error:
        print(f"error: the reward-model trainer failed: {error}", file=sys.stderr)
        return True
    print(f"reward model: version {done['version']}, trained and checked on {done['used']} simulated groups")
    return False


def _finish(config: RunConfig, system, totals: dict[str, int], error: str | None) -> int:
    """Print where the run's outputs are, close the store and the metrics hub; 1 if the learner failed."""
    store = get(system.store.stats.remote())
    gate = get(system.gate.state.remote())
    print(
        f"groups: {totals['stored']} stored, {totals['skipped']} skipped; learner version {gate['version']};"
        f" store {store['total']} records ({store['unconsumed']} unconsumed, {store['stale']} stale)"
    )
    print(
        f"metrics: {config.run_dir() / 'metrics.jsonl'}; weights: {config.weights_dir()};"
        f" checkpoints: {config.checkpoint_dir()}"
    )
    get([system.store.close.remote(), system.hub.close.remote()])
    if error is not None:
        print(f"error: the learner failed: {error}", file=sys.stderr)
        return 1
    return 0


def _fit(trainer: TorchTrainer, outcome: dict[str, Any]) -> None:
    try:
        trainer.fit()
    except Exception as error:  # reported by the driver; the run still shuts down cleanly
        outcome["error"] = f"{type(error).__name__}: {error}"


def _drive(
    config: RunConfig,
    system,
    contexts,
    learner: threading.Thread,
    evaluation: Evaluations,
    heldout: Heldout | None = None,
) -> dict[str, int]:
    """Keep every worker busy with `rollout.in_flight` contexts until the learner ends; returns outcome
    counts. Ctrl-C, or a worker's call that failed, stops the gate and waits for work in flight (a
    periodic evaluation included; a held-out point in its thread is joined by `Heldout.last`)."""
    feed, chunk = itertools.cycle(contexts), config.rollout.in_flight
    pending: dict[Any, Any] = {}  # collect call -> the worker running it
    watch, stop = Watch(system), Stop(config, system)
    progress = Progress(config.learner.max_updates, get(system.gate.state.remote())["version"])
    while True:
        try:
            if not stop.stopping and not learner.is_alive():
                stop.now()
            if not stop.check():
                busy = set(pending.values())
                for worker in (w for w in system.workers if w not in busy):
                    pending[worker.collect.remote([next(feed).model_dump() for _ in range(chunk)])] = worker
                evaluation.maybe_start()
                if heldout is not None:
                    heldout.maybe_start()
            elif not pending and not evaluation.refs():
                return watch.totals
            done = watch.wait([*pending, *evaluation.refs()])
            progress.update(get(system.hub.snapshot.remote()))  # a line per new version
            for ref in done:
                if not evaluation.finish(ref):
                    pending.pop(ref)
                    failure = watch.settle(ref)
                    if failure is not None and not stop.stopping:
                        print(
                            f"error: a rollout worker failed ({failure}); stopping: the learner checkpoints"
                            " its last update and `rlff run --resume` continues the run",
                            file=sys.stderr,
                            flush=True,
                        )
                        stop.now()
        except KeyboardInterrupt:
            if stop.stopping:
                raise
            print("stopping: finishing work in flight (Ctrl-C again to quit at once)", file=sys.stderr)
            stop.now()


class Stop:
    """Whether the run is stopping: the learner ended, Ctrl-C, or a file runs/<name>/STOP appeared (how
    a run without a terminal, a Ray job, is ended gracefully). Stopping stops the gate: workers finish
    the groups they started and take no new ones."""

    def __init__(self, config: RunConfig, system):
        self.file, self.system, self.stopping = config.run_dir() / "STOP", system, False

    def check(self) -> bool:
        if not self.stopping and self.file.exists():
            self.file.unlink()
            print(f"stopping: {self.file} found; finishing work in flight", file=sys.stderr, flush=True)
            self.now()
        return self.stopping

    def now(self) -> None:
        self.stopping = True
        get(self.system.gate.stop.remote())
