"""The actor system on a real local Ray instance with the tiny model: collection streams candidate
groups into the durable store, and re-running it resumes without duplicates; a run whose candidates get
no simulated futures starts a seeker and a judge for each periodic evaluation and ends them after it."""

from __future__ import annotations

import contextlib
import json
import os

import psutil
import pytest
import ray

from actors.replay_store import ReplayStore
from esc.config import load_config
from esc.contexts import dialogue_context
from esc.data import load_dialogues
from esc.schemas import CandidateGroup
from jobs import UsageError
from jobs.collect import check_room
from jobs.evaluations import Evaluations
from jobs.launcher import start_actors

TIMEOUT_S = 300


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def tiny_config(tmp_path, **extra):
    sets = [f"{r}.model=tiny-random" for r in ("seeker", "counselor", "judge", "system_agent")]
    sets += [f"{r}.max_new_tokens=6" for r in ("seeker", "counselor", "system_agent")]
    sets += [
        "rollout.group_size=2",
        "actors.rollout_worker.replicas=2",
        "rollout.in_flight=2",
        "future.horizon=1",
    ]
    sets += ["rollout.future_fraction=1"]  # phase 1: every candidate gets a future reward
    sets += [f"runs_dir={tmp_path}", "name=t", "judge.max_new_tokens=2"]
    sets += [f"{k}={v}" for k, v in extra.items()]
    return load_config("configs/local.yaml", sets)


def collect(system, contexts):
    chunks = [contexts[i :: len(system.workers)] for i in range(len(system.workers))]
    results = ray.get(
        [w.collect.remote([c.model_dump() for c in chunk]) for w, chunk in zip(system.workers, chunks)],
        timeout=TIMEOUT_S,
    )
    return {k: sum(r[k] for r in results) for k in ("stored", "duplicate", "skipped")}


def test_collect_fills_the_store_and_resumes(ray_local, tmp_path):
    config = tiny_config(tmp_path)
    contexts = [dialogue_context(d, 0) for d in load_dialogues("builtin")[:5]]
    system = start_actors(config)

    assert collect(system, contexts) == {"stored": 5, "duplicate": 0, "skipped": 0}
    # the store is on disk: a second process (this test) opens the same folder and reads every group
    records = list(ReplayStore(config.store_dir()).iter_records())
    assert len(records) == 5
    groups = [CandidateGroup.model_validate(r) for r in records]
    assert {g.id for g in groups} == {f"t:{c.id}:v0" for c in contexts}
    for group in groups:
        assert len(group.candidates) == 2 and group.policy_version == 0
        assert group.context[-1].role == "seeker"
        for candidate in group.candidates:
            assert candidate.future_reward is not None and -1.0 <= candidate.future_reward <= 1.0
            assert candidate.label in (0, 1, 2)
            assert [t.role for t in candidate.future] == ["seeker", "counselor"]
            assert "<think>" not in candidate.text

    # every stored group reported its stage timings to the metrics hub, which wrote them to disk
    lines = [json.loads(line) for line in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    worker_lines = [m for m in lines if m["source"].startswith("worker-")]
    assert len(worker_lines) == 5
    for m in worker_lines:
        assert m["stage_generate_s"] > 0 and m["stage_future_s"] > 0 and m["group_tokens"] > 0
        assert -1.0 <= m["group_reward_mean"] <= 1.0

    # the counselor decodes on its placement's threads (Ray sets 1 for an actor reserving under one CPU)
    # and on every core while the driver asks it to (held-out points that run alone)
    counselor = system.counselor[0]
    assert ray.get(counselor.use_all_cores.remote(True), timeout=TIMEOUT_S) == len(os.sched_getaffinity(0))
    assert ray.get(counselor.use_all_cores.remote(False), timeout=TIMEOUT_S) == 1

    # re-running the same contexts (a resumed job) stores nothing twice
    assert collect(system, contexts) == {"stored": 0, "duplicate": 0, "skipped": 5}
    assert ray.get(system.store.stats.remote(), timeout=TIMEOUT_S)["total"] == 5

    # `rlff collect` refuses a collection the store has no room for (nothing consumes meanwhile), and
    # counts only the contexts not yet in it: resuming a collection that filled the store is fine
    check_room(config.replace("store", capacity=5), system, contexts)
    more = [dialogue_context(d, 0) for d in load_dialogues("builtin")[:8]]
    with pytest.raises(UsageError, match="collecting 3 new contexts writes up to 3 records, but the store"):
        check_room(config.replace("store", capacity=7), system, more)
    check_room(config.replace("store", capacity=8), system, more)


def live_actor_pids(cls: str) -> set[int]:
    """Pids of this test's Ray processes running an actor of class `cls` (by process title)."""
    pids = set()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            title = child.cmdline()[0] if child.cmdline() else ""
            if title == f"ray::{cls}" or title.startswith(f"ray::{cls}."):
                pids.add(child.pid)
    return pids


def test_without_simulated_futures_each_evaluation_has_its_own_seeker_and_judge(ray_local, tmp_path, capsys):
    sets = {"rollout.future_fraction": 0, "evaluation.every": 1, "evaluation.episodes": 1}
    sets |= {"learner.max_updates": 1, "name": "e"}  # version 1 is the learner's last
    config = tiny_config(tmp_path, **sets)

    def started_since(before: set[int]) -> set[int]:
        return (live_actor_pids("UserSimulator") | live_actor_pids("Judge")) - before

    before = started_since(set())  # the first test's, if still alive
    system = start_actors(config, staleness=1)
    assert system.evaluation_only and not system.seeker and not system.judge and not system.system_agent
    assert started_since(before) == set()

    evaluation = Evaluations(config, system)
    evaluation.maybe_start()
    assert {role: len(hs) for role, hs in evaluation.roles.items()} == {"seeker": 1, "judge": 1}
    pids = {ray.get(h.ready.remote(), timeout=TIMEOUT_S) for hs in evaluation.roles.values() for h in hs}
    assert started_since(before) == pids and len(pids) == 2
    ray.wait([evaluation.ref], timeout=TIMEOUT_S)
    assert evaluation.finish(evaluation.ref)
    assert "evaluation at version 0: SR" in capsys.readouterr().out

    # their processes are gone, and none took their place
    gone, alive = psutil.wait_procs([psutil.Process(p) for p in pids], timeout=60)
    assert not alive and len(gone) == 2
    assert started_since(before) == set() and evaluation.roles == {}

    # the learner's last version is evaluated after the learner (`last`), not from the driver loop
    ray.get(system.gate.set_version.remote(1), timeout=TIMEOUT_S)
    evaluation.maybe_start()
    assert evaluation.ref is None and started_since(before) == set()
    evaluation.last()
    assert "evaluation at version 0: SR" in capsys.readouterr().out  # the counselor's (none published)
    assert evaluation.ref is None and evaluation.roles == {}
