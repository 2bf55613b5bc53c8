"""Starts the actor system on Ray: applies `ray.remote` to the plain actor classes with the resources,
replicas and restart policy from config, and hands back the handles.

Calls to role actors and the store are retried after an actor restart (`max_task_retries`), which is
safe because they are reads or idempotent puts; a restarted actor rebuilds its state in its
constructor (role actors reload their model, the store reopens its folder).
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.admission import StalenessGate
from actors.counselor import Counselor
from actors.judge import Judge
from actors.metrics_hub import MetricsHub
from actors.replay_store import ReplayStore
from actors.rm_trainer import RewardModelTrainer
from actors.rollout_worker import RolloutWorker
from actors.user_simulator import UserSimulator
from esc.config import ActorConfig, RunConfig
from jobs import UsageError

READY_TIMEOUT_S = 600.0  # first start converts and loads models


def init_ray(quiet: bool = False) -> None:
    """Join the cluster in RAY_ADDRESS (e.g. under `ray job submit`), else start a local instance.

    `quiet`: actors' and Ray Train workers' output stays in Ray's session logs instead of being copied
    to this terminal (`rlff run` prints its own progress lines and says where those logs are)."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=not quiet)
    else:
        # Ray Train's preemption watcher (an actor process, ~0.1 GB) looks for cloud nodes about to be
        # taken away; a local instance is this one machine. The instance's processes inherit this.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=not quiet)


def remote(cls: type, actor: ActorConfig, retries: bool = True, name: str | None = None, pin: bool = False):
    """`cls` made remote with the placement (Ray's side: CPUs, GPUs, custom resources) and fault
    tolerance of one role; its `replicas` are started by the caller. `name`: a Ray actor name, so
    that other actors can look it up (`Peers`). `pin`: on the driver's node (the head under `ray job
    submit`), unless the role asks for custom resources: for the run's bookkeeping (store, metrics hub,
    gate), whose files are the run folder's and which must not go down with another machine."""
    strategy = None
    if pin and not actor.resources:
        here = ray.get_runtime_context().get_node_id()
        strategy = NodeAffinitySchedulingStrategy(node_id=here, soft=False)
    return ray.remote(cls).options(
        name=name,
        scheduling_strategy=strategy,
        num_cpus=actor.num_cpus,
        num_gpus=actor.num_gpus,
        resources=dict(actor.resources),
        max_restarts=actor.max_restarts,
        max_task_retries=-1 if retries and actor.max_restarts != 0 else 0,
        max_concurrency=actor.max_concurrency,
    )


@dataclass
class ActorSystem:
    """Handles of every actor of a run."""

    store: Any
    hub: Any
    seeker: list = field(default_factory=list)
    counselor: list = field(default_factory=list)
    system_agent: list = field(default_factory=list)
    judge: list = field(default_factory=list)
    workers: list = field(default_factory=list)
    gate: Any = None
    peers: Any = None  # the names the rollout workers resolve (`Peers`)
    rm_trainer: list = field(default_factory=list)  # the online reward-model trainer, when refreshing
    # no seeker or judge among the run's actors: each periodic evaluation starts its own
    # (`start_evaluation_roles`)
    evaluation_only: bool = False

    def named(self) -> dict[str, Any]:
        """Every actor that has a `ready()` pid probe, by a readable name such as 'judge-0'."""
        groups = {**self.roles(), "worker": self.workers, "rm_trainer": self.rm_trainer}
        return {f"{role}-{i}": h for role, hs in groups.items() for i, h in enumerate(hs)}

    def pids(
        self, previous: dict[str, int | None] | None = None, timeout_s: float = 5.0
    ) -> dict[str, int | None]:
        """Process id of each actor; None for one that is dead. An actor that does not answer within
        `timeout_s` is busy (a counselor decoding a batch holds its event loop for seconds) or
        restarting: it keeps its pid in `previous` (None when not given), and a restart shows as a
        new pid once it answers again."""
        refs = {name: h.ready.remote() for name, h in self.named().items()}
        pids: dict[str, int | None] = {}
        for name, ref in refs.items():
            try:
                pids[name] = ray.get(ref, timeout=timeout_s)
            except ray.exceptions.GetTimeoutError:
                pids[name] = (previous or {}).get(name)
            except ray.exceptions.RayActorError:
                pids[name] = None
        return pids

    def wait_ready(self) -> None:
        """Block until every role actor has loaded its model; a role actor whose constructor failed (a
        model folder that does not exist, say) ends the wait with its error in one line."""
        try:
            ray.get([h.ready.remote() for hs in self.roles().values() for h in hs], timeout=READY_TIMEOUT_S)
        except ray.exceptions.ActorDiedError as error:
            if not error.actor_init_failed:
                raise
            raise UsageError(init_failure(str(error))) from None

    def roles(self) -> dict[str, list]:
        return {
            "seeker": self.seeker,
            "counselor": self.counselor,
            "system_agent": self.system_agent,
            "judge": self.judge,
        }


