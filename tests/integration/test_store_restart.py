"""The store actor survives its own crash and a restart of the whole Ray instance: every record is
still there and new puts continue. Its records also export to a Ray Dataset."""

from __future__ import annotations

import time

import ray
from support.ray_helpers import wait_for_new_process

from actors.replay_store import ReplayStore
from esc.config import ActorConfig
from jobs.datasets import store_dataset
from jobs.launcher import remote

TIMEOUT_S = 120


def record(i: int) -> dict:
    return {"id": f"g{i}", "kind": "group", "policy_version": 0, "created_at": time.time(), "payload": [i]}


def start_store(path):
    return remote(ReplayStore, ActorConfig(max_restarts=2, max_concurrency=1)).remote(str(path), 1000)


def test_store_survives_actor_crash_and_ray_restart(tmp_path):
    path = tmp_path / "store"
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        store = start_store(path)
        assert ray.get([store.put.remote(record(i)) for i in range(5)], timeout=TIMEOUT_S) == ["stored"] * 5
        old_pid = ray.get(store.ready.remote(), timeout=TIMEOUT_S)
        ray.kill(store, no_restart=False)  # a crash: Ray restarts the actor, which reopens its folder
        wait_for_new_process(store, old_pid)
        assert ray.get(store.stats.remote(), timeout=TIMEOUT_S)["total"] == 5
        assert ray.get(store.put.remote(record(5)), timeout=TIMEOUT_S) == "stored"
        assert ray.get(store.put.remote(record(0)), timeout=TIMEOUT_S) == "duplicate"
        dataset = store_dataset(path)
        assert sorted(row["id"] for row in dataset.take_all()) == [f"g{i}" for i in range(6)]
    finally:
        ray.shutdown()

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        store = start_store(path)
        assert ray.get(store.ids.remote(), timeout=TIMEOUT_S) == {f"g{i}" for i in range(6)}
        assert ray.get(store.put.remote(record(6)), timeout=TIMEOUT_S) == "stored"
        assert ray.get(store.get.remote("g3"), timeout=TIMEOUT_S)["payload"] == [3]
    finally:
        ray.shutdown()
