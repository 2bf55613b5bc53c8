"""The learner's sampler, the store and the staleness gate on a real local Ray instance: groups the
store drops as too stale to train on leave the gate's count, so a run started on an offline collection
admits new groups again once the collection is stale (before, every dropped group kept its place and
the gate refused all work while the learner waited for fresh groups)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import ray
from support.records import tokens_only

from actors.admission import StalenessGate
from actors.replay_store import ReplayStore
from esc.config import ActorConfig, build_config
from jobs.launcher import remote
from jobs.learn import Handles, StoreSampler
from learner.policy import candidate_group

TIMEOUT_S = 60


def group(gid: str, version: int) -> dict:
    replies = [tokens_only([1, 2], [3], [-1.0]), tokens_only([1, 2], [4], [-1.0])]
    return candidate_group(gid, "hi", replies, version=version).model_dump()


def test_stale_drops_leave_the_gate_and_workers_start_again(tmp_path):
    config = build_config({"runs_dir": str(tmp_path), "learner": {"batch_size": 2, "sample_timeout_s": 60}})
    assert config.rollout.max_staleness == 1 and config.learner.mode == "async"
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        store = remote(ReplayStore, ActorConfig()).remote(str(tmp_path / "store"), 1000)
        gate = remote(StalenessGate, ActorConfig()).remote(2, 1)
        offline = [group(f"offline-{i}", 0) for i in range(18)]  # an `rlff collect` before the run
        assert ray.get(store.put_many.remote(offline), timeout=TIMEOUT_S) == ["stored"] * 18
        ray.get(gate.rebase.remote(0, 18), timeout=TIMEOUT_S)
        learner = SimpleNamespace(version=0)
        sampler = StoreSampler(config, learner, Handles(store, gate, None, []), "learner-r0")
        for version in (0, 1):  # a batch a version from the collection
            learner.version = version
            assert len(sampler.fetch(2)) == 2
        learner.version = 2  # published: the other 14 offline groups are now too stale
        ray.get(gate.set_version.remote(2), timeout=TIMEOUT_S)
        fetched: list = []
        fetching = threading.Thread(target=lambda: fetched.extend(sampler.fetch(2)))
        fetching.start()  # drops the 14, then waits for fresh groups
        for i in range(2):  # a rollout worker: admitted, generates, stores, releases
            assert ray.get(gate.acquire.remote("w", f"fresh-{i}"), timeout=TIMEOUT_S) == 2
            assert ray.get(store.put.remote(group(f"fresh-{i}", 2)), timeout=TIMEOUT_S) == "stored"
            ray.get(gate.release.remote("w", f"fresh-{i}", True), timeout=TIMEOUT_S)
        fetching.join(TIMEOUT_S)
        assert sorted(g.id for g in fetched) == ["fresh-0", "fresh-1"]
        state = ray.get(gate.state.remote(), timeout=TIMEOUT_S)
        assert (state["accepted"], state["limit"]) == (6, 8)  # 3 versions' batches; 2 more may start
        assert ray.get(store.stats.remote(), timeout=TIMEOUT_S)["by_kind"]["group"]["unconsumed"] == 0
    finally:
        ray.shutdown()