def init_failure(message: str) -> str:
    """One line for an actor whose constructor raised, from Ray's message (the constructor's traceback):
    the actor's class and the exception's last line, its module path left out."""
    actor = re.search(r"ray::(?:[\w.-]+:)?(\w+)\.__init__", message)  # a named actor: ray::NAME:Class
    who = f"the {actor.group(1)} actor" if actor else "a role actor"
    raised = [line for line in message.strip().splitlines() if re.match(r"[\w.]+(Error|Exception):", line)]
    if not raised:
        return f"{who} could not start (its log says why)"
    name, _, text = raised[-1].partition(":")
    return f"{who} could not start: {name.rsplit('.', 1)[-1]}:{text}"


@dataclass(frozen=True)
class Peers:
    """The Ray names of the actors a rollout worker talks to. A worker gets this, not their handles:
    it resolves the names in its own process, again after every restart, and its constructor's
    arguments stay small enough to travel inline, where Ray can always find them for a restart."""

    roles: dict[str, list[str]]
    store: str
    hub: str
    gate: str | None = None

    def resolve(self) -> tuple[dict[str, list], Any, Any, Any]:
        """(role handles by role, store, hub, gate or None)."""
        find = ray.get_actor
        roles = {role: [find(name) for name in names] for role, names in self.roles.items()}
        return roles, find(self.store), find(self.hub), find(self.gate) if self.gate else None


def report_restarts(before: dict[str, int | None], after: dict[str, int | None]) -> tuple[list[str], int]:
    """Compare two `pids()` probes: one log line per actor whose process changed or vanished, and how
    many actors are now running in a new process (restarts completed since `before`)."""
    lines, restarted = [], 0
    for name, pid in after.items():
        old = before.get(name)
        if pid is None and old is not None:
            lines.append(f"actor {name} is down (pid {old}); Ray is restarting it")
        elif pid is not None and old is not None and pid != old:
            lines.append(f"actor {name} restarted (pid {old} -> {pid})")
            restarted += 1
        elif pid is not None and old is None and name in before:
            lines.append(f"actor {name} is back (pid {pid})")
            restarted += 1
    return lines, restarted


def start_store(config: RunConfig, name: str | None = None):
    """The replay store actor of a run (`actors.store`, `store.capacity`, `store.synchronous`), on its
    folder. It serves `actors.store.max_concurrency` calls at once, so concurrent puts share commits."""
    place = config.actors.store
    return remote(ReplayStore, place, name=name, pin=True).remote(
        str(config.store_dir()), config.store.capacity, synchronous=config.store.synchronous, nice=place.nice
    )


