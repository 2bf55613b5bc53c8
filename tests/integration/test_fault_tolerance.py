"""Kill -9 a RolloutWorker and a Judge actor in the middle of `rlff collect` on a real local Ray
instance: the run completes, every context's group is stored exactly once, and the driver logs the
deaths and restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

from actors.replay_store import ReplayStore

LIMIT = 6
DEADLINE_S = 600


def wait_for(predicate, what: str, timeout_s: float = 300):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)  # polling an external process's progress; nothing to wait on directly
    pytest.fail(f"timed out waiting for {what}")


def actor_pids(log_path):
    for line in log_path.read_text().splitlines():
        if line.startswith("actor pids: "):
            return json.loads(line.removeprefix("actor pids: "))
    return None


def stored(store_dir):
    if not (store_dir / "store.sqlite").exists():
        return 0
    store = ReplayStore(store_dir)
    try:
        return len(store)
    finally:
        store.close()


def test_collect_survives_killed_worker_and_judge(tmp_path):
    sets = [f"{r}.model=tiny-random" for r in ("seeker", "counselor", "judge", "system_agent")]
    sets += [f"{r}.max_new_tokens=16" for r in ("seeker", "counselor", "system_agent")]
    sets += [
        "rollout.group_size=4",
        "actors.rollout_worker.replicas=2",
        "rollout.in_flight=1",
        "future.horizon=2",
    ]
    sets += [f"runs_dir={tmp_path}", "name=ft", "judge.max_new_tokens=2"]
    args = [a for s in sets for a in ("--set", s)]
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "collect", "--config", "configs/local.yaml", *args,
             "--data", "builtin", "--limit", str(LIMIT)],
            cwd=REPO, stdout=stdout, stderr=stderr, env=env,
        )  # fmt: skip
        try:
            pids = wait_for(lambda: actor_pids(out), "the actors to start")
            store_dir = tmp_path / "ft" / "store"
            wait_for(lambda: stored(store_dir) >= 1, "the first stored group")
            assert stored(store_dir) < LIMIT, "collection finished before the kill; make it slower"
            os.kill(pids["worker-0"], signal.SIGKILL)
            os.kill(pids["judge-0"], signal.SIGKILL)
            assert proc.wait(timeout=DEADLINE_S) == 0, err.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    store = ReplayStore(store_dir)
    records = list(store.iter_records())
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == LIMIT  # nothing lost, nothing twice
    assert all(len(r["candidates"]) == 4 for r in records)
    log = err.read_text()
    assert "actor worker-0" in log and "actor judge-0" in log