def start_actors(config: RunConfig, staleness: int | None = None, wait: bool = True) -> ActorSystem:
    """Start store, role actors and rollout workers; return when every model has loaded (with `wait`;
    else at once, and `ActorSystem.wait_ready()` waits). With `staleness` (the online loop) a
    StalenessGate applies admission control to the workers."""
    plain = config.model_dump()
    a = config.actors
    tag = f"rlff-{config.name}-{uuid.uuid4().hex[:8]}"  # unique per start: runs may share a cluster
    store = start_store(config, name=f"{tag}-store")
    hub = remote(MetricsHub, ActorConfig(max_concurrency=1), name=f"{tag}-hub", pin=True).remote(
        str(config.run_dir() / "metrics.jsonl"), tensorboard=True, prometheus=True
    )
    system = ActorSystem(store=store, hub=hub)
    if staleness is not None:
        held = ray.get(store.stats.remote(), timeout=READY_TIMEOUT_S)["by_kind"].get(
            "group", {"unconsumed": 0}
        )
        gate_actor = ActorConfig(max_restarts=0, max_concurrency=1000)
        system.gate = remote(StalenessGate, gate_actor, name=f"{tag}-gate", pin=True).remote(
            config.learner.batch_size,
            staleness,
            accepted=held["unconsumed"],
            max_running=config.rollout.max_generating,
        )
    names: dict[str, list[str]] = {"seeker": [], "counselor": [], "system_agent": [], "judge": []}

    def role(cls: type, kind: str, actor: ActorConfig, *args, **kwargs):
        names[kind].append(f"{tag}-{kind}-{len(names[kind])}")
        return remote(cls, actor, name=names[kind][-1]).remote(*args, **kwargs)

    system.counselor = [role(Counselor, "counselor", a.counselor, plain) for _ in range(a.counselor.replicas)]
    # future rewards simulate conversations with the seeker, the system agent and the judge: for every
    # candidate in `rlff collect`, `rollout.future_fraction` of them online. With none, the three have
    # no work between periodic evaluations: no system agent, and a seeker and judge per evaluation.
    if staleness is None or config.rollout.future_fraction > 0:
        system.seeker = [role(UserSimulator, "seeker", a.seeker, plain) for _ in range(a.seeker.replicas)]
        system.system_agent = [role(Counselor, "system_agent", a.counselor, plain, system_agent=True)]
        system.judge = [role(Judge, "judge", a.judge, plain) for _ in range(a.judge.replicas)]
    else:
        system.evaluation_only = True
    peers = Peers(names, f"{tag}-store", f"{tag}-hub", f"{tag}-gate" if system.gate is not None else None)
    system.peers = peers
    system.workers = [
        remote(RolloutWorker, a.rollout_worker).remote(plain, peers, f"worker-{i}")
        for i in range(a.rollout_worker.replicas)
    ]
    if wait:
        system.wait_ready()
    return system


def start_evaluation_roles(config: RunConfig) -> dict[str, list]:
    """A seeker and a judge for one periodic evaluation of a run whose rollouts use neither
    (`ActorSystem.evaluation_only`): {role: handles}, unnamed (the evaluation is given the handles) and
    not among the system's actors; `end_evaluation_roles` ends them. Calls to them wait while they load."""
    a, plain = config.actors, config.model_dump()
    return {
        "seeker": [remote(UserSimulator, a.seeker).remote(plain) for _ in range(a.seeker.replicas)],
        "judge": [remote(Judge, a.judge).remote(plain) for _ in range(a.judge.replicas)],
    }


def end_evaluation_roles(roles: dict[str, list]) -> None:
    """End the processes of `start_evaluation_roles`: their memory goes back to the OS."""
    for handle in [h for handles in roles.values() for h in handles]:
        ray.kill(handle, no_restart=True)


def start_rm_trainer(config: RunConfig, system: ActorSystem, rm_dir: str) -> Any:
    """The online reward-model trainer (`actors.rm_trainer`, `actors.rm_trainer` placement) of a run
    started by `start_actors` with a gate; returns its handle, also kept in `system.rm_trainer`."""
    trainer = remote(RewardModelTrainer, config.actors.rm_trainer).remote(
        config.model_dump(), system.peers, rm_dir
    )
    system.rm_trainer = [trainer]
    return trainer
